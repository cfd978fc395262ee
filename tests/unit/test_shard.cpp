// Token shards and datasets: round trips in both id widths, reads that span shards, and one test per
// rejected input, each checking that the message names the file and the problem.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "data/shard.h"
#include "data_test_util.h"

namespace msa {
namespace {

using testing_data::expect_user_error;
using testing_data::TempDir;
using testing_data::write_text;

std::vector<int32_t> read_all(const TokenShard& shard) {
  std::vector<int32_t> out(shard.size());
  shard.read(0, shard.size(), out.data());
  return out;
}

// Overwrites `bytes` at `offset` of an existing file.
void patch(const std::string& path, size_t offset, const void* bytes, size_t n) {
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(static_cast<const char*>(bytes), static_cast<std::streamsize>(n));
}

std::vector<uint32_t> iota_ids(size_t n, uint32_t first, uint32_t modulo) {
  std::vector<uint32_t> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = (first + static_cast<uint32_t>(i) * 7919u) % modulo;
  return ids;
}

TEST(ShardFormat, RoundTripsUint16Ids) {
  TempDir dir;
  const std::string path = dir / "a.bin";
  std::vector<uint32_t> ids = iota_ids(1000, 3, 50257);
  ids[0] = 0;
  ids[1] = 50256;
  write_shard(path, ids, 50257);
  EXPECT_EQ(std::filesystem::file_size(path), 32u + 2 * ids.size());
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  const TokenShard shard(path);
  EXPECT_EQ(shard.size(), 1000);
  EXPECT_EQ(shard.vocab_size(), 50257);
  EXPECT_EQ(read_all(shard), std::vector<int32_t>(ids.begin(), ids.end()));
  int32_t slice[3];
  shard.read(500, 3, slice);
  EXPECT_EQ(std::vector<int32_t>(slice, slice + 3), std::vector<int32_t>(ids.begin() + 500, ids.begin() + 503));
}

TEST(ShardFormat, RoundTripsUint32IdsWhenVocabExceeds65536) {
  TempDir dir;
  const std::string path = dir / "a.bin";
  std::vector<uint32_t> ids = iota_ids(777, 11, 200000);
  ids.back() = 199999;
  write_shard(path, ids, 200000);
  EXPECT_EQ(std::filesystem::file_size(path), 32u + 4 * ids.size());
  const TokenShard shard(path);
  EXPECT_EQ(shard.vocab_size(), 200000);
  EXPECT_EQ(read_all(shard), std::vector<int32_t>(ids.begin(), ids.end()));
}

TEST(ShardFormat, Vocab65536StillFitsUint16) {
  TempDir dir;
  write_shard(dir / "a.bin", {65535, 0}, 65536);
  EXPECT_EQ(std::filesystem::file_size(dir / "a.bin"), 32u + 4);
  EXPECT_EQ(read_all(TokenShard(dir / "a.bin")), (std::vector<int32_t>{65535, 0}));
}

TEST(ShardFormat, HeaderLayoutMatchesFormatDoc) {
  TempDir dir;
  write_shard(dir / "a.bin", {1, 2, 3}, 256);
  std::ifstream in(dir / "a.bin", std::ios::binary);
  unsigned char h[32];
  in.read(reinterpret_cast<char*>(h), 32);
  auto u32 = [&](int at) { return h[at] | h[at + 1] << 8 | h[at + 2] << 16 | uint32_t(h[at + 3]) << 24; };
  EXPECT_EQ(std::string(reinterpret_cast<char*>(h), 8), "MSATOKS1");
  EXPECT_EQ(u32(8), 1u);    // version
  EXPECT_EQ(u32(12), 2u);   // dtype: bytes per id
  EXPECT_EQ(u32(16), 3u);   // count, low word
  EXPECT_EQ(u32(20), 0u);   // count, high word
  EXPECT_EQ(u32(24), 256u); // vocab_size
  EXPECT_EQ(u32(28), 0u);   // reserved
}

TEST(ShardFormat, EmptyShardIsValid) {
  TempDir dir;
  write_shard(dir / "a.bin", {}, 256);
  const TokenShard shard(dir / "a.bin");
  EXPECT_EQ(shard.size(), 0);
  shard.read(0, 0, nullptr);
}

TEST(ShardFormat, RejectsMissingFile) {
  TempDir dir;
  expect_user_error([&] { TokenShard(dir / "nope.bin"); }, {dir / "nope.bin", "cannot open token shard"});
}

TEST(ShardFormat, RejectsBadMagic) {
  TempDir dir;
  write_shard(dir / "a.bin", {1, 2, 3}, 256);
  patch(dir / "a.bin", 0, "GARBAGE!", 8);
  expect_user_error([&] { TokenShard(dir / "a.bin"); }, {dir / "a.bin", "not a token shard: bad magic"});
}

TEST(ShardFormat, RejectsTruncatedFile) {
  TempDir dir;
  write_shard(dir / "a.bin", iota_ids(1000, 0, 256), 256);
  std::filesystem::resize_file(dir / "a.bin", 32 + 2 * 998);
  expect_user_error([&] { TokenShard(dir / "a.bin"); },
                    {dir / "a.bin: truncated: header says 1000 tokens, file holds 998"});
}

TEST(ShardFormat, RejectsFileShorterThanHeader) {
  TempDir dir;
  write_text(dir / "a.bin", "MSATOKS1");
  expect_user_error([&] { TokenShard(dir / "a.bin"); }, {dir / "a.bin: truncated", "less than the 32-byte header"});
}

TEST(ShardFormat, RejectsWrongVersion) {
  TempDir dir;
  write_shard(dir / "a.bin", {1, 2, 3}, 256);
  const uint32_t version = 7;
  patch(dir / "a.bin", 8, &version, 4);
  expect_user_error([&] { TokenShard(dir / "a.bin"); }, {dir / "a.bin", "unsupported shard version 7"});
}

TEST(ShardFormat, RejectsBadDtype) {
  TempDir dir;
  write_shard(dir / "a.bin", {1, 2, 3}, 256);
  const uint32_t dtype = 3;
  patch(dir / "a.bin", 12, &dtype, 4);
  expect_user_error([&] { TokenShard(dir / "a.bin"); }, {dir / "a.bin", "dtype 3"});
}

TEST(ShardFormat, RejectsTrailingBytes) {
  TempDir dir;
  write_shard(dir / "a.bin", {1, 2, 3}, 256);
  std::ofstream(dir / "a.bin", std::ios::binary | std::ios::app) << "xyz";
  expect_user_error([&] { TokenShard(dir / "a.bin"); }, {dir / "a.bin", "3 trailing bytes"});
}

TEST(ShardFormat, RejectsIdOutsideVocabOnRead) {
  TempDir dir;
  write_shard(dir / "a.bin", {1, 2, 3, 4}, 256);
  const uint16_t id = 300;
  patch(dir / "a.bin", 32 + 2 * 2, &id, 2);
  const TokenShard shard(dir / "a.bin");
  std::vector<int32_t> out(4);
  expect_user_error([&] { shard.read(0, 4, out.data()); }, {dir / "a.bin", "token 2 is id 300"});
}

TEST(ShardFormat, ReadOutsideTheShardIsAnError) {
  TempDir dir;
  write_shard(dir / "a.bin", {1, 2, 3}, 256);
  const TokenShard shard(dir / "a.bin");
  int32_t out[4];
  EXPECT_THROW(shard.read(1, 3, out), Error);
  EXPECT_THROW(shard.read(-1, 1, out), Error);
}

// A prepared folder written by hand: shards of the given sizes for "train", one for "val".
std::vector<uint32_t> write_folder(const TempDir& dir, const std::vector<size_t>& sizes) {
  std::vector<uint32_t> all;
  std::string list;
  for (size_t s = 0; s < sizes.size(); ++s) {
    std::vector<uint32_t> ids = iota_ids(sizes[s], static_cast<uint32_t>(all.size()), 50257);
    char name[32];
    std::snprintf(name, sizeof(name), "train_%03zu.bin", s);
    write_shard(dir / name, ids, 50257);
    all.insert(all.end(), ids.begin(), ids.end());
    list += std::string(s ? ", " : "") + name;
  }
  write_shard(dir / "val_000.bin", {7, 8, 9}, 50257);
  write_text(dir / "meta.yaml", "format_version: 1\ntokenizer: gpt2\nvocab_size: 50257\neot: 50256\n"
                                "splits:\n  train:\n    documents: 4\n    tokens: " +
                                    std::to_string(all.size()) + "\n    shards: [" + list +
                                    "]\n  val:\n    documents: 1\n    tokens: 3\n    shards: [val_000.bin]\n");
  return all;
}

TEST(DatasetFolder, ConcatenatesShardsInOrderAndReadsAcrossThem) {
  TempDir dir;
  const std::vector<uint32_t> all = write_folder(dir, {5, 0, 7, 4});
  const TokenDataset train(dir.str(), "train");
  EXPECT_EQ(train.size(), 16);
  EXPECT_EQ(train.vocab_size(), 50257);
  EXPECT_EQ(train.tokenizer(), "gpt2");
  EXPECT_EQ(train.eot(), std::optional<uint32_t>(50256));
  for (int64_t start = 0; start <= 16; ++start)
    for (int64_t n = 0; start + n <= 16; ++n) {
      std::vector<int32_t> out(n);
      train.read(start, n, out.data());
      EXPECT_EQ(out, std::vector<int32_t>(all.begin() + start, all.begin() + start + n)) << start << "+" << n;
    }
  int32_t out[17];
  EXPECT_THROW(train.read(0, 17, out), Error);

  const TokenDataset val(dir.str(), "val");
  EXPECT_EQ(val.size(), 3);
  val.read(0, 3, out);
  EXPECT_EQ(std::vector<int32_t>(out, out + 3), (std::vector<int32_t>{7, 8, 9}));
}

TEST(DatasetFolder, RejectsMissingFolder) {
  TempDir dir;
  expect_user_error([&] { TokenDataset(dir / "absent", "train"); },
                    {dir / "absent", "no such data folder", "data/prepare_sotu.sh", "msatrain data prepare"});
}

TEST(DatasetFolder, RejectsMissingMetaYaml) {
  TempDir dir;
  write_folder(dir, {3});
  std::filesystem::remove(dir / "meta.yaml");
  expect_user_error([&] { TokenDataset(dir.str(), "train"); },
                    {dir / "meta.yaml", "missing", "data/prepare_sotu.sh"});
}

TEST(DatasetFolder, RejectsMissingShardFile) {
  TempDir dir;
  write_folder(dir, {3, 4});
  std::filesystem::remove(dir / "train_001.bin");
  expect_user_error([&] { TokenDataset(dir.str(), "train"); },
                    {dir / "train_001.bin", "missing shard listed in", "data/prepare_sotu.sh"});
}

TEST(DatasetFolder, RejectsTruncatedShard) {
  TempDir dir;
  write_folder(dir, {3, 4});
  std::filesystem::resize_file(dir / "train_001.bin", 32 + 2 * 2);
  expect_user_error([&] { TokenDataset(dir.str(), "train"); },
                    {dir / "train_001.bin: truncated: header says 4 tokens, file holds 2"});
}

TEST(DatasetFolder, RejectsUnknownSplit) {
  TempDir dir;
  write_folder(dir, {3});
  expect_user_error([&] { TokenDataset(dir.str(), "test"); }, {dir / "meta.yaml", "has no split 'test'"});
}

TEST(DatasetFolder, RejectsTokenCountThatDisagreesWithMeta) {
  TempDir dir;
  write_folder(dir, {3});
  write_shard(dir / "train_000.bin", {1, 2}, 50257);
  expect_user_error([&] { TokenDataset(dir.str(), "train"); }, {"shards hold 2 tokens", "says 3"});
}

TEST(DatasetFolder, RejectsMalformedMetaYaml) {
  TempDir dir;
  write_folder(dir, {3});
  write_text(dir / "meta.yaml", "format_version: 1\nsplits: [unclosed\n");
  expect_user_error([&] { TokenDataset(dir.str(), "train"); }, {dir / "meta.yaml", "unreadable"});
}

}  // namespace
}  // namespace msa
