// The Mixture-of-Experts kernels on the GPU (docs/moe.md): the router (scores, top-k, gates, lse and their
// backward) and the row moves between token order and expert order. Each mirrors its CPU oracle
// (kernels/cpu/moe_router.h, the row loops of src/ops/ops_moe_cpu.cpp). Router statistics are fp32; rows are
// bf16 with fp32 arithmetic. Row lists arrive as device arrays (the ops upload the host lists once per call).
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

namespace msa::cuda {

// logits (N, E) f32 -> scores (N, E), gates (N, k), lse (N) f32 and idx (N, k) int32: softmax or sigmoid scores,
// the k best experts in descending score order (equal scores: the lower id first), gates = the chosen scores,
// divided by their sum when renorm.
void moe_route_forward(float* scores, int32_t* idx, float* gates, float* lse, const float* logits, int64_t n,
                       int64_t e, int64_t k, bool sigmoid, bool renorm);
// dlogits (N, E) written (bf16 or f32): the gradient of sum(dgates * gates) + sum_t,e aux_grad[e] * scores[t,e]
// + z_coef * sum_t lse_t^2 with respect to the logits. aux_grad (E) f32 on the device.
void moe_route_backward(void* dlogits, bool dlogits_f32, const float* dgates, const float* scores,
                        const int32_t* idx, const float* gates, const float* lse, const float* logits,
                        const float* aux_grad, float z_coef, int64_t n, int64_t e, int64_t k, bool sigmoid,
                        bool renorm);

// dst (M, C) bf16: dst[i] = scale[i] * src[rows[i]] (scale null = 1).   src (*, C)
void gather_rows(__nv_bfloat16* dst, const __nv_bfloat16* src, const int32_t* rows, const float* scale, int64_t m,
                 int64_t c);
// Deterministic scatter-add (no float atomics): destination row dst_rows[d] (D of them, distinct) gets
//   dst[dst_rows[d]] += sum over p in [start[d], start[d+1]) of scale[p] * src[src_rows[p]]
// summed in fp32 in the order of p, then rounded once. dst (*, C) bf16, src (*, C) bf16, scale null = 1.
void scatter_add_rows(__nv_bfloat16* dst, const __nv_bfloat16* src, const int32_t* dst_rows, const int32_t* start,
                      const int32_t* src_rows, const float* scale, int64_t d, int64_t c);
// out[i] = dot(a[rows[i]], b[i]) in fp32.   a (*, C), b (M, C) bf16; out (M) f32 on the device.
void row_dots(float* out, const __nv_bfloat16* a, const int32_t* rows, const __nv_bfloat16* b, int64_t m, int64_t c);

}  // namespace msa::cuda
