// The decoder-only language model:
//   tokens -> embed -> [Block] x L -> final norm -> LM head (tied or untied) -> softmax cross-entropy.
// forward() runs one micro-batch and, when asked, prepares the loss gradient; backward() accumulates every
// parameter's gradient. Buffers are sized for (micro_batch, seq_len) once, at construction.
#pragma once
#include <memory>
#include <vector>

#include "core/rng.h"
#include "model/block.h"
#include "model/layer_context.h"
#include "model/rmsnorm.h"

namespace msa {

class Transformer {
 public:
  Transformer(const ModelConfig& cfg, DType dtype, Device device, int64_t micro_batch, int64_t seq);

  // Draws every parameter from rng (normal(0, init_std); residual output projections scaled by
  // 1/sqrt(2 L); norms = 1). Same seed, same weights, on every rank.
  void init_weights(Rng& rng);

  // tokens, targets (B, T) int32; targets < 0 are ignored. Returns the SUM of the per-token losses.
  // grad_scale != 0 prepares backward() for the loss grad_scale * sum (e.g. 1 / global token count).
  double forward(const Tensor& tokens, const Tensor& targets, double grad_scale);
  void backward();  // accumulates into every Param::grad

  ParamList& params() { return params_; }
  void zero_grads();
  int64_t num_parameters() const;
  const ModelConfig& config() const { return ctx_.cfg; }
  LayerContext& context() { return ctx_; }

 private:
  LayerContext ctx_;
  Param embed_;                 // (V, C)
  std::vector<std::unique_ptr<Block>> blocks_;
  RMSNorm final_norm_;
  Param head_;                  // (V, C) when not tied
  Tensor tokens_;               // (B, T) the micro-batch's inputs (handle)
  Tensor x0_;                   // (N, C) embeddings
  Tensor logits_;               // (N, V); becomes dlogits when a gradient is prepared
  Tensor losses_;               // (N)
  Tensor d_res_;                // (N, C) residual-stream gradient
  ParamList params_;
  const Param& head_weight() const { return ctx_.cfg.tie_embeddings ? embed_ : head_; }
  Param& head_weight() { return ctx_.cfg.tie_embeddings ? embed_ : head_; }
};

}  // namespace msa
