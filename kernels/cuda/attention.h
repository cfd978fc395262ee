// Fused causal grouped-query attention on the GPU (flash-attention style: tiles in shared memory, online
// softmax, no (T, T) matrix in global memory). bf16 inputs and outputs, fp32 accumulation and statistics.
//
// Masking is by position: key j is visible to query i iff kpos[j] <= qpos[i] (causal; with context parallel the
// keys are the gathered sequence and the queries this rank's chunks). Query head h reads KV head h / (Hq / Hkv).
// The CPU oracle is kernels/cpu/attention.h.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace msa::cuda {

struct AttentionDims {
  int64_t batch, tq, tk, hq, hkv, d;  // q, o (B, Tq, Hq, d); k, v (B, Tk, Hkv, d); d in {32, 64, 128}
  float scale;                        // usually 1/sqrt(d)
};

// o (B, Tq, Hq, d) bf16; lse (B, Hq, Tq) fp32 natural-log sum-exp of the scaled scores (-inf for a query that
// sees no key, whose output row is 0). qpos (Tq), kpos (Tk) int32 device arrays.
void attention_forward(__nv_bfloat16* o, float* lse, const __nv_bfloat16* q, const __nv_bfloat16* k,
                       const __nv_bfloat16* v, const int32_t* qpos, const int32_t* kpos, const AttentionDims& dims,
                       cudaStream_t stream);

// Bytes of fp32 scratch attention_backward needs (dq accumulation, rowsum(dO * O)).
size_t attention_backward_workspace_bytes(const AttentionDims& dims);

// dq (B, Tq, Hq, d), dk, dv (B, Tk, Hkv, d) bf16, all WRITTEN (not accumulated). workspace: the bytes above.
void attention_backward(__nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv, const __nv_bfloat16* dout,
                        const __nv_bfloat16* o, const float* lse, const __nv_bfloat16* q, const __nv_bfloat16* k,
                        const __nv_bfloat16* v, const int32_t* qpos, const int32_t* kpos, const AttentionDims& dims,
                        void* workspace, cudaStream_t stream);

}  // namespace msa::cuda
