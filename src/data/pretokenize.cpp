// Hand-written matcher for GPT-2's pre-tokenizer pattern; see pretokenize.h. Each branch below is one
// alternative of the pattern, tried in the pattern's order, so the first alternative that matches wins.
#include "data/pretokenize.h"

#include <algorithm>
#include <array>
#include <iterator>

#include "data/unicode_tables.h"

namespace msa {
namespace {

constexpr uint32_t kInvalid = 0xFFFFFFFFu;  // a byte that does not start a valid UTF-8 sequence

struct Decoded {
  uint32_t cp;
  size_t len;
};

// Decodes one code point; rejects overlong forms, surrogates and values past U+10FFFF as single bytes.
Decoded decode_utf8(std::string_view s, size_t pos) {
  const auto b0 = static_cast<uint8_t>(s[pos]);
  if (b0 < 0x80) return {b0, 1};
  size_t len = 0;
  uint32_t cp = 0, min = 0;
  if ((b0 & 0xE0) == 0xC0) { len = 2; cp = b0 & 0x1F; min = 0x80; }
  else if ((b0 & 0xF0) == 0xE0) { len = 3; cp = b0 & 0x0F; min = 0x800; }
  else if ((b0 & 0xF8) == 0xF0) { len = 4; cp = b0 & 0x07; min = 0x10000; }
  else return {kInvalid, 1};
  if (pos + len > s.size()) return {kInvalid, 1};
  for (size_t i = 1; i < len; ++i) {
    const auto b = static_cast<uint8_t>(s[pos + i]);
    if ((b & 0xC0) != 0x80) return {kInvalid, 1};
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {kInvalid, 1};
  return {cp, len};
}

template <size_t N>
bool in_ranges(const unicode::CodeRange (&ranges)[N], uint32_t cp) {
  const auto* it = std::upper_bound(std::begin(ranges), std::end(ranges), cp,
                                    [](uint32_t v, const unicode::CodeRange& r) { return v < r.first; });
  return it != std::begin(ranges) && cp <= std::prev(it)->last;
}

// The end of the run of code points of class `cls` that starts at `pos`.
size_t run_end(std::string_view s, size_t pos, CharClass cls) {
  while (pos < s.size()) {
    const Decoded d = decode_utf8(s, pos);
    if (char_class(d.cp) != cls) break;
    pos += d.len;
  }
  return pos;
}

}  // namespace

CharClass char_class(uint32_t cp) {
  if (cp < 0x80) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CharClass::kLetter;
    if (cp >= '0' && cp <= '9') return CharClass::kNumber;
    if (cp == ' ' || (cp >= '\t' && cp <= '\r')) return CharClass::kSpace;
    return CharClass::kOther;
  }
  if (cp == kInvalid) return CharClass::kOther;
  if (in_ranges(unicode::kLetterRanges, cp)) return CharClass::kLetter;
  if (in_ranges(unicode::kNumberRanges, cp)) return CharClass::kNumber;
  if (in_ranges(unicode::kSpaceRanges, cp)) return CharClass::kSpace;
  return CharClass::kOther;
}

std::vector<std::string_view> pretokenize(std::string_view text) {
  std::vector<std::string_view> out;
  for_each_pretoken(text, [&](std::string_view piece) { out.push_back(piece); });
  return out;
}

namespace detail {

size_t pretoken_length(std::string_view s, size_t pos) {
  const Decoded first = decode_utf8(s, pos);

  // 's|'t|'re|'ve|'m|'ll|'d  (case-sensitive, as in GPT-2)
  if (first.cp == '\'') {
    static constexpr std::array<std::string_view, 7> kSuffixes = {"s", "t", "re", "ve", "m", "ll", "d"};
    const std::string_view rest = s.substr(pos + 1);
    for (std::string_view suffix : kSuffixes)
      if (rest.starts_with(suffix)) return 1 + suffix.size();
  }

  // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional single space joins the run that follows it.
  if (first.cp == ' ' && pos + 1 < s.size()) {
    const CharClass next = char_class(decode_utf8(s, pos + 1).cp);
    if (next != CharClass::kSpace) return run_end(s, pos + 1, next) - pos;
  }
  const CharClass cls = char_class(first.cp);
  if (cls != CharClass::kSpace) return run_end(s, pos, cls) - pos;

  // `\s+(?!\S)`: a whitespace run that is followed by a non-space gives up its last code point (which then
  // joins the next piece, e.g. " word"); `\s+`: a single whitespace code point before a non-space.
  size_t end = pos, last = pos;
  while (end < s.size()) {
    const Decoded d = decode_utf8(s, end);
    if (char_class(d.cp) != CharClass::kSpace) break;
    last = end;
    end += d.len;
  }
  if (end < s.size() && last > pos) return last - pos;
  return end - pos;
}

}  // namespace detail
}  // namespace msa
