// SwiGLU activation: h = silu(gate) * up, reading gate and up from one (N, 2F) buffer [gate | up]
// (the fused W13 projection).
#pragma once
#include <cmath>
#include <cstdint>

namespace msa::cpu {

template <class T> inline T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }

// h (N, F); gu (N, 2F).
template <class T>
void swiglu_forward(T* h, const T* gu, int64_t n, int64_t f) {
  for (int64_t i = 0; i < n; ++i) {
    const T* g = gu + i * 2 * f;
    const T* u = g + f;
    T* hi = h + i * f;
    for (int64_t j = 0; j < f; ++j) hi[j] = g[j] * sigmoid(g[j]) * u[j];
  }
}

// dgu (N, 2F) written from dh (N, F).  d silu(x)/dx = s * (1 + x * (1 - s)), s = sigmoid(x).
template <class T>
void swiglu_backward(T* dgu, const T* dh, const T* gu, int64_t n, int64_t f) {
  for (int64_t i = 0; i < n; ++i) {
    const T* g = gu + i * 2 * f;
    const T* u = g + f;
    const T* dhi = dh + i * f;
    T* dg = dgu + i * 2 * f;
    T* du = dg + f;
    for (int64_t j = 0; j < f; ++j) {
      T s = sigmoid(g[j]);
      du[j] = dhi[j] * g[j] * s;
      dg[j] = dhi[j] * u[j] * s * (T(1) + g[j] * (T(1) - s));
    }
  }
}

}  // namespace msa::cpu
