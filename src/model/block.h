// One transformer block:  h = x + attn(norm1(x));  out = h + ffn(norm2(h)).
#pragma once
#include <memory>

#include "model/attention_layer.h"
#include "model/ffn_layer.h"
#include "model/rmsnorm.h"
#include "model/swiglu_ffn.h"

namespace msa {

class Block {
 public:
  // use_msa: MSA attention (spec/msa.md) instead of dense GQA; use_moe: an MoE feed-forward (docs/moe.md)
  // instead of the dense SwiGLU.
  Block(int layer, LayerContext& ctx, bool use_msa = false, bool use_moe = false);
  const Tensor& forward(const Tensor& x);  // x (N, C) -> out() (N, C); x must stay alive until backward
  // On entry dres holds d(loss)/d(out); on exit d(loss)/d(x). Parameter grads accumulated.
  void backward(Tensor& dres);
  void collect(ParamList& ps);
  const Tensor& out() const { return out_; }
  MsaLayerStats msa_stats() const { return attn_->msa_stats(); }
  MoeLayerStats moe_stats() const { return ffn_->moe_stats(); }
  int64_t attended_pairs() const { return attn_->attended_pairs(); }

 private:
  LayerContext& ctx_;
  RMSNorm norm1_, norm2_;
  std::unique_ptr<AttentionLayer> attn_;
  std::unique_ptr<FFNLayer> ffn_;
  Tensor x_;    // the input seen by forward (a handle, not a copy)
  Tensor mid_;  // (N, C) x + attn
  Tensor out_;  // (N, C)
};

}  // namespace msa
