#include "model/attention_gqa.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "model/context_parallel.h"

namespace msa {

namespace {

// Keys with position in [lo, hi] among sorted key positions.
int64_t keys_between(const std::vector<int32_t>& sorted, int64_t lo, int64_t hi) {
  if (hi < lo) return 0;
  return std::upper_bound(sorted.begin(), sorted.end(), hi) - std::lower_bound(sorted.begin(), sorted.end(), lo);
}

// (query, group, key) triples visible under causal masking and, when given, the block selection.
int64_t count_attended(const std::vector<int32_t>& qpos, const std::vector<int32_t>& kpos,
                       const ops::BlockSelection& selection, int64_t batch, int64_t hkv) {
  std::vector<int32_t> keys = kpos;
  std::sort(keys.begin(), keys.end());
  const int32_t* qp = qpos.data();
  const int64_t tq = int64_t(qpos.size());
  int64_t pairs = 0;
  if (!selection.sel) {
    for (int64_t i = 0; i < tq; ++i) pairs += keys_between(keys, 0, qp[i]);
    return pairs * batch * hkv;
  }
  const Tensor& sel = *selection.sel;  // (B, Hkv, Tq, k)
  const int64_t topk = sel.dim(3), bs = selection.block_size;
  const int32_t* s = sel.data<int32_t>();
  for (int64_t row = 0; row < batch * hkv * tq; ++row) {
    const int64_t i = row % tq;
    for (int64_t c = 0; c < topk; ++c)
      if (const int64_t blk = s[row * topk + c]; blk >= 0)
        pairs += keys_between(keys, blk * bs, std::min<int64_t>((blk + 1) * bs - 1, qp[i]));
  }
  return pairs;
}

}  // namespace

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
  if (ctx.cp) {
    k_all_ = Tensor::zeros({b, ctx.key_seq, hkv_, d_}, dt, dev);
    v_all_ = Tensor::zeros({b, ctx.key_seq, hkv_, d_}, dt, dev);
  }
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

bool AttentionGQA::plain_causal() const { return ctx_.plain_causal && !selection_.sel; }

const Tensor& AttentionGQA::forward(const Tensor& x, const ops::BlockSelection& selection) {
  const int64_t n = ctx_.rows();
  selection_ = selection;
  ops::gemm(qkv_, x, false, wqkv_.value, true);
  // Split the projection into q, k, v: (N, H*d) column blocks.
  Tensor q2 = q_.view({n, hq_ * d_}), k2 = k_.view({n, hkv_ * d_}), v2 = v_.view({n, hkv_ * d_});
  ops::copy_columns(v2, 0, qkv_, (hq_ + hkv_) * d_, hkv_ * d_);
  // Keys first: with cp their gathers from the whole sequence (over NCCL, on the communication stream) then
  // overlap the queries' norm and rotation.
  if (ctx_.cfg.qk_norm) {
    Tensor kp = k_pre_.view({n, hkv_ * d_}), kh = k_.view({n * hkv_, d_});
    ops::copy_columns(kp, 0, qkv_, hq_ * d_, hkv_ * d_);
    ops::rmsnorm_forward(kh, k_rstd_, k_pre_.view({n * hkv_, d_}), k_norm_.value, ctx_.cfg.norm_eps);
    ops::rope(k_, ctx_.rope_cos, ctx_.rope_sin, ctx_.rot_dims, false);
  } else {  // split and rotate in one pass
    ops::copy_columns_rope(k2, 0, qkv_, hq_ * d_, hkv_ * d_, d_, ctx_.rope_cos, ctx_.rope_sin, ctx_.rot_dims, false);
  }
  if (ctx_.cp) {
    ctx_.cp->begin_gather(k_all_, k_);
    ctx_.cp->begin_gather(v_all_, v_);
  }
  if (ctx_.cfg.qk_norm) {
    Tensor qp = q_pre_.view({n, hq_ * d_}), qh = q_.view({n * hq_, d_});
    ops::copy_columns(qp, 0, qkv_, 0, hq_ * d_);
    ops::rmsnorm_forward(qh, q_rstd_, q_pre_.view({n * hq_, d_}), q_norm_.value, ctx_.cfg.norm_eps);
    ops::rope(q_, ctx_.rope_cos, ctx_.rope_sin, ctx_.rot_dims, false);
  } else {
    ops::copy_columns_rope(q2, 0, qkv_, 0, hq_ * d_, d_, ctx_.rope_cos, ctx_.rope_sin, ctx_.rot_dims, false);
  }
  if (ctx_.cp) ctx_.cp->finish_gathers();
  const Tensor& keys = ctx_.cp ? k_all_ : k_;
  const Tensor& values = ctx_.cp ? v_all_ : v_;
  ops::attention_forward(o_, lse_, q_, keys, values, ctx_.positions, ctx_.key_positions, scale(), selection_,
                         plain_causal());
  // Measured under context parallel only (the metric is attn_imbalance across the cp ranks); from the host
  // positions (the selection, MSA's, exists on the CPU only).
  if (ctx_.cp)
    attended_pairs_ = count_attended(ctx_.host_positions, ctx_.host_key_positions, selection_, ctx_.batch, hkv_);
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
  // With cp, gradients for every key of the sequence, then summed into the rows of the ranks that own them
  // (scatter key grads).
  Tensor& dk = ctx_.cp ? ctx_.d_k_all : ctx_.d_k;
  Tensor& dv = ctx_.cp ? ctx_.d_v_all : ctx_.d_v;
  ops::attention_backward(ctx_.d_q, dk, dv, d_o, o_, lse_, q_, k(), ctx_.cp ? v_all_ : v_, ctx_.positions,
                          ctx_.key_positions, scale(), selection_, plain_causal());
  if (ctx_.cp) {
    ctx_.cp->scatter_key_grads(ctx_.d_k, ctx_.d_k_all);
    ctx_.cp->scatter_key_grads(ctx_.d_v, ctx_.d_v_all);
  }
  // Reassemble d(qkv) (N, (Hq + 2 Hkv) d), back through RoPE (R^T) and the QK norm if there is one.
  if (ctx_.cfg.qk_norm) {
    ops::rope(ctx_.d_q, ctx_.rope_cos, ctx_.rope_sin, ctx_.rot_dims, true);
    ops::rope(ctx_.d_k, ctx_.rope_cos, ctx_.rope_sin, ctx_.rot_dims, true);
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
  } else {  // rotate back and merge in one pass
    ops::copy_columns_rope(ctx_.d_qkv, 0, ctx_.d_q.view({n, hq_ * d_}), 0, hq_ * d_, d_, ctx_.rope_cos,
                           ctx_.rope_sin, ctx_.rot_dims, true);
    ops::copy_columns_rope(ctx_.d_qkv, hq_ * d_, ctx_.d_k.view({n, hkv_ * d_}), 0, hkv_ * d_, d_, ctx_.rope_cos,
                           ctx_.rope_sin, ctx_.rot_dims, true);
  }
  ops::copy_columns(ctx_.d_qkv, (hq_ + hkv_) * d_, ctx_.d_v.view({n, hkv_ * d_}), 0, hkv_ * d_);
  // qkv = x Wqkv^T:  dWqkv += dqkv^T x;  dx = dqkv Wqkv
  ops::gemm(wqkv_.grad, ctx_.d_qkv, true, x, false, 1.0, 1.0);
  ops::gemm(dx, ctx_.d_qkv, false, wqkv_.value, false);
}

}  // namespace msa
