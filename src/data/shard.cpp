// Token shards: a 32-byte little-endian header, then the ids (data/FORMAT.md). Shards are memory-mapped, so
// opening a large corpus costs nothing until windows are read.
#include "data/shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include <yaml-cpp/yaml.h>

#include "core/error.h"

namespace msa {
namespace {

static_assert(std::endian::native == std::endian::little, "shards are little-endian; add byte swaps here");

constexpr char kMagic[8] = {'M', 'S', 'A', 'T', 'O', 'K', 'S', '1'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 32;

struct Header {  // the on-disk layout, field by field
  char magic[8];
  uint32_t version;
  uint32_t dtype;  // bytes per id: 2 (uint16) or 4 (uint32)
  uint64_t count;
  uint32_t vocab_size;
  uint32_t reserved;
};
static_assert(sizeof(Header) == kHeaderBytes);

// Closes a file descriptor on every path out of the constructor, including throws.
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
};

constexpr const char* kPrepareHint = "; run data/prepare_sotu.sh (or `msatrain data prepare`) to create it";

}  // namespace

void write_shard(const std::string& path, const std::vector<uint32_t>& ids, int64_t vocab_size) {
  MSA_CHECK(vocab_size > 0 && vocab_size <= std::numeric_limits<uint32_t>::max(),
            "write_shard: vocab size " << vocab_size << " does not fit the format");
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof(kMagic));
  h.version = kVersion;
  h.dtype = vocab_size <= 65536 ? 2 : 4;
  h.count = ids.size();
  h.vocab_size = static_cast<uint32_t>(vocab_size);

  const std::string tmp = path + ".tmp";
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  MSA_USER_CHECK(out, tmp << ": cannot create shard file: " << std::strerror(errno));
  out.write(reinterpret_cast<const char*>(&h), sizeof(h));
  // Narrow in chunks so that writing never doubles the memory of a large shard.
  constexpr size_t kChunk = size_t{1} << 20;
  std::vector<uint8_t> buf(kChunk * h.dtype);
  for (size_t begin = 0; begin < ids.size(); begin += kChunk) {
    const size_t n = std::min(kChunk, ids.size() - begin);
    for (size_t i = 0; i < n; ++i) {
      const uint32_t id = ids[begin + i];
      MSA_CHECK(static_cast<int64_t>(id) < vocab_size,
                "write_shard: token id " << id << " >= vocab size " << vocab_size);
      if (h.dtype == 2) {
        const auto v = static_cast<uint16_t>(id);
        std::memcpy(&buf[i * 2], &v, 2);
      } else {
        std::memcpy(&buf[i * 4], &id, 4);
      }
    }
    out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(n * h.dtype));
  }
  out.close();
  MSA_USER_CHECK(out, tmp << ": write failed (disk full?)");
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  MSA_USER_CHECK(!ec, "cannot rename " << tmp << " to " << path << ": " << ec.message());
}

TokenShard::TokenShard(const std::string& path) : path_(path) {
  FdGuard file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  MSA_USER_CHECK(file.fd >= 0, path << ": cannot open token shard: " << std::strerror(errno));
  struct stat st {};
  MSA_USER_CHECK(::fstat(file.fd, &st) == 0, path << ": cannot stat token shard: " << std::strerror(errno));
  const auto file_bytes = static_cast<uint64_t>(st.st_size);
  MSA_USER_CHECK(file_bytes >= kHeaderBytes, path << ": truncated: the file holds " << file_bytes
                                                  << " bytes, less than the " << kHeaderBytes << "-byte header");
  Header h{};
  MSA_USER_CHECK(::pread(file.fd, &h, sizeof(h), 0) == static_cast<ssize_t>(sizeof(h)),
                 path << ": cannot read the shard header: " << std::strerror(errno));

  // Validate everything before mapping, so that no check below can leak the mapping.
  MSA_USER_CHECK(std::memcmp(h.magic, kMagic, sizeof(kMagic)) == 0,
                 path << ": not a token shard: bad magic (expected \"" << std::string(kMagic, 8) << "\")");
  MSA_USER_CHECK(h.version == kVersion, path << ": unsupported shard version " << h.version
                                             << " (this build reads version " << kVersion << ")");
  MSA_USER_CHECK(h.dtype == 2 || h.dtype == 4,
                 path << ": corrupt header: dtype " << h.dtype << " (expected 2 for uint16 or 4 for uint32 ids)");
  MSA_USER_CHECK(h.vocab_size > 0 && (h.dtype == 4 || h.vocab_size <= 65536),
                 path << ": corrupt header: vocab size " << h.vocab_size << " with " << h.dtype << "-byte ids");
  const uint64_t data_bytes = file_bytes - kHeaderBytes;
  const uint64_t held = data_bytes / h.dtype;
  MSA_USER_CHECK(h.count <= held, path << ": truncated: header says " << h.count << " tokens, file holds " << held);
  MSA_USER_CHECK(data_bytes == h.count * h.dtype, path << ": corrupt: header says " << h.count
                                                       << " tokens, but the file has " << data_bytes - h.count * h.dtype
                                                       << " trailing bytes");

  void* map = ::mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, file.fd, 0);
  MSA_USER_CHECK(map != MAP_FAILED, path << ": cannot map token shard: " << std::strerror(errno));
  map_ = static_cast<const uint8_t*>(map);
  map_bytes_ = file_bytes;
  count_ = static_cast<int64_t>(h.count);
  vocab_size_ = h.vocab_size;
  dtype_ = h.dtype;
}

