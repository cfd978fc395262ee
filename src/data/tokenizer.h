// Tokenizers turn text into token ids and back. Two exist: "bytes" (id = byte value; needs no files) and
// "gpt2" (GPT-2's byte-level BPE from tiktoken's r50k_base rank file). Both are lossless on any byte string.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace msa {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Special-token text such as "<|endoftext|>" is encoded as plain text; eot() is only ever inserted by the
  // caller (data prepare joins documents with it).
  virtual std::vector<uint32_t> encode(std::string_view text) const = 0;
  virtual std::string decode(const std::vector<uint32_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual std::optional<uint32_t> eot() const = 0;  // end-of-text id, if the tokenizer has one
  virtual std::string name() const = 0;
};

// name: "bytes" or "gpt2". vocab_file: the r50k_base.tiktoken rank file for "gpt2" (ignored for "bytes").
// Throws UserError for an unknown name or a missing or malformed vocabulary file.
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& name, const std::string& vocab_file);

}  // namespace msa
