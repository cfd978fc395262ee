// RMSNorm over the last dimension: y = x / sqrt(mean(x^2) + eps) * w.
#pragma once
#include <cmath>
#include <cstdint>

namespace msa::cpu {

// x, y (N, C); w (C); rstd (N) saved for the backward.
template <class T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int64_t n, int64_t c, double eps) {
  for (int64_t i = 0; i < n; ++i) {
    const T* xi = x + i * c;
    T* yi = y + i * c;
    double ss = 0;
    for (int64_t j = 0; j < c; ++j) ss += double(xi[j]) * double(xi[j]);
    T r = T(1.0 / std::sqrt(ss / double(c) + eps));
    rstd[i] = r;
    for (int64_t j = 0; j < c; ++j) yi[j] = xi[j] * r * w[j];
  }
}

// dx += d(loss)/dx (accumulated, so the residual stream's gradient can be summed in place); dw += ...
// With g = dy * w:  dx = r * g - x * r^3 * mean(g * x).
template <class T>
void rmsnorm_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, const T* rstd, int64_t n, int64_t c) {
  for (int64_t i = 0; i < n; ++i) {
    const T* xi = x + i * c;
    const T* dyi = dy + i * c;
    T* dxi = dx + i * c;
    T r = rstd[i];
    double gx = 0;
    for (int64_t j = 0; j < c; ++j) gx += double(dyi[j]) * double(w[j]) * double(xi[j]);
    T coef = T(gx / double(c)) * r * r * r;
    for (int64_t j = 0; j < c; ++j) {
      dxi[j] += r * dyi[j] * w[j] - xi[j] * coef;
      dw[j] += dyi[j] * xi[j] * r;
    }
  }
}

}  // namespace msa::cpu