TokenShard::~TokenShard() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), map_bytes_);
}

TokenShard::TokenShard(TokenShard&& o) noexcept
    : path_(std::move(o.path_)), map_(o.map_), map_bytes_(o.map_bytes_), count_(o.count_),
      vocab_size_(o.vocab_size_), dtype_(o.dtype_) {
  o.map_ = nullptr;
  o.map_bytes_ = 0;
  o.count_ = 0;
}

void TokenShard::read(int64_t start, int64_t n, int32_t* out) const {
  MSA_CHECK(start >= 0 && n >= 0 && start <= count_ - n,
            path_ << ": read of [" << start << ", " << start + n << ") is outside the shard's " << count_ << " tokens");
  const uint8_t* data = map_ + kHeaderBytes;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t id = 0;
    if (dtype_ == 2) {
      uint16_t v;
      std::memcpy(&v, data + (start + i) * 2, 2);
      id = v;
    } else {
      std::memcpy(&id, data + (start + i) * 4, 4);
    }
    MSA_USER_CHECK(static_cast<int64_t>(id) < vocab_size_, path_ << ": corrupt: token " << start + i << " is id " << id
                                           << ", not below the vocab size " << vocab_size_);
    out[i] = static_cast<int32_t>(id);
  }
}

TokenDataset::TokenDataset(const std::string& dir, const std::string& split) {
  namespace fs = std::filesystem;
  MSA_USER_CHECK(fs::is_directory(dir), dir << ": no such data folder" << kPrepareHint);
  const std::string meta = (fs::path(dir) / "meta.yaml").string();
  MSA_USER_CHECK(fs::exists(meta), meta << ": missing, so " << dir << " holds no prepared data" << kPrepareHint);

  std::vector<std::string> files;
  int64_t tokens = 0;
  try {
    const YAML::Node root = YAML::LoadFile(meta);
    const int version = root["format_version"].as<int>();
    MSA_USER_CHECK(version == 1, meta << ": format_version " << version << " is not supported (expected 1)"
                                      << "; rerun data/prepare_sotu.sh (or `msatrain data prepare`)");
    tokenizer_ = root["tokenizer"].as<std::string>();
    vocab_size_ = root["vocab_size"].as<int64_t>();
    if (root["eot"] && !root["eot"].IsNull()) eot_ = root["eot"].as<uint32_t>();
    const YAML::Node splits = root["splits"];
    MSA_USER_CHECK(splits && splits.IsMap(), meta << ": has no 'splits' map");
    const YAML::Node s = splits[split];
    if (!s || !s.IsMap()) {
      std::string known;
      for (const auto& kv : splits) known += (known.empty() ? "" : ", ") + kv.first.as<std::string>();
      MSA_USER_CHECK(false, meta << ": has no split '" << split << "' (it has: " << known << ")");
    }
    tokens = s["tokens"].as<int64_t>();
    files = s["shards"].as<std::vector<std::string>>();
  } catch (const YAML::Exception& e) {
    throw UserError(meta + ": unreadable or incomplete: " + e.what());
  }

  for (const std::string& name : files) {
    MSA_USER_CHECK(!name.empty() && name.find('/') == std::string::npos,
                   meta << ": shard name '" << name << "' is not a file name in " << dir);
    const std::string path = (fs::path(dir) / name).string();
    MSA_USER_CHECK(fs::exists(path), path << ": missing shard listed in " << meta
                                          << "; rerun data/prepare_sotu.sh (or `msatrain data prepare`)");
    TokenShard& shard = shards_.emplace_back(path);
    MSA_USER_CHECK(shard.vocab_size() == vocab_size_, path << ": vocab size " << shard.vocab_size() << " differs from "
                                                          << vocab_size_ << " in " << meta);
    offsets_.push_back(offsets_.back() + shard.size());
  }
  MSA_USER_CHECK(size() == tokens, dir << ": the " << split << " shards hold " << size() << " tokens, but " << meta
                                       << " says " << tokens);
}

void TokenDataset::read(int64_t start, int64_t n, int32_t* out) const {
  MSA_CHECK(start >= 0 && n >= 0 && start <= size() - n,
            "dataset read of [" << start << ", " << start + n << ") is outside its " << size() << " tokens");
  // The shard that holds `start`: the last whose first token is <= start.
  auto i = static_cast<size_t>(std::upper_bound(offsets_.begin(), offsets_.end(), start) - offsets_.begin()) - 1;
  while (n > 0) {
    const int64_t local = start - offsets_[i];
    const int64_t take = std::min(n, shards_[i].size() - local);
    shards_[i].read(local, take, out);
    start += take;
    out += take;
    n -= take;
    ++i;
  }
}

}  // namespace msa
