#include "model/attention_gqa.h"

#include <cmath>


namespace msa {

AttentionGQA::AttentionGQA(const std::string& prefix, LayerContext& ctx)
    : ctx_(ctx), hq_(ctx.cfg.n_heads), hkv_(ctx.cfg.n_kv_heads), d_(ctx.cfg.head_dim) {
  const auto dt = ctx.dtype;
  const auto dev = ctx.device;
  const int64_t b = ctx.batch, t = ctx.seq, n = ctx.rows(), c = ctx.cfg.d_model;
  wqkv_ = Param(prefix + ".wqkv", {(hq_ + 2 * hkv_) * d_, c}, dt, dev, ParamKind::matrix);
  wo_ = Param(prefix + ".wo", {c, hq_ * d_}, dt, dev, ParamKind::matrix);
  if (ctx.cfg.qk_norm) {
    q_norm_ = Param(prefix + ".q_norm", {d_}, dt, dev, ParamKind::norm);
    k_norm_ = Param(prefix + ".k_norm", {d_}, dt, dev, ParamKind::norm);
    q_norm_.assign(std::vector<double>(d_, 1.0));
    k_norm_.assign(std::vector<double>(d_, 1.0));
    q_pre_ = Tensor::zeros({b, t, hq_, d_}, dt, dev);
    k_pre_ = Tensor::zeros({b, t, hkv_, d_}, dt, dev);
    q_rstd_ = Tensor::zeros({n * hq_}, ctx.stat_dtype(), dev);
    k_rstd_ = Tensor::zeros({n * hkv_}, ctx.stat_dtype(), dev);
  }
  qkv_ = Tensor::zeros({n, (hq_ + 2 * hkv_) * d_}, dt, dev);
  q_ = Tensor::zeros({b, t, hq_, d_}, dt, dev);
  k_ = Tensor::zeros({b, t, hkv_, d_}, dt, dev);
  v_ = Tensor::zeros({b, t, hkv_, d_}, dt, dev);
  o_ = Tensor::zeros({b, t, hq_, d_}, dt, dev);
  lse_ = Tensor::zeros({b, hq_, t}, ctx.stat_dtype(), dev);
  out_ = Tensor::zeros({n, c}, dt, dev);
}

void AttentionGQA::collect(ParamList& ps) {
  ps.push_back(&wqkv_);
  ps.push_back(&wo_);
  if (ctx_.cfg.qk_norm) {
    ps.push_back(&q_norm_);
    ps.push_back(&k_norm_);
  }
}

double AttentionGQA::scale() const { return 1.0 / std::sqrt(double(d_)); }

const Tensor& AttentionGQA::forward(const Tensor& x, const ops::BlockSelection& selection) {
  const int64_t n = ctx_.rows();
  selection_ = selection;
  ops::gemm(qkv_, x, false, wqkv_.value, true);
  // Split the projection into q, k, v: (N, H*d) column blocks.
  Tensor q2 = q_.view({n, hq_ * d_}), k2 = k_.view({n, hkv_ * d_}), v2 = v_.view({n, hkv_ * d_});
  ops::copy_columns(v2, 0, qkv_, (hq_ + hkv_) * d_, hkv_ * d_);
  if (ctx_.cfg.qk_norm) {
    Tensor qp = q_pre_.view({n, hq_ * d_}), kp = k_pre_.view({n, hkv_ * d_});
    ops::copy_columns(qp, 0, qkv_, 0, hq_ * d_);
    ops::copy_columns(kp, 0, qkv_, hq_ * d_, hkv_ * d_);
    Tensor qh = q_.view({n * hq_, d_}), kh = k_.view({n * hkv_, d_});
    ops::rmsnorm_forward(qh, q_rstd_, q_pre_.view({n * hq_, d_}), q_norm_.value, ctx_.cfg.norm_eps);
    ops::rmsnorm_forward(kh, k_rstd_, k_pre_.view({n * hkv_, d_}), k_norm_.value, ctx_.cfg.norm_eps);
  } else {
    ops::copy_columns(q2, 0, qkv_, 0, hq_ * d_);
    ops::copy_columns(k2, 0, qkv_, hq_ * d_, hkv_ * d_);
  }
  ops::rope(q_, ctx_.rope_cos, ctx_.rope_sin, ctx_.rot_dims, false);
  ops::rope(k_, ctx_.rope_cos, ctx_.rope_sin, ctx_.rot_dims, false);
  ops::attention_forward(o_, lse_, q_, k_, v_, ctx_.positions, ctx_.positions, scale(), selection_);
  ops::gemm(out_, o_.view({n, hq_ * d_}), false, wo_.value, true);
  return out_;
}

void AttentionGQA::backward(Tensor& dx, const Tensor& dout, const Tensor& x) {
  const int64_t n = ctx_.rows();
  Tensor o2 = o_.view({n, hq_ * d_});
  // out = o Wo^T:  do = dout Wo;  dWo += dout^T o
  ops::gemm(ctx_.d_attn, dout, false, wo_.value, false);
  ops::gemm(wo_.grad, dout, true, o2, false, 1.0, 1.0);
  Tensor d_o = ctx_.d_attn.view(o_.shape());
  ops::attention_backward(ctx_.d_q, ctx_.d_k, ctx_.d_v, d_o, o_, lse_, q_, k_, v_, ctx_.positions, ctx_.positions,
                          scale(), selection_);
  ops::rope(ctx_.d_q, ctx_.rope_cos, ctx_.rope_sin, ctx_.rot_dims, true);
  ops::rope(ctx_.d_k, ctx_.rope_cos, ctx_.rope_sin, ctx_.rot_dims, true);
  // Reassemble d(qkv) (N, (Hq + 2 Hkv) d), going back through the QK norm if there is one.
  if (ctx_.cfg.qk_norm) {
    // rmsnorm backward accumulates into its dx: zero the (N*H, d) scratch, then copy it in.
    Tensor& dqp = ctx_.d_q_pre;
    Tensor& dkp = ctx_.d_k_pre;
    dqp.zero_();
    dkp.zero_();
    ops::rmsnorm_backward(dqp, q_norm_.grad, ctx_.d_q.view({n * hq_, d_}), q_pre_.view({n * hq_, d_}), q_norm_.value,
                          q_rstd_);
    ops::rmsnorm_backward(dkp, k_norm_.grad, ctx_.d_k.view({n * hkv_, d_}), k_pre_.view({n * hkv_, d_}),
                          k_norm_.value, k_rstd_);
    ops::copy_columns(ctx_.d_qkv, 0, dqp.view({n, hq_ * d_}), 0, hq_ * d_);
    ops::copy_columns(ctx_.d_qkv, hq_ * d_, dkp.view({n, hkv_ * d_}), 0, hkv_ * d_);
  } else {
    ops::copy_columns(ctx_.d_qkv, 0, ctx_.d_q.view({n, hq_ * d_}), 0, hq_ * d_);
    ops::copy_columns(ctx_.d_qkv, hq_ * d_, ctx_.d_k.view({n, hkv_ * d_}), 0, hkv_ * d_);
  }
  ops::copy_columns(ctx_.d_qkv, (hq_ + hkv_) * d_, ctx_.d_v.view({n, hkv_ * d_}), 0, hkv_ * d_);
  // qkv = x Wqkv^T:  dWqkv += dqkv^T x;  dx = dqkv Wqkv
  ops::gemm(wqkv_.grad, ctx_.d_qkv, true, x, false, 1.0, 1.0);
  ops::gemm(dx, ctx_.d_qkv, false, wqkv_.value, false);
}

}  // namespace msa
