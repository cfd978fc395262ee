// GPT-2's pre-tokenizer, written out by hand over UTF-8 code points (no regex library, no ICU). It splits text
// into the pieces that byte-level BPE then merges independently, exactly like the pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

namespace msa {

// The class of a code point in the pattern above. Bytes that are not valid UTF-8 decode to one code point
// each of class kOther, so any byte string splits (and round-trips) without error.
enum class CharClass : uint8_t { kLetter, kNumber, kSpace, kOther };

CharClass char_class(uint32_t code_point);

// Calls emit(piece) for each pre-token of `text`, in order; the pieces concatenate back to `text`.
template <class Emit>
void for_each_pretoken(std::string_view text, Emit&& emit);

// The pre-tokens of `text` as views into it (convenience for tests and small inputs).
std::vector<std::string_view> pretokenize(std::string_view text);

namespace detail {
// Length in bytes of the pre-token that starts at `pos` (< text.size()).
size_t pretoken_length(std::string_view text, size_t pos);
}  // namespace detail

template <class Emit>
void for_each_pretoken(std::string_view text, Emit&& emit) {
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t len = detail::pretoken_length(text, pos);
    emit(text.substr(pos, len));
    pos += len;
  }
}

}  // namespace msa
