// MoE router: scores from logits (softmax or sigmoid), top-k expert choice, gates, and the backward through
// them together with the router z-loss and the load-balancing loss's gradient (docs/moe.md).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace msa::cpu {

// Per token t (row of logits (N, E)):
//   s = softmax(z) or sigmoid(z)                 scores (N, E)
//   I = the k largest s, ties to the lower id    idx (N, k), in descending score order
//   r_j = s[I_j];  g = r / sum(r) when renorm, else r     gates (N, k)
//   lse = logsumexp(z)                            (N), for the z-loss
template <class T>
void moe_route_forward(T* scores, int32_t* idx, T* gates, T* lse, const T* logits, int64_t n, int64_t e, int64_t k,
                       bool sigmoid, bool renorm) {
  for (int64_t t = 0; t < n; ++t) {
    const T* z = logits + t * e;
    T* s = scores + t * e;
    const T zmax = *std::max_element(z, z + e);
    double sum = 0;
    for (int64_t i = 0; i < e; ++i) sum += std::exp(double(z[i] - zmax));
    lse[t] = T(double(zmax) + std::log(sum));
    for (int64_t i = 0; i < e; ++i)
      s[i] = sigmoid ? T(1) / (T(1) + std::exp(-z[i])) : T(std::exp(double(z[i] - zmax)) / sum);
    int32_t* ti = idx + t * k;
    T* g = gates + t * k;
    double chosen = 0;
    for (int64_t j = 0; j < k; ++j) {
      int64_t best = -1;
      for (int64_t i = 0; i < e; ++i) {
        if (std::find(ti, ti + j, int32_t(i)) != ti + j) continue;
        if (best < 0 || s[i] > s[best]) best = i;  // strict: an equal score keeps the lower id
      }
      ti[j] = int32_t(best);
      g[j] = s[best];
      chosen += double(s[best]);
    }
    if (renorm)
      for (int64_t j = 0; j < k; ++j) g[j] = T(double(g[j]) / chosen);
  }
}

// dlogits (N, E) written: the gradient of  sum_t,j dgates[t,j] * g[t,j]  (dgates (N, k) from the combine)
//   + sum_t,e aux_grad[e] * s[t,e]     (the load-balancing loss, linear in the scores; aux_grad (E))
//   + z_coef * sum_t lse_t^2           (the router z-loss)
// with respect to the logits.
template <class T>
void moe_route_backward(T* dlogits, const T* dgates, const T* scores, const int32_t* idx, const T* gates,
                        const T* lse, const T* logits, const double* aux_grad, double z_coef, int64_t n, int64_t e,
                        int64_t k, bool sigmoid, bool renorm) {
  for (int64_t t = 0; t < n; ++t) {
    const T* s = scores + t * e;
    const T* dg = dgates + t * k;
    const T* g = gates + t * k;
    const int32_t* ti = idx + t * k;
    T* dz = dlogits + t * e;
    // ds (E): through the gates. With renorm g = r / R:  dr_j = (dg_j - sum_i dg_i g_i) / R, R = sum_i r_i.
    for (int64_t i = 0; i < e; ++i) dz[i] = T(aux_grad[i]);
    double dot = 0, r_sum = 0;
    for (int64_t j = 0; j < k; ++j) dot += double(dg[j]) * double(g[j]), r_sum += double(s[ti[j]]);
    for (int64_t j = 0; j < k; ++j) dz[ti[j]] += renorm ? T((double(dg[j]) - dot) / r_sum) : dg[j];
    // ds -> dz, in place.
    if (sigmoid) {
      for (int64_t i = 0; i < e; ++i) dz[i] *= s[i] * (T(1) - s[i]);
    } else {
      double sds = 0;
      for (int64_t i = 0; i < e; ++i) sds += double(s[i]) * double(dz[i]);
      for (int64_t i = 0; i < e; ++i) dz[i] = T(double(s[i]) * (double(dz[i]) - sds));
    }
    // z-loss: d(lse^2)/dz = 2 lse softmax(z).
    if (z_coef != 0) {
      const T* z = logits + t * e;
      for (int64_t i = 0; i < e; ++i) dz[i] += T(2 * z_coef * double(lse[t]) * std::exp(double(z[i] - lse[t])));
    }
  }
}

}  // namespace msa::cpu
