// Row-major GEMM on the GPU through cuBLASLt: c (M, N) = alpha * op(a) * op(b) + beta * c, a and b bf16,
// fp32 accumulation, c bf16 (activations) or fp32 (gradient accumulation with beta = 1).
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

namespace msa::cuda {

void gemm_bf16(void* c, bool c_is_f32, const __nv_bfloat16* a, bool trans_a, const __nv_bfloat16* b, bool trans_b,
               int64_t m, int64_t n, int64_t k, float alpha, float beta);

}  // namespace msa::cuda
