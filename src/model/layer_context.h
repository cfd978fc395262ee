// What every layer of one model shares: the micro-batch geometry, the token positions and RoPE tables, and the
// scratch buffers the backward pass reuses from layer to layer (allocated once, never inside a step).
#pragma once
#include <memory>

#include "config/config.h"
#include "core/tensor.h"

namespace msa {

class Comm;
class ContextParallel;
class RowExchange;

enum class MsaPhase { warmup, sparse };  // spec §5: dense Main Branch while the indexer warms up, then sparse

// Gradient weight per token of each loss: the step scales every loss by 1 / (global tokens); a weight of 0 means
// that loss sends no gradient (evaluation, or the detach tests).
struct LossWeights {
  double lm = 0;
  double kl = 0;   // before kl_coef / Hkv, which the MSA layer applies (spec §4)
  double moe = 0;  // MoE aux and z losses, before their coefficients, which the MoE layer applies
};

struct LayerContext {
  ModelConfig cfg;
  AttentionConfig attn;  // MSA knobs
  MoeConfig moe;         // MoE knobs (used by the layers built as MoE)
  Comm* ep_comm = nullptr;  // the expert-parallel group; nullptr = this rank holds every expert
  // How MoE layers move rows over ep_comm (moe_dispatch.h); made by the first MoE layer, shared by the rest.
  std::shared_ptr<RowExchange> ep_exchange;
  MsaPhase phase = MsaPhase::sparse;
  LossWeights weights;
  bool measure_recall = false;  // MSA layers measure index_recall in this forward
  DType dtype = DType::f32;
  Device device = Device::cpu;
  int64_t batch = 1;    // B sequences per micro-batch
  int64_t seq = 1;      // T tokens per sequence held by this rank
  int64_t rows() const { return batch * seq; }  // N = B * T
  // Context parallel (context_parallel.h): null on one rank per sequence. With it, attention reads the keys of
  // the whole sequence: key_seq = the global sequence length, else key_seq = seq.
  ContextParallel* cp = nullptr;
  int64_t key_seq = 1;
  // Statistics (norm rstd, softmax lse, losses) and RoPE tables: fp32 when activations are bf16.
  DType stat_dtype() const { return dtype == DType::bf16 ? DType::f32 : dtype; }
  int64_t rot_dims = 0;  // RoPE-rotated dims per head (even)

  Tensor positions;      // (T) int32 global positions of the local tokens
  Tensor key_positions;  // (key_seq) int32 global positions of the keys attention reads (= positions without cp)
  std::vector<int32_t> host_positions, host_key_positions;  // the same two on the host (work counting)
  bool plain_causal = false;  // positions = key positions = 0..T-1: dense causal self-attention (no cp)
  Tensor rope_cos;   // (T, rot_dims/2)
  Tensor rope_sin;   // (T, rot_dims/2)
  int64_t index_rot_dims = 0;  // for the MSA index heads (dim attention.index_head_dim)
  Tensor index_rope_cos;       // (T, index_rot_dims/2)
  Tensor index_rope_sin;

  // Backward scratch, shared by all layers.
  Tensor d_norm;  // (N, C) gradient w.r.t. a norm's output
  Tensor d_attn;  // (N, Hq*d) gradient w.r.t. the attention output before Wo
  Tensor d_qkv;   // (N, (Hq + 2 Hkv) d)
  Tensor d_q;     // (B, T, Hq, d)
  Tensor d_k;     // (B, T, Hkv, d)
  Tensor d_v;     // (B, T, Hkv, d)
  Tensor d_k_all; // (B, key_seq, Hkv, d) with cp: this rank's partial gradients of every key, before the scatter
  Tensor d_v_all; // (B, key_seq, Hkv, d)
  Tensor d_q_pre; // (N * Hq, d) gradient before the QK norm
  Tensor d_k_pre; // (N * Hkv, d)
  Tensor d_h;     // (N, F)
  Tensor d_gu;    // (N, 2F)

  LayerContext(const ModelConfig& c, DType dt, Device dev, int64_t b, int64_t t)
      : LayerContext(c, AttentionConfig{}, dt, dev, b, t) {}
  LayerContext(const ModelConfig& c, const AttentionConfig& a, DType dt, Device dev, int64_t b, int64_t t);
  // Recompute positions and RoPE tables for the local tokens at these global positions (without cp, the keys
  // are the local tokens and key_positions follows).
  void set_positions(const std::vector<int32_t>& pos);
  // Splits the sequence over cp's ranks: seq must be cp.local_len(); positions become this rank's chunks and
  // the keys the whole sequence. Call before the layers are built (they size their key buffers by key_seq).
  void use_context_parallel(ContextParallel& cp);
};

}  // namespace msa
