// Rotary position embedding, half-split pairing: dims (i, i + r/2) for i < r/2 rotate by pos * theta^(-2i/r);
// dims r..d-1 pass through (rotary_fraction < 1).
#pragma once
#include <cstdint>

namespace msa::cpu {

// x (B, T, H, d) rotated in place; cos, sin (T, r/2) for the tokens' (global) positions.
// inverse = true applies the transpose rotation: that is the backward (dx = R^T dy).
template <class T>
void rope_apply(T* x, const T* cos, const T* sin, int64_t b, int64_t t, int64_t h, int64_t d, int64_t r, bool inverse) {
  const int64_t half = r / 2;
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ti = 0; ti < t; ++ti) {
      const T* c = cos + ti * half;
      const T* s = sin + ti * half;
      for (int64_t hi = 0; hi < h; ++hi) {
        T* v = x + ((bi * t + ti) * h + hi) * d;
        for (int64_t i = 0; i < half; ++i) {
          T x1 = v[i], x2 = v[i + half];
          T si = inverse ? -s[i] : s[i];
          v[i] = x1 * c[i] - x2 * si;
          v[i + half] = x1 * si + x2 * c[i];
        }
      }
    }
}

// dst[n, dst_col + j] = (R src[n, src_col + ...])_j for j < width: the rotation of each head (head_dim columns)
// of a column window, out of place, for rows n of token n % t. dst and src have dst_cols and src_cols columns.
template <class T>
void rope_copy_columns(T* dst, int64_t dst_cols, int64_t dst_col, const T* src, int64_t src_cols, int64_t src_col,
                       int64_t rows, int64_t width, int64_t d, const T* cos, const T* sin, int64_t t, int64_t r,
                       bool inverse) {
  const int64_t half = r / 2;
  for (int64_t n = 0; n < rows; ++n) {
    const T* c = cos + (n % t) * half;
    const T* s = sin + (n % t) * half;
    for (int64_t j = 0; j < width; ++j) {
      const int64_t i = j % d, head = j - i;  // dim within the head, the head's first column
      const T* x = src + n * src_cols + src_col + head;
      T out = x[i];
      if (i < half) out = x[i] * c[i] - x[i + half] * (inverse ? -s[i] : s[i]);
      else if (i < r) out = x[i - half] * (inverse ? -s[i - half] : s[i - half]) + x[i] * c[i - half];
      dst[n * dst_cols + dst_col + j] = out;
    }
  }
}

}  // namespace msa::cpu
