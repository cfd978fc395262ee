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

}  // namespace msa::cpu
