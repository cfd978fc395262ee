// The checkpoint file: one HDF5 file per saved step, readable with h5py. docs/checkpoints.md shows it whole.
//
//   /                        attributes: format = "msatrain-checkpoint", format_version, msatrain_version,
//                            created_utc, step, samples_consumed, tokens_consumed, optimizer_steps,
//                            skipped_steps, skipped_in_a_row, rng.data_seed, rng.data_counter,
//                            layout.dp, layout.cp, layout.ep, layout.world
//   /config                  the resolved config YAML of the run that wrote the file (a string)
//   /params/<name>           every parameter as its full global tensor, e.g. /params/layers.0.attn.wqkv
//   /optim/m/<name>          AdamW first moment of that parameter (same shape)
//   /optim/v/<name>          AdamW second moment
//
// Every tensor dataset carries a crc32 attribute (of its little-endian bytes) that loading verifies, so a
// flipped bit is an error instead of a silently different model.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/h5.h"
#include "core/tensor.h"

namespace msa {

constexpr const char* kCheckpointFormat = "msatrain-checkpoint";
constexpr int64_t kCheckpointFormatVersion = 1;

struct CheckpointMeta {
  int64_t format_version = kCheckpointFormatVersion;
  std::string msatrain_version;
  std::string created_utc;        // "2025-01-31T12:00:00Z"
  int64_t step = 0;               // optimizer steps completed; a resumed run runs step `step` (0-based) next
  int64_t samples_consumed = 0;   // training sequences consumed (step x sequences per step)
  int64_t tokens_consumed = 0;
  int64_t optimizer_steps = 0;    // AdamW updates applied (its bias-correction count): step - skipped
  int64_t skipped_steps = 0;      // non-finite steps skipped so far
  int64_t skipped_in_a_row = 0;   // the current run of them, for train.max_bad_steps
  // The data sampler is a counter-based generator: sample i's window is a pure function of (seed, i), so its
  // whole state is the seed and the counter (the next sample index). Training draws no other random numbers.
  uint64_t data_seed = 0;
  int64_t data_counter = 0;
  int64_t dp = 1, cp = 1, ep = 1, world = 1;  // the parallel layout that wrote the file
  std::string config_yaml;                    // the resolved config of that run
};

struct TensorInfo {
  std::string name;  // "params/embed.weight"
  Shape shape;
  DType dtype = DType::f32;
  bool has_crc = false;
  uint32_t crc = 0;
};

// CRC-32 (zlib's polynomial) of a host tensor's bytes.
uint32_t tensor_crc32(const Tensor& t);

// Writes one checkpoint file. Every method throws Error with HDF5's reason (e.g. "No space left on device");
// the caller names the file and removes it.
class CheckpointWriter {
 public:
  explicit CheckpointWriter(const std::string& path);  // creates or truncates the file
  void write_meta(const CheckpointMeta& meta);
  void write_tensor(const std::string& name, const Tensor& t);  // f32 or f64 host tensor; name "params/x"
  // Flushes and closes the file; reports a failure to write the last buffered bytes.
  void close();

 private:
  h5::Handle file_, link_props_;
};

// Reads one checkpoint file. Every problem is a UserError "checkpoint PATH: <what is wrong>".
class CheckpointReader {
 public:
  explicit CheckpointReader(const std::string& path);  // opens the file and reads the metadata
  const std::string& path() const { return path_; }
  const CheckpointMeta& meta() const { return meta_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in name order
  const TensorInfo* find(const std::string& name) const;
  // Reads tensor `name` into `into`, which must have its shape (f32 and f64 convert), and verifies its CRC.
  void read(const std::string& name, Tensor& into) const;
  // The tensor in its stored dtype, without the CRC check (inspect reports the CRC itself).
  Tensor read_stored(const std::string& name) const;

 private:
  std::string path_;
  h5::Handle file_;
  CheckpointMeta meta_;
  std::vector<TensorInfo> tensors_;
  [[noreturn]] void fail(const std::string& what) const;
};

}  // namespace msa
