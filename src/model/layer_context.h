// What every layer of one model shares: the micro-batch geometry, the token positions and RoPE tables, and the
// scratch buffers the backward pass reuses from layer to layer (allocated once, never inside a step).
#pragma once
#include "config/config.h"
#include "core/tensor.h"

namespace msa {

struct LayerContext {
  ModelConfig cfg;
  DType dtype = DType::f32;
  Device device = Device::cpu;
  int64_t batch = 1;    // B sequences per micro-batch
  int64_t seq = 1;      // T tokens per sequence held by this rank
  int64_t rows() const { return batch * seq; }  // N = B * T
  int64_t rot_dims = 0;  // RoPE-rotated dims per head (even)

  Tensor positions;  // (T) int32 global positions of the local tokens
  Tensor rope_cos;   // (T, rot_dims/2)
  Tensor rope_sin;   // (T, rot_dims/2)

  // Backward scratch, shared by all layers.
  Tensor d_norm;  // (N, C) gradient w.r.t. a norm's output
  Tensor d_attn;  // (N, Hq*d) gradient w.r.t. the attention output before Wo
  Tensor d_qkv;   // (N, (Hq + 2 Hkv) d)
  Tensor d_q;     // (B, T, Hq, d)
  Tensor d_k;     // (B, T, Hkv, d)
  Tensor d_v;     // (B, T, Hkv, d)
  Tensor d_q_pre; // (N * Hq, d) gradient before the QK norm
  Tensor d_k_pre; // (N * Hkv, d)
  Tensor d_h;     // (N, F)
  Tensor d_gu;    // (N, 2F)

  LayerContext(const ModelConfig& c, DType dt, Device dev, int64_t b, int64_t t);
  // Recompute positions and RoPE tables for tokens at global positions first, first+1, ...
  void set_positions(const std::vector<int32_t>& pos);
};

}  // namespace msa
