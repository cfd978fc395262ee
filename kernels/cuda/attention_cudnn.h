// Dense causal GQA attention through cuDNN's fused flash-attention engines (cuDNN 9 backend graph API, no
// cudnn_frontend). Same tensors and conventions as attention.h, for the one case it serves: plain causal
// self-attention, qpos = kpos = 0..T-1 (so Tq == Tk). The caller knows when that holds; nothing here reads the
// position arrays. Context parallel, shuffled positions and anything cuDNN rejects stay with attention.h.
//
// Execution plans are built once per shape (B, T, Hq, Hkv, d) and kept for the process (building one takes
// cuDNN from tens of milliseconds to seconds); a shape cuDNN finds no engine for is remembered as unsupported.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/cuda/attention.h"

namespace msa::cuda {

// MSATRAIN_ATTENTION=own|cudnn, read once (default cudnn): whether plain causal attention may use cuDNN.
bool cudnn_attention_enabled();

// Builds the forward and backward plans for this shape on first ask. False when cuDNN cannot run it (Tq != Tk,
// no engine, a graph cuDNN rejects); the reason goes to stderr once per shape.
bool cudnn_attention_supported(const AttentionDims& dims);

// Bytes of scratch the calls below need (engine workspace; the backward adds its fp32 dQ accumulator and
// rowsum(dO * O)). Only for supported shapes.
size_t cudnn_attention_forward_workspace_bytes(const AttentionDims& dims);
size_t cudnn_attention_backward_workspace_bytes(const AttentionDims& dims);

// o (B, T, Hq, d) bf16; lse (B, Hq, T) fp32 natural-log sum-exp of the scaled scores (cuDNN's softmax stats:
// max + log(sum exp(s - max)), the same quantity attention_forward writes).
void cudnn_attention_forward(__nv_bfloat16* o, float* lse, const __nv_bfloat16* q, const __nv_bfloat16* k,
                             const __nv_bfloat16* v, const AttentionDims& dims, void* workspace,
                             cudaStream_t stream);

// dq (B, T, Hq, d), dk, dv (B, T, Hkv, d) bf16, all written. lse as the forward wrote it.
void cudnn_attention_backward(__nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv, const __nv_bfloat16* dout,
                              const __nv_bfloat16* o, const float* lse, const __nv_bfloat16* q,
                              const __nv_bfloat16* k, const __nv_bfloat16* v, const AttentionDims& dims,
                              void* workspace, cudaStream_t stream);

}  // namespace msa::cuda
