// Finite-difference gradient checking in double precision, shared by the layer and model tests.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "config/config.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "model/param.h"

namespace msa::test {

inline Tensor random_tensor(const Shape& shape, Rng& rng, double scale = 1.0) {
  Tensor t = Tensor::empty(shape, DType::f64);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = scale * rng.normal();
  return t;
}

// Compares analytic gradient `grad` of loss() w.r.t. `x` with central differences on up to `samples` entries
// (all entries when fewer). Relative error is measured against max(|numeric|, |analytic|, floor).
inline void expect_gradient(const std::string& what, Tensor& x, const Tensor& grad, const std::function<double()>& loss,
                            int samples = 24, double eps = 1e-5, double tol = 1e-6) {
  ASSERT_EQ(x.numel(), grad.numel()) << what;
  double* xp = x.data<double>();
  const double* gp = grad.data<double>();
  const int64_t n = x.numel();
  const int64_t step = std::max<int64_t>(1, n / samples);
  double max_err = 0;
  int64_t checked = 0;
  for (int64_t i = (n > samples ? 7 % step : 0); i < n; i += step, ++checked) {
    const double keep = xp[i];
    xp[i] = keep + eps;
    const double lp = loss();
    xp[i] = keep - eps;
    const double lm = loss();
    xp[i] = keep;
    const double num = (lp - lm) / (2 * eps);
    const double err = std::abs(num - gp[i]) / std::max({std::abs(num), std::abs(gp[i]), 1e-3});
    max_err = std::max(max_err, err);
    EXPECT_LT(err, tol) << what << "[" << i << "]: numeric " << num << " analytic " << gp[i];
  }
  EXPECT_GT(checked, 0) << what;
}

// sum(out * r): a scalar loss whose gradient w.r.t. out is r.
inline double weighted_sum(const Tensor& out, const Tensor& r) {
  const double* a = out.data<double>();
  const double* b = r.data<double>();
  double s = 0;
  for (int64_t i = 0; i < out.numel(); ++i) s += a[i] * b[i];
  return s;
}

// A model small enough for finite differences in double, with every feature on: GQA groups of 2, QK norm, and
// RoPE on 4 of 6 head dims (so the pass-through dims are exercised too).
inline ModelConfig small_model_config(int64_t vocab, int64_t seq) {
  ModelConfig c;
  c.vocab_size = vocab;
  c.d_model = 12;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 6;
  c.ffn_hidden = 10;
  c.seq_len = seq;
  c.rotary_fraction = 2.0 / 3.0;
  c.qk_norm = true;
  return c;
}

// Random parameter values (norm scales around 1), so that checks do not run at special points such as w = 1.
inline void randomise(const ParamList& ps, Rng& rng, double scale) {
  for (Param* p : ps) {
    std::vector<double> v(p->value.numel());
    for (double& x : v) x = (p->kind == ParamKind::norm ? 1.0 : 0.0) + scale * rng.normal();
    p->value.from_vector(v);
  }
}

}  // namespace msa::test
