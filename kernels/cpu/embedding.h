// Token embedding lookup and its scatter-add backward.
#pragma once
#include <cstdint>
#include <cstring>

namespace msa::cpu {

// out (N, C) = table[ids[n]]; table (V, C).
template <class T>
void embedding_forward(T* out, const T* table, const int32_t* ids, int64_t n, int64_t c) {
  for (int64_t i = 0; i < n; ++i) std::memcpy(out + i * c, table + int64_t(ids[i]) * c, sizeof(T) * c);
}

// dtable[ids[n]] += dout[n].
template <class T>
void embedding_backward(T* dtable, const T* dout, const int32_t* ids, int64_t n, int64_t c) {
  for (int64_t i = 0; i < n; ++i) {
    T* row = dtable + int64_t(ids[i]) * c;
    const T* d = dout + i * c;
    for (int64_t j = 0; j < c; ++j) row[j] += d[j];
  }
}

}  // namespace msa::cpu
