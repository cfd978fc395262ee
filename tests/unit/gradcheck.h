// Finite-difference gradient checking in double precision, shared by the layer and model tests.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "core/rng.h"
#include "core/tensor.h"

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

}  // namespace msa::test
