// The dense model's fused per-layer kernels on the GPU (bf16 activations, fp32 statistics and master state).
// Each mirrors its CPU oracle in kernels/cpu/<name>.h; the semantics (what is written, what accumulates) match.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

namespace msa::cuda {

using bf16_t = __nv_bfloat16;

// kernels/cpu/rmsnorm.h. y (N, C) bf16 = x * rstd * w; rstd (N) f32.
void rmsnorm_forward(bf16_t* y, float* rstd, const bf16_t* x, const bf16_t* w, int64_t n, int64_t c, float eps);
// dx (N, C) bf16 += ...; dw (C) f32 += ...
void rmsnorm_backward(bf16_t* dx, float* dw, const bf16_t* dy, const bf16_t* x, const bf16_t* w, const float* rstd,
                      int64_t n, int64_t c);

// kernels/cpu/rope.h. x (B, T, H, d) bf16 rotated in place, half-split pairs; cos, sin (T, r/2) f32.
void rope(bf16_t* x, const float* cos, const float* sin, int64_t b, int64_t t, int64_t h, int64_t d, int64_t r,
          bool inverse);

// kernels/cpu/rope.h rope_copy_columns: a window of whole heads copied out of place with RoPE applied.
void rope_copy_columns(bf16_t* dst, int64_t dst_cols, int64_t dst_col, const bf16_t* src, int64_t src_cols,
                       int64_t src_col, int64_t rows, int64_t width, int64_t d, const float* cos, const float* sin,
                       int64_t t, int64_t r, bool inverse);

// kernels/cpu/swiglu.h. h (N, F) = silu(gu[:, :F]) * gu[:, F:]; dgu (N, 2F) written.
void swiglu_forward(bf16_t* h, const bf16_t* gu, int64_t n, int64_t f);
void swiglu_backward(bf16_t* dgu, const bf16_t* dh, const bf16_t* gu, int64_t n, int64_t f);

// kernels/cpu/embedding.h. out (N, C) bf16 = table[ids]; dtable (V, C) f32 += scatter of dout.
void embedding_forward(bf16_t* out, const bf16_t* table, const int32_t* ids, int64_t n, int64_t c);
void embedding_backward(float* dtable, const bf16_t* dout, const int32_t* ids, int64_t n, int64_t c);

// kernels/cpu/cross_entropy.h. losses (N) f32; logits (N, stride) bf16, the first v columns the vocabulary, the
// rest padding; replaced by grad_scale * (softmax - onehot) (0 in the padding) when grad_scale != 0. Targets < 0
// are ignored (loss 0, gradient 0). Never forms fp32 logits in memory.
void cross_entropy(float* losses, bf16_t* logits, const int32_t* targets, int64_t n, int64_t v, int64_t stride,
                   float grad_scale);

// kernels/cpu/adamw.h on fp32 master weights p, moments m, v and gradient g; value (bf16, may be null) gets the
// rounded new weights in the same pass.
void adamw_update(float* p, float* m, float* v, const float* g, bf16_t* value, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, float bias_correction1, float bias_correction2,
                  float grad_scale);

}  // namespace msa::cuda
