// Softmax cross-entropy over the vocabulary, fused with its gradient (the logits buffer becomes dlogits).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace msa::cpu {

// logits (N, stride) in, of which the first v columns are the vocabulary and the rest padding (excluded from the
// softmax); losses (N) out (0 where target < 0: ignored positions). If grad_scale != 0, logits are overwritten
// with d(sum of losses * grad_scale)/dlogits = (softmax - onehot) * scale, and 0 in the padding.
template <class T>
void cross_entropy(T* losses, T* logits, const int32_t* targets, int64_t n, int64_t v, int64_t stride, T grad_scale) {
  for (int64_t i = 0; i < n; ++i) {
    T* row = logits + i * stride;
    if (grad_scale != T(0)) std::fill(row + v, row + stride, T(0));
    const int32_t tgt = targets[i];
    if (tgt < 0) {
      losses[i] = 0;
      if (grad_scale != T(0)) std::fill(row, row + v, T(0));
      continue;
    }
    T m = *std::max_element(row, row + v);
    double sum = 0;
    for (int64_t j = 0; j < v; ++j) sum += std::exp(double(row[j] - m));
    T lse = m + T(std::log(sum));
    losses[i] = lse - row[tgt];
    if (grad_scale != T(0)) {
      for (int64_t j = 0; j < v; ++j) row[j] = std::exp(row[j] - lse) * grad_scale;
      row[tgt] -= grad_scale;
    }
  }
}

}  // namespace msa::cpu
