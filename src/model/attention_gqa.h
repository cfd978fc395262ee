// Dense causal grouped-query attention with RoPE and optional per-head QK RMSNorm.
//   qkv = x Wqkv^T;  q, k = rope(norm(q)), rope(norm(k));  o = softmax(q k^T / sqrt(d)) v;  out = o Wo^T
#pragma once
#include "model/attention_layer.h"
#include "model/layer_context.h"
#include "ops/ops.h"

namespace msa {

class AttentionGQA : public AttentionLayer {
 public:
  AttentionGQA(const std::string& prefix, LayerContext& ctx);
  // x (N, C) normed layer input -> out() (N, C)
  const Tensor& forward(const Tensor& x) override { return forward(x, {}); }
  // With a block selection this is MSA's Main Branch (spec §3): each query attends to its selected blocks only.
  const Tensor& forward(const Tensor& x, const ops::BlockSelection& selection);
  // dout (N, C) -> dx (N, C) written (not accumulated); parameter grads accumulated. Uses the forward's selection.
  void backward(Tensor& dx, const Tensor& dout, const Tensor& x) override;
  void collect(ParamList& ps) override;

  // As attended by the last forward, for the MSA KL teacher.
  const Tensor& q() const { return q_; }      // (B, T, Hq, d)
  const Tensor& k() const { return ctx_.cp ? k_all_ : k_; }  // (B, key_seq, Hkv, d): with cp, every rank's keys
  const Tensor& lse() const { return lse_; }  // (B, Hq, T)
  double scale() const;
  // (query, KV group, key) triples the last forward attended (spec §7's E, times Hkv): the work that context
  // parallel spreads over its ranks. Counted only under context parallel (0 otherwise).
  int64_t attended_pairs() const override { return attended_pairs_; }

 private:
  // This forward is dense causal self-attention (no cp, no selection): the GPU may run it through cuDNN.
  bool plain_causal() const;

  LayerContext& ctx_;
  int64_t hq_, hkv_, d_;
  Param wqkv_;    // ((Hq + 2 Hkv) d, C)
  Param wo_;      // (C, Hq d)
  Param q_norm_;  // (d), when qk_norm
  Param k_norm_;  // (d), when qk_norm
  Tensor qkv_;    // (N, (Hq + 2 Hkv) d) projection output
  Tensor q_pre_, k_pre_;      // (B, T, H, d) before the QK norm (kept for its backward)
  Tensor q_rstd_, k_rstd_;    // (N * H)
  Tensor q_, k_, v_;          // (B, T, H, d) of the local tokens
  Tensor k_all_, v_all_;      // (B, key_seq, Hkv, d) with cp: the whole sequence's keys, gathered (kept for backward)
  Tensor o_;                  // (B, T, Hq, d)
  Tensor lse_;                // (B, Hq, T)
  Tensor out_;                // (N, C)
  ops::BlockSelection selection_;  // of the last forward
  int64_t attended_pairs_ = 0;
};

}  // namespace msa
