#include "data/loader.h"

#include <algorithm>
#include <vector>

#include "core/rng.h"

namespace msa {
namespace {

// The window at start: token i of the sequence is buf[i], its target buf[i + 1]; keeps the given positions.
void load_window(const TokenDataset& data, int64_t start, int64_t seq_len, const std::vector<int32_t>& positions,
                 int32_t* tokens, int32_t* targets, std::vector<int32_t>& buf) {
  buf.resize(seq_len + 1);
  data.read(start, seq_len + 1, buf.data());
  for (size_t i = 0; i < positions.size(); ++i) {
    tokens[i] = buf[size_t(positions[i])];
    targets[i] = buf[size_t(positions[i]) + 1];
  }
}

std::vector<int32_t> iota_positions(int64_t n) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[size_t(i)] = static_cast<int32_t>(i);
  return p;
}

void check_positions(const std::vector<int32_t>& positions, int64_t seq_len, const Tensor& tokens,
                     const Tensor& targets) {
  MSA_CHECK(tokens.ndim() == 2 && tokens.dim(1) == int64_t(positions.size()) && targets.shape() == tokens.shape(),
            "loader tensor shapes " << shape_str(tokens.shape()) << " for " << positions.size() << " positions");
  for (int32_t p : positions) MSA_CHECK(p >= 0 && p < seq_len, "loader position " << p << " outside the window");
}

}  // namespace

WindowSampler::WindowSampler(const TokenDataset& data, int64_t seq_len, uint64_t seed)
    : data_(data), seq_len_(seq_len), seed_(seed), all_(iota_positions(seq_len)) {
  MSA_USER_CHECK(data.size() > seq_len + 1, "the training split holds " << data.size()
                                                                       << " tokens, too few for one window of "
                                                                       << seq_len + 1 << " (model.seq_len + 1)");
}

int64_t WindowSampler::window_start(int64_t sample) const {
  const uint64_t h = splitmix64(seed_ ^ splitmix64(static_cast<uint64_t>(sample)));
  return static_cast<int64_t>(h % static_cast<uint64_t>(data_.size() - seq_len_));
}

void WindowSampler::load(int64_t first_sample, Tensor& tokens, Tensor& targets) const {
  load(first_sample, tokens, targets, all_);
}

void WindowSampler::load(int64_t first_sample, Tensor& tokens, Tensor& targets,
                         const std::vector<int32_t>& positions) const {
  check_positions(positions, seq_len_, tokens, targets);
  const int64_t b = tokens.dim(0), t = tokens.dim(1);
  std::vector<int32_t> buf;
  for (int64_t i = 0; i < b; ++i)
    load_window(data_, window_start(first_sample + i), seq_len_, positions, tokens.data<int32_t>() + i * t,
                targets.data<int32_t>() + i * t, buf);
}

ValidationWindows::ValidationWindows(const TokenDataset& data, int64_t seq_len, int64_t count)
    : data_(data), seq_len_(seq_len), count_(count), all_(iota_positions(seq_len)) {
  MSA_USER_CHECK(data.size() > seq_len + 1, "the validation split holds " << data.size()
                                                                         << " tokens, too few for one window of "
                                                                         << seq_len + 1 << " (model.seq_len + 1)");
}

void ValidationWindows::load(int64_t first, Tensor& tokens, Tensor& targets) const {
  load(first, tokens, targets, all_);
}

void ValidationWindows::load(int64_t first, Tensor& tokens, Tensor& targets,
                             const std::vector<int32_t>& positions) const {
  check_positions(positions, seq_len_, tokens, targets);
  const int64_t b = tokens.dim(0), t = tokens.dim(1);
  const int64_t span = data_.size() - seq_len_ - 1;
  std::vector<int32_t> buf;
  for (int64_t i = 0; i < b; ++i) {
    int32_t* tk = tokens.data<int32_t>() + i * t;
    int32_t* tg = targets.data<int32_t>() + i * t;
    const int64_t w = first + i;
    if (w >= count_) {  // padding row: any valid tokens, no loss
      std::fill(tk, tk + t, 0);
      std::fill(tg, tg + t, -1);
      continue;
    }
    const int64_t start = count_ > 1 ? w * span / (count_ - 1) : 0;
    load_window(data_, start, seq_len_, positions, tk, tg, buf);
  }
}

}  // namespace msa
