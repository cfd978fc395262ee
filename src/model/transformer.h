// The decoder-only language model:
//   tokens -> embed -> [Block] x L -> final norm -> LM head (tied or untied) -> softmax cross-entropy.
// forward() runs one micro-batch and, when asked, prepares the loss gradient; backward() accumulates every
// parameter's gradient. Buffers are sized for (micro_batch, seq_len) once, at construction.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "core/rng.h"
#include "model/block.h"
#include "model/layer_context.h"
#include "model/rmsnorm.h"

namespace msa {

// What one forward measured. objective is the scalar whose gradient backward() computes:
// weights.lm * lm_loss_sum + the MSA layers' KL terms.
struct ForwardStats {
  double lm_loss_sum = 0;  // sum of per-token LM losses
  double objective = 0;
  MsaLayerStats msa;       // summed over MSA layers (rows counts every layer's rows)
  int64_t msa_layers = 0;
  std::vector<MoeLayerStats> moe;  // one per MoE layer, in layer order
  int64_t attended_pairs = 0;  // (query, KV group, key) triples the attention layers attended, summed over layers
};

// The embedding and LM head have this many rows: the vocabulary rounded up to a multiple of 64, so that the
// (N, V) logits rows stay 128-byte aligned for the tensor-core GEMMs (GPT-2's 50257 -> 50304). The padding rows
// are 0, never a token, and get no gradient; checkpoints store the padded tensors.
inline int64_t padded_vocab(int64_t vocab) { return (vocab + 63) / 64 * 64; }

class Transformer {
 public:
  // MoE layers (model.ffn = moe) split their routed experts over ep_comm (nullptr: this rank holds them all).
  // seq is the global sequence length. With cp (context parallel, see context_parallel.h) this rank holds
  // cp->local_len() tokens of each sequence at cp->local_positions(), and forward() takes those tokens.
  Transformer(const ModelConfig& cfg, const AttentionConfig& attn, const MoeConfig& moe, DType dtype, Device device,
              int64_t micro_batch, int64_t seq, Comm* ep_comm = nullptr, ContextParallel* cp = nullptr);
  Transformer(const ModelConfig& cfg, const AttentionConfig& attn, DType dtype, Device device, int64_t micro_batch,
              int64_t seq, ContextParallel* cp = nullptr)
      : Transformer(cfg, attn, MoeConfig{}, dtype, device, micro_batch, seq, nullptr, cp) {}
  Transformer(const ModelConfig& cfg, DType dtype, Device device, int64_t micro_batch, int64_t seq)
      : Transformer(cfg, AttentionConfig{}, dtype, device, micro_batch, seq) {}

  // Draws every parameter from rng (normal(0, init_std); residual output projections scaled by
  // 1/sqrt(2 L); norms = 1). Same seed, same weights, on every rank. Routed experts draw from their own
  // stream, seeded by rng's state and the parameter's name, so each expert's weights do not depend on which
  // rank holds it (expert parallel) and the other weights do not depend on the experts held.
  void init_weights(Rng& rng);

  // tokens, targets (B, T) int32 (T = the local tokens with cp); targets < 0 are ignored. weights (non-zero) prepare backward() for the loss
  // weights.lm * sum(LM losses) + MSA KL terms (e.g. weights = 1 / global token count).
  ForwardStats forward(const Tensor& tokens, const Tensor& targets, const LossWeights& weights);
  // Dense-only shorthand: the summed LM loss, gradient weight grad_scale.
  double forward(const Tensor& tokens, const Tensor& targets, double grad_scale) {
    return forward(tokens, targets, LossWeights{grad_scale, 0.0}).lm_loss_sum;
  }
  // Accumulates into every Param::grad. grads_ready (optional) is called with each group of parameters as soon as
  // their gradients are final for this backward (the head and final norm first, then block by block from the
  // last; the embedding's only at the end): gradient sums can start while the backward goes on.
  void backward(const std::function<void(const ParamList&)>& grads_ready = nullptr);
  void set_msa_phase(MsaPhase p) { ctx_.phase = p; }
  void set_measure_recall(bool on) { ctx_.measure_recall = on; }

  ParamList& params() { return params_; }
  void zero_grads();
  int64_t num_parameters() const;
  const ModelConfig& config() const { return ctx_.cfg; }
  LayerContext& context() { return ctx_; }

 private:
  LayerContext ctx_;
  Param embed_;                 // (Vp, C), Vp = padded_vocab(V)
  std::vector<std::unique_ptr<Block>> blocks_;
  RMSNorm final_norm_;
  Param head_;                  // (Vp, C) when not tied
  Tensor tokens_;               // (B, T) the micro-batch's inputs (handle)
  Tensor x0_;                   // (N, C) embeddings
  Tensor logits_;               // (N, Vp) padded vocabulary; becomes dlogits when a gradient is prepared
  Tensor losses_;               // (N)
  Tensor d_res_;                // (N, C) residual-stream gradient
  ParamList params_;
  const Param& head_weight() const { return ctx_.cfg.tie_embeddings ? embed_ : head_; }
  Param& head_weight() { return ctx_.cfg.tie_embeddings ? embed_ : head_; }
};

}  // namespace msa
