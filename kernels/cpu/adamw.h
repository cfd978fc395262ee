// AdamW with decoupled weight decay on fp32 (or, in tests, fp64) master weights.
#pragma once
#include <cmath>
#include <cstdint>

namespace msa::cpu {

struct AdamWStep {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step;        // 1-based, for bias correction
  double grad_scale;   // multiplies the gradient first (global-norm clipping)
};

template <class T>
void adamw_update(T* p, T* m, T* v, const T* g, int64_t n, const AdamWStep& s) {
  const double bc1 = 1.0 - std::pow(s.beta1, double(s.step));
  const double bc2 = 1.0 - std::pow(s.beta2, double(s.step));
  for (int64_t i = 0; i < n; ++i) {
    double gi = double(g[i]) * s.grad_scale;
    double mi = s.beta1 * double(m[i]) + (1.0 - s.beta1) * gi;
    double vi = s.beta2 * double(v[i]) + (1.0 - s.beta2) * gi * gi;
    m[i] = T(mi);
    v[i] = T(vi);
    double update = (mi / bc1) / (std::sqrt(vi / bc2) + s.eps) + s.weight_decay * double(p[i]);
    p[i] = T(double(p[i]) - s.lr * update);
  }
}

}  // namespace msa::cpu
