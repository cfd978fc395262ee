// Training windows by global sample index, so that the data order depends only on the seed and the step, not
// on the number of ranks, and resuming needs only the count of samples consumed.
//
// Sample i of the training stream is the window of seq_len + 1 tokens starting at
// splitmix64(seed, i) mod (size - seq_len): inputs are its first seq_len tokens, targets the last seq_len.
// Step s consumes samples [s*S, (s+1)*S), S = batch_tokens / seq_len; data-parallel rank r takes the r-th of dp
// equal slices of those, in micro-batches of train.micro_batch sequences. With context parallel each cp rank of
// that dp slice loads the same samples and keeps only its tokens (the `positions` overloads; context_parallel.h).
// Validation uses `count` fixed windows spread evenly over the val split.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "data/shard.h"

namespace msa {

class WindowSampler {
 public:
  WindowSampler(const TokenDataset& data, int64_t seq_len, uint64_t seed);
  int64_t window_start(int64_t sample) const;
  // tokens, targets (B, T) int32 for samples first .. first + B - 1.
  void load(int64_t first_sample, Tensor& tokens, Tensor& targets) const;
  // Only the tokens at these positions of each window: tokens, targets (B, positions.size()).
  void load(int64_t first_sample, Tensor& tokens, Tensor& targets, const std::vector<int32_t>& positions) const;

 private:
  const TokenDataset& data_;
  int64_t seq_len_;
  uint64_t seed_;
  std::vector<int32_t> all_;  // 0 .. seq_len-1
};

// The fixed validation windows: window i starts at i * (size - seq_len - 1) / max(count - 1, 1).
class ValidationWindows {
 public:
  ValidationWindows(const TokenDataset& data, int64_t seq_len, int64_t count);
  int64_t count() const { return count_; }
  // Rows of tokens/targets (B, T) for windows first .. first + B - 1; rows past count() get targets -1
  // (ignored), so the last micro-batch may be partial.
  void load(int64_t first, Tensor& tokens, Tensor& targets) const;
  // Only the tokens at these positions of each window: tokens, targets (B, positions.size()).
  void load(int64_t first, Tensor& tokens, Tensor& targets, const std::vector<int32_t>& positions) const;

 private:
  const TokenDataset& data_;
  int64_t seq_len_, count_;
  std::vector<int32_t> all_;  // 0 .. seq_len-1
};

}  // namespace msa
