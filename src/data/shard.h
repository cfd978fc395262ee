// Token shards on disk (format: data/FORMAT.md) and the dataset view that concatenates a prepared folder's
// shards of one split into one stream of token ids.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace msa {

// Writes `ids` as one shard: uint16 ids when vocab_size <= 65536, else uint32. Written to PATH.tmp, then
// renamed, so a reader never sees a half-written shard.
void write_shard(const std::string& path, const std::vector<uint32_t>& ids, int64_t vocab_size);

// One shard, memory-mapped read-only. The header and the file size are validated on open; a shard that is
// missing, truncated or corrupt is a UserError naming the file and the problem.
class TokenShard {
 public:
  explicit TokenShard(const std::string& path);
  ~TokenShard();
  TokenShard(TokenShard&& other) noexcept;
  TokenShard& operator=(TokenShard&&) = delete;
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;

  int64_t size() const { return count_; }
  int64_t vocab_size() const { return vocab_size_; }
  const std::string& path() const { return path_; }
  // Copies ids [start, start + n) into out; the range must lie within the shard. An id >= vocab_size (a
  // corrupt shard) is a UserError.
  void read(int64_t start, int64_t n, int32_t* out) const;

 private:
  std::string path_;
  const uint8_t* map_ = nullptr;  // the whole file
  size_t map_bytes_ = 0;
  int64_t count_ = 0;
  int64_t vocab_size_ = 0;
  uint32_t dtype_ = 0;  // bytes per id: 2 or 4
};

// One split ("train", "val", ...) of a folder written by `msatrain data prepare`: DIR/meta.yaml plus the
// split's shards, in order, read as one concatenated stream.
class TokenDataset {
 public:
  TokenDataset(const std::string& dir, const std::string& split);

  int64_t size() const { return offsets_.back(); }
  int64_t vocab_size() const { return vocab_size_; }
  std::string tokenizer() const { return tokenizer_; }
  std::optional<uint32_t> eot() const { return eot_; }  // the document separator id, if the tokenizer has one
  // Copies ids [start, start + n) of the concatenated stream into out; may span shards.
  void read(int64_t start, int64_t n, int32_t* out) const;

 private:
  std::vector<TokenShard> shards_;
  std::vector<int64_t> offsets_{0};  // offsets_[i] = first token of shard i; back() = total
  int64_t vocab_size_ = 0;
  std::string tokenizer_;
  std::optional<uint32_t> eot_;
};

}  // namespace msa
