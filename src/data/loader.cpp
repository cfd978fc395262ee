#include "data/loader.h"

#include <algorithm>
#include <vector>

#include "core/rng.h"

namespace msa {
namespace {

void load_window(const TokenDataset& data, int64_t start, int64_t seq_len, int32_t* tokens, int32_t* targets,
                 std::vector<int32_t>& buf) {
  buf.resize(seq_len + 1);
  data.read(start, seq_len + 1, buf.data());
  std::copy(buf.begin(), buf.begin() + seq_len, tokens);
  std::copy(buf.begin() + 1, buf.end(), targets);
}

}  // namespace

WindowSampler::WindowSampler(const TokenDataset& data, int64_t seq_len, uint64_t seed)
    : data_(data), seq_len_(seq_len), seed_(seed) {
  MSA_USER_CHECK(data.size() > seq_len + 1, "the training split holds " << data.size()
                                                                       << " tokens, too few for one window of "
                                                                       << seq_len + 1 << " (model.seq_len + 1)");
}

int64_t WindowSampler::window_start(int64_t sample) const {
  const uint64_t h = splitmix64(seed_ ^ splitmix64(static_cast<uint64_t>(sample)));
  return static_cast<int64_t>(h % static_cast<uint64_t>(data_.size() - seq_len_));
}

void WindowSampler::load(int64_t first_sample, Tensor& tokens, Tensor& targets) const {
  const int64_t b = tokens.dim(0);
  MSA_CHECK(tokens.dim(1) == seq_len_ && targets.shape() == tokens.shape(), "loader tensor shapes");
  std::vector<int32_t> buf;
  for (int64_t i = 0; i < b; ++i)
    load_window(data_, window_start(first_sample + i), seq_len_, tokens.data<int32_t>() + i * seq_len_,
                targets.data<int32_t>() + i * seq_len_, buf);
}

ValidationWindows::ValidationWindows(const TokenDataset& data, int64_t seq_len, int64_t count)
    : data_(data), seq_len_(seq_len), count_(count) {
  MSA_USER_CHECK(data.size() > seq_len + 1, "the validation split holds " << data.size()
                                                                         << " tokens, too few for one window of "
                                                                         << seq_len + 1 << " (model.seq_len + 1)");
}

void ValidationWindows::load(int64_t first, Tensor& tokens, Tensor& targets) const {
  const int64_t b = tokens.dim(0);
  const int64_t span = data_.size() - seq_len_ - 1;
  std::vector<int32_t> buf;
  for (int64_t i = 0; i < b; ++i) {
    int32_t* tk = tokens.data<int32_t>() + i * seq_len_;
    int32_t* tg = targets.data<int32_t>() + i * seq_len_;
    const int64_t w = first + i;
    if (w >= count_) {  // padding row: any valid tokens, no loss
      std::fill(tk, tk + seq_len_, 0);
      std::fill(tg, tg + seq_len_, -1);
      continue;
    }
    const int64_t start = count_ > 1 ? w * span / (count_ - 1) : 0;
    load_window(data_, start, seq_len_, tk, tg, buf);
  }
}

}  // namespace msa
