#include "kernels/cuda/common.cuh"
#include "kernels/cuda/elementwise.h"

namespace msa::cuda {
namespace {

template <class Y, class X>
__global__ void add_kernel(Y* y, const X* x, int64_t n, float alpha) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = from_f32<Y>(to_f32(y[i]) + alpha * to_f32(x[i]));
}

// bf16 residual adds, two elements per thread (4-byte accesses).
__global__ void add_bf16x2_kernel(__nv_bfloat162* y, const __nv_bfloat162* x, int64_t n2, float alpha) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n2; i += int64_t(gridDim.x) * blockDim.x) {
    const float2 a = __bfloat1622float2(y[i]), b = __bfloat1622float2(x[i]);
    y[i] = __floats2bfloat162_rn(a.x + alpha * b.x, a.y + alpha * b.y);
  }
}

template <class Y>
__global__ void scale_kernel(Y* y, int64_t n, float alpha) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = from_f32<Y>(alpha * to_f32(y[i]));
}

template <class Y, class X>
__global__ void convert_kernel(Y* y, const X* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = from_f32<Y>(to_f32(x[i]));
}

// One thread per output element of a (rows, width) window, in units of E (2 or 4 bytes).
template <class E>
__global__ void copy_columns_kernel(E* dst, int64_t dst_cols, int64_t dst_col, const E* src, int64_t src_cols,
                                    int64_t src_col, int64_t rows, int64_t width) {
  const int64_t total = rows * width;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / width, c = i % width;
    dst[r * dst_cols + dst_col + c] = src[r * src_cols + src_col + c];
  }
}

enum class Reduce { sum, squares, nonfinite };

// Accumulates in double: squares of fp32 gradients above ~1.8e19 would overflow a float sum (and report a
// finite gradient as non-finite); the kernel is memory-bound, so double adds cost nothing measurable.
template <class X, Reduce R>
__global__ void reduce_kernel(double* out, const X* x, int64_t n) {
  __shared__ double partial[32];
  double acc = 0.0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const double v = to_f32(x[i]);
    if constexpr (R == Reduce::sum) acc += v;
    if constexpr (R == Reduce::squares) acc += v * v;
    if constexpr (R == Reduce::nonfinite) acc += isfinite(v) ? 0.0 : 1.0;
  }
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = acc;
  __syncthreads();
  if (threadIdx.x < 32) {
    acc = threadIdx.x < (blockDim.x >> 5) ? partial[threadIdx.x] : 0.0;
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (threadIdx.x == 0) atomicAdd(out, acc);
  }
}

// Grid-stride launch of kernel over n elements.
template <class K, class... Args>
void launch(K kernel, int64_t n, Args... args) {
  if (n == 0) return;
  kernel<<<grid_for(n), 256, 0, compute_stream()>>>(args...);
  CUDA_CHECK_LAUNCH();
}

template <Reduce R>
double reduce(const void* x, bool f32, int64_t n) {
  double* slot = reduction_slot();
  CUDA_CHECK(cudaMemsetAsync(slot, 0, sizeof(double), compute_stream()));
  if (f32) launch(reduce_kernel<float, R>, n, slot, static_cast<const float*>(x), n);
  else launch(reduce_kernel<bf16, R>, n, slot, static_cast<const bf16*>(x), n);
  double h = 0;
  CUDA_CHECK(cudaMemcpyAsync(&h, slot, sizeof h, cudaMemcpyDeviceToHost, compute_stream()));
  CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
  return h;
}

}  // namespace

void add_inplace(void* y, bool y_f32, const void* x, bool x_f32, int64_t n, float alpha) {
  if (y_f32 && x_f32) launch(add_kernel<float, float>, n, (float*)y, (const float*)x, n, alpha);
  else if (y_f32) launch(add_kernel<float, bf16>, n, (float*)y, (const bf16*)x, n, alpha);
  else if (x_f32) launch(add_kernel<bf16, float>, n, (bf16*)y, (const float*)x, n, alpha);
  else if (n % 2 == 0 && reinterpret_cast<uintptr_t>(y) % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 4 == 0)
    launch(add_bf16x2_kernel, n / 2, (__nv_bfloat162*)y, (const __nv_bfloat162*)x, n / 2, alpha);
  else launch(add_kernel<bf16, bf16>, n, (bf16*)y, (const bf16*)x, n, alpha);
}

void scale_inplace(void* y, bool y_f32, int64_t n, float alpha) {
  if (y_f32) launch(scale_kernel<float>, n, (float*)y, n, alpha);
  else launch(scale_kernel<bf16>, n, (bf16*)y, n, alpha);
}

void convert(void* dst, bool dst_f32, const void* src, bool src_f32, int64_t n) {
  if (dst_f32 && src_f32) launch(convert_kernel<float, float>, n, (float*)dst, (const float*)src, n);
  else if (dst_f32) launch(convert_kernel<float, bf16>, n, (float*)dst, (const bf16*)src, n);
  else if (src_f32) launch(convert_kernel<bf16, float>, n, (bf16*)dst, (const float*)src, n);
  else launch(convert_kernel<bf16, bf16>, n, (bf16*)dst, (const bf16*)src, n);
}

void copy_columns(void* dst, int64_t dst_cols, int64_t dst_col, const void* src, int64_t src_cols, int64_t src_col,
                  int64_t rows, int64_t width, int elem_bytes) {
  const int64_t n = rows * width;
  if (elem_bytes == 2)
    launch(copy_columns_kernel<uint16_t>, n, (uint16_t*)dst, dst_cols, dst_col, (const uint16_t*)src, src_cols,
           src_col, rows, width);
  else
    launch(copy_columns_kernel<uint32_t>, n, (uint32_t*)dst, dst_cols, dst_col, (const uint32_t*)src, src_cols,
           src_col, rows, width);
}

double sum_squares_many(const std::vector<std::pair<const void*, int64_t>>& buffers, bool f32) {
  if (buffers.empty()) return 0.0;
  double* slot = reduction_slot();
  CUDA_CHECK(cudaMemsetAsync(slot, 0, sizeof(double), compute_stream()));
  for (const auto& [x, n] : buffers) {
    if (f32) launch(reduce_kernel<float, Reduce::squares>, n, slot, static_cast<const float*>(x), n);
    else launch(reduce_kernel<bf16, Reduce::squares>, n, slot, static_cast<const bf16*>(x), n);
  }
  double h = 0;
  CUDA_CHECK(cudaMemcpyAsync(&h, slot, sizeof h, cudaMemcpyDeviceToHost, compute_stream()));
  CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
  return h;
}

double sum(const void* x, bool f32, int64_t n) { return reduce<Reduce::sum>(x, f32, n); }
double sum_squares(const void* x, bool f32, int64_t n) { return reduce<Reduce::squares>(x, f32, n); }
bool all_finite(const void* x, bool f32, int64_t n) { return reduce<Reduce::nonfinite>(x, f32, n) == 0.0; }

}  // namespace msa::cuda
