// Argument helpers of the device-tensor ops (ops_cuda.cpp, ops_moe_cuda.cpp): dtype checks and typed pointers.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

#include "core/error.h"
#include "core/tensor.h"

namespace msa::ops::gpu {

using bf16 = __nv_bfloat16;

// Whether a float GPU tensor holds fp32 (else bf16); any other dtype or device is an error.
inline bool is_f32(const Tensor& t) {
  MSA_CHECK(t.device() == Device::cuda && (t.dtype() == DType::f32 || t.dtype() == DType::bf16),
            "GPU op on a " << dtype_name(t.dtype()) << " tensor (bf16 or f32 on the GPU expected)");
  return t.dtype() == DType::f32;
}
inline void expect(const Tensor& t, DType dt, const char* what) {
  MSA_CHECK(t.device() == Device::cuda && t.dtype() == dt,
            what << ": expected a GPU " << dtype_name(dt) << " tensor, got " << dtype_name(t.dtype()) << " on "
                 << (t.device() == Device::cuda ? "cuda" : "cpu"));
}
inline bf16* bf(const Tensor& t) { return static_cast<bf16*>(t.raw()); }
inline float* f32(const Tensor& t) { return static_cast<float*>(t.raw()); }
inline const int32_t* i32(const Tensor& t) { return static_cast<const int32_t*>(t.raw()); }
inline int64_t rows(const Tensor& t) { return t.numel() / t.dim(-1); }  // rows of the last dimension

}  // namespace msa::ops::gpu
