// SwiGLU feed-forward: [gate | up] = x W13^T;  h = silu(gate) * up;  out = h W2^T.
#pragma once
#include "model/ffn_layer.h"
#include "model/layer_context.h"
#include "model/param.h"

namespace msa {

class SwiGLUFFN final : public FFNLayer {
 public:
  SwiGLUFFN(const std::string& prefix, LayerContext& ctx);
  const Tensor& forward(const Tensor& x) override;                 // x (N, C) -> out() (N, C)
  void backward(Tensor& dx, const Tensor& dout, const Tensor& x) override;  // dx (N, C) written
  void collect(ParamList& ps) override {
    ps.push_back(&w13_);
    ps.push_back(&w2_);
  }

 private:
  LayerContext& ctx_;
  Param w13_;   // (2F, C): gate rows then up rows
  Param w2_;    // (C, F)
  Tensor gu_;   // (N, 2F)
  Tensor h_;    // (N, F)
  Tensor out_;  // (N, C)
};

}  // namespace msa
