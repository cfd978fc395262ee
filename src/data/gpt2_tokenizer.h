// GPT-2's byte-level BPE (tiktoken's r50k_base): pre-tokenize with GPT-2's pattern, then merge each piece's
// bytes by lowest rank. Ranks come from the tiktoken rank file; "<|endoftext|>" is id 50256.
#pragma once
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "data/tokenizer.h"

namespace msa {

class Gpt2Tokenizer final : public Tokenizer {
 public:
  static constexpr uint32_t kNumRanks = 50256;  // ranks in r50k_base.tiktoken
  static constexpr uint32_t kEndOfText = 50256;

  // Reads and validates `rank_file` (lines "<base64 token bytes> <rank>"); UserError naming it if bad.
  explicit Gpt2Tokenizer(const std::string& rank_file);
  Gpt2Tokenizer(const Gpt2Tokenizer&) = delete;  // encoder_ holds views into bytes_
  Gpt2Tokenizer& operator=(const Gpt2Tokenizer&) = delete;

  std::vector<uint32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<uint32_t>& ids) const override;
  int64_t vocab_size() const override { return kNumRanks + 1; }
  std::optional<uint32_t> eot() const override { return kEndOfText; }
  std::string name() const override { return "gpt2"; }

 private:
  std::string_view token_bytes(uint32_t id) const;
  // Appends the BPE ids of one pre-token to `out`.
  void merge_piece(std::string_view piece, std::vector<uint32_t>& out) const;

  std::string bytes_;                                     // all token bytes, concatenated in rank order
  std::vector<uint32_t> offsets_;                         // token id -> start in bytes_ (size ids + 1)
  std::unordered_map<std::string_view, uint32_t> ranks_;  // token bytes (views into bytes_) -> rank
};

}  // namespace msa
