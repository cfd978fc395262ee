#include "model/index_branch.h"

#include "ops/ops.h"

namespace msa {

IndexBranch::IndexBranch(const std::string& prefix, LayerContext& ctx)
    : ctx_(ctx), hkv_(ctx.cfg.n_kv_heads), di_(ctx.attn.index_head_dim) {
  const auto dt = ctx.dtype;
  const auto dev = ctx.device;
  const int64_t b = ctx.batch, t = ctx.seq, n = ctx.rows(), c = ctx.cfg.d_model;
  wq_ = Param(prefix + ".wq", {hkv_ * di_, c}, dt, dev, ParamKind::matrix, ParamGroup::index);
  wk_ = Param(prefix + ".wk", {di_, c}, dt, dev, ParamKind::matrix, ParamGroup::index);
  q_norm_ = Param(prefix + ".q_norm", {di_}, dt, dev, ParamKind::norm, ParamGroup::index);
  k_norm_ = Param(prefix + ".k_norm", {di_}, dt, dev, ParamKind::norm, ParamGroup::index);
  q_norm_.assign(std::vector<double>(di_, 1.0));
  k_norm_.assign(std::vector<double>(di_, 1.0));
  qi_pre_ = Tensor::zeros({n, hkv_ * di_}, dt, dev);
  ki_pre_ = Tensor::zeros({n, di_}, dt, dev);
  q_rstd_ = Tensor::zeros({n * hkv_}, ctx.stat_dtype(), dev);
  k_rstd_ = Tensor::zeros({n}, ctx.stat_dtype(), dev);
  qi_ = Tensor::zeros({b, t, hkv_, di_}, dt, dev);
  ki_ = Tensor::zeros({b, t, di_}, dt, dev);
  dqi_ = Tensor::zeros({b, t, hkv_, di_}, dt, dev);
  dki_ = Tensor::zeros({b, t, di_}, dt, dev);
  dqi_pre_ = Tensor::zeros({n * hkv_, di_}, dt, dev);
  dki_pre_ = Tensor::zeros({n, di_}, dt, dev);
}

void IndexBranch::collect(ParamList& ps) {
  ps.push_back(&wq_);
  ps.push_back(&wk_);
  ps.push_back(&q_norm_);
  ps.push_back(&k_norm_);
}

void IndexBranch::forward(const Tensor& x) {
  const int64_t n = ctx_.rows(), b = ctx_.batch, t = ctx_.seq;
  ops::gemm(qi_pre_, x, false, wq_.value, true);
  ops::gemm(ki_pre_, x, false, wk_.value, true);
  Tensor qh = qi_.view({n * hkv_, di_}), kh = ki_.view({n, di_});
  ops::rmsnorm_forward(qh, q_rstd_, qi_pre_.view({n * hkv_, di_}), q_norm_.value, ctx_.cfg.norm_eps);
  ops::rmsnorm_forward(kh, k_rstd_, ki_pre_, k_norm_.value, ctx_.cfg.norm_eps);
  Tensor k4 = ki_.view({b, t, 1, di_});
  ops::rope(qi_, ctx_.index_rope_cos, ctx_.index_rope_sin, ctx_.index_rot_dims, false);
  ops::rope(k4, ctx_.index_rope_cos, ctx_.index_rope_sin, ctx_.index_rot_dims, false);
}

void IndexBranch::backward(const Tensor& x, Tensor* dx) {
  const int64_t n = ctx_.rows(), b = ctx_.batch, t = ctx_.seq;
  Tensor dk4 = dki_.view({b, t, 1, di_});
  ops::rope(dqi_, ctx_.index_rope_cos, ctx_.index_rope_sin, ctx_.index_rot_dims, true);
  ops::rope(dk4, ctx_.index_rope_cos, ctx_.index_rope_sin, ctx_.index_rot_dims, true);
  dqi_pre_.zero_();
  dki_pre_.zero_();
  ops::rmsnorm_backward(dqi_pre_, q_norm_.grad, dqi_.view({n * hkv_, di_}), qi_pre_.view({n * hkv_, di_}),
                        q_norm_.value, q_rstd_);
  ops::rmsnorm_backward(dki_pre_, k_norm_.grad, dki_.view({n, di_}), ki_pre_, k_norm_.value, k_rstd_);
  const Tensor dq2 = dqi_pre_.view({n, hkv_ * di_});
  ops::gemm(wq_.grad, dq2, true, x, false, 1.0, 1.0);  // dWqI += dqI_pre^T x
  ops::gemm(wk_.grad, dki_pre_, true, x, false, 1.0, 1.0);
  if (dx) {  // detach_index_input = false only
    ops::gemm(*dx, dq2, false, wq_.value, false, 1.0, 1.0);
    ops::gemm(*dx, dki_pre_, false, wk_.value, false, 1.0, 1.0);
  }
}

}  // namespace msa
