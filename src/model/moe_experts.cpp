#include "model/moe_experts.h"

#include <algorithm>

#include "ops/ops.h"
#include "ops/ops_moe.h"

namespace msa {

Tensor grow_rows(Tensor& buf, int64_t rows, int64_t cols, DType dtype, Device device) {
  if (!buf.defined() || buf.dim(0) < rows || buf.dim(1) != cols)
    buf = Tensor::zeros({std::max<int64_t>(1, rows + rows / 4), cols}, dtype, device);  // 25% headroom
  return buf.slice(0, rows);
}

ExpertSet::ExpertSet(const std::vector<std::string>& names, const std::vector<int64_t>& ids, int64_t d_model,
                     int64_t hidden, DType dtype, Device device)
    : hidden_(hidden), dtype_(dtype), device_(device) {
  MSA_CHECK(names.size() == ids.size(), "ExpertSet: " << names.size() << " names, " << ids.size() << " ids");
  w13_.reserve(names.size());  // Params are collected by address: no reallocation after this
  w2_.reserve(names.size());
  for (size_t g = 0; g < names.size(); ++g) {
    w13_.emplace_back(names[g] + ".w13", Shape{2 * hidden, d_model}, dtype, device, ParamKind::matrix);
    w2_.emplace_back(names[g] + ".w2", Shape{d_model, hidden}, dtype, device, ParamKind::matrix);
    w13_.back().expert = w2_.back().expert = ids[g];
  }
}

void ExpertSet::collect(ParamList& ps) {
  for (size_t g = 0; g < w13_.size(); ++g) {
    ps.push_back(&w13_[g]);
    ps.push_back(&w2_[g]);
  }
}

void ExpertSet::forward(Tensor& y, const Tensor& x, const std::vector<int64_t>& offsets) {
  const int64_t r = x.dim(0);
  std::vector<const Tensor*> w13, w2;
  for (size_t g = 0; g < w13_.size(); ++g) w13.push_back(&w13_[g].value), w2.push_back(&w2_[g].value);
  gu_ = grow_rows(gu_buf_, r, 2 * hidden_, dtype_, device_);
  h_ = grow_rows(h_buf_, r, hidden_, dtype_, device_);
  ops::grouped_gemm(gu_, x, w13, true, offsets);  // [gate | up] = x W13^T   (R, 2F)
  if (r > 0) ops::swiglu_forward(h_, gu_);        // h = silu(gate) * up     (R, F)
  ops::grouped_gemm(y, h_, w2, true, offsets);    // y = h W2^T              (R, C)
}

void ExpertSet::backward(Tensor& dx, const Tensor& dy, const Tensor& x, const std::vector<int64_t>& offsets) {
  const int64_t r = x.dim(0);
  MSA_CHECK(gu_.defined() && gu_.dim(0) == r, "ExpertSet::backward without a matching forward");
  std::vector<const Tensor*> w13, w2;
  std::vector<Tensor*> dw13, dw2;
  for (size_t g = 0; g < w13_.size(); ++g) {
    w13.push_back(&w13_[g].value), w2.push_back(&w2_[g].value);
    dw13.push_back(&w13_[g].grad), dw2.push_back(&w2_[g].grad);
  }
  Tensor dh = grow_rows(dh_buf_, r, hidden_, dtype_, device_);
  Tensor dgu = grow_rows(dgu_buf_, r, 2 * hidden_, dtype_, device_);
  ops::grouped_gemm(dh, dy, w2, false, offsets);              // dh = dy W2            (R, F)
  ops::grouped_gemm_weight_grad(dw2, dy, h_, offsets);        // dW2 += dy^T h         (C, F)
  if (r > 0) ops::swiglu_backward(dgu, dh, gu_);              // d[gate | up]          (R, 2F)
  ops::grouped_gemm_weight_grad(dw13, dgu, x, offsets);       // dW13 += dgu^T x       (2F, C)
  ops::grouped_gemm(dx, dgu, w13, false, offsets);            // dx = dgu W13          (R, C)
}

}  // namespace msa
