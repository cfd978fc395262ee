#include "kernels/cuda/common.cuh"
#include "kernels/cuda/layer_ops.h"

namespace msa::cuda {
namespace {

constexpr int kWarps = 8;  // rows per block in the row-wise kernels (one warp per row)

// ---- RMSNorm: one warp per row.
__global__ void rmsnorm_forward_kernel(bf16* y, float* rstd, const bf16* x, const bf16* w, int64_t n, int64_t c,
                                       float eps) {
  const int lane = threadIdx.x & 31;
  const int64_t row = blockIdx.x * int64_t(kWarps) + (threadIdx.x >> 5);
  if (row >= n) return;
  const bf16* xr = x + row * c;
  float ss = 0.0f;
  for (int64_t j = lane; j < c; j += 32) {
    const float v = to_f32(xr[j]);
    ss += v * v;
  }
  const float r = rsqrtf(warp_sum(ss) / float(c) + eps);
  if (lane == 0) rstd[row] = r;
  bf16* yr = y + row * c;
  for (int64_t j = lane; j < c; j += 32) yr[j] = from_f32<bf16>(to_f32(xr[j]) * r * to_f32(w[j]));
}

// dx_j += r w_j dy_j - x_j r^3 mean_k(w_k dy_k x_k);  dw_j += sum over rows of dy_j x_j r.
// dw partial sums go to shared memory (C floats) first, then once per block to global.
__global__ void rmsnorm_backward_kernel(bf16* dx, float* dw, const bf16* dy, const bf16* x, const bf16* w,
                                        const float* rstd, int64_t n, int64_t c) {
  extern __shared__ float dw_block[];  // (C)
  for (int64_t j = threadIdx.x; j < c; j += blockDim.x) dw_block[j] = 0.0f;
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t row = blockIdx.x * int64_t(kWarps) + warp; row < n; row += int64_t(gridDim.x) * kWarps) {
    const bf16 *xr = x + row * c, *dyr = dy + row * c;
    const float r = rstd[row];
    float dot = 0.0f;
    for (int64_t j = lane; j < c; j += 32) dot += to_f32(w[j]) * to_f32(dyr[j]) * to_f32(xr[j]);
    const float k = warp_sum(dot) / float(c) * r * r * r;
    bf16* dxr = dx + row * c;
    for (int64_t j = lane; j < c; j += 32) {
      const float xv = to_f32(xr[j]), g = to_f32(dyr[j]);
      dxr[j] = from_f32<bf16>(to_f32(dxr[j]) + r * to_f32(w[j]) * g - xv * k);
      atomicAdd(&dw_block[j], g * xv * r);
    }
  }
  __syncthreads();
  for (int64_t j = threadIdx.x; j < c; j += blockDim.x) atomicAdd(&dw[j], dw_block[j]);
}

// ---- RoPE: one thread per (row, pair).
__global__ void rope_kernel(bf16* x, const float* cos, const float* sin, int64_t rows, int64_t t, int64_t h,
                            int64_t d, int64_t half, float sign) {
  const int64_t total = rows * half;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / half, p = i % half;  // row = (b * T + t) * H + h
    const int64_t ti = (row / h) % t;
    const float c = cos[ti * half + p], s = sign * sin[ti * half + p];
    bf16* v = x + row * d;
    const float x1 = to_f32(v[p]), x2 = to_f32(v[p + half]);
    v[p] = from_f32<bf16>(x1 * c - x2 * s);
    v[p + half] = from_f32<bf16>(x1 * s + x2 * c);
  }
}

// ---- SwiGLU.
__device__ __forceinline__ float sigmoidf(float v) { return 1.0f / (1.0f + __expf(-v)); }

__global__ void swiglu_forward_kernel(bf16* h, const bf16* gu, int64_t n, int64_t f) {
  const int64_t total = n * f;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / f, j = i % f;
    const float g = to_f32(gu[r * 2 * f + j]), u = to_f32(gu[r * 2 * f + f + j]);
    h[i] = from_f32<bf16>(g * sigmoidf(g) * u);
  }
}

__global__ void swiglu_backward_kernel(bf16* dgu, const bf16* dh, const bf16* gu, int64_t n, int64_t f) {
  const int64_t total = n * f;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / f, j = i % f;
    const float g = to_f32(gu[r * 2 * f + j]), u = to_f32(gu[r * 2 * f + f + j]), d = to_f32(dh[i]);
    const float s = sigmoidf(g);
    dgu[r * 2 * f + j] = from_f32<bf16>(d * u * s * (1.0f + g * (1.0f - s)));  // silu'(g) = s (1 + g (1 - s))
    dgu[r * 2 * f + f + j] = from_f32<bf16>(d * g * s);
  }
}

// ---- Embedding.
__global__ void embedding_forward_kernel(bf16* out, const bf16* table, const int32_t* ids, int64_t n, int64_t c) {
  const int64_t total = n * c;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = table[int64_t(ids[i / c]) * c + i % c];
}

__global__ void embedding_backward_kernel(float* dtable, const bf16* dout, const int32_t* ids, int64_t n, int64_t c) {
  const int64_t total = n * c;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    atomicAdd(&dtable[int64_t(ids[i / c]) * c + i % c], to_f32(dout[i]));
}

// ---- Cross-entropy: one block per row; the row is read twice (statistics, then gradient), in bf16.
__global__ void cross_entropy_kernel(float* losses, bf16* logits, const int32_t* targets, int64_t v, float grad_scale) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  bf16* z = logits + row * v;
  const int32_t tgt = targets[row];
  if (tgt < 0) {
    if (threadIdx.x == 0) losses[row] = 0.0f;
    if (grad_scale != 0.0f)
      for (int64_t j = threadIdx.x; j < v; j += blockDim.x) z[j] = from_f32<bf16>(0.0f);
    return;
  }
  // Online max and sum of exp per thread, then combined over the block.
  float m = -INFINITY, s = 0.0f;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
    const float x = to_f32(z[j]);
    if (x > m) {
      s = s * __expf(m - x) + 1.0f;
      m = x;
    } else {
      s += __expf(x - m);
    }
  }
  const float row_max = block_max(m, scratch);
  const float row_sum = block_sum(m == -INFINITY ? 0.0f : s * __expf(m - row_max), scratch);
  const float lse = row_max + logf(row_sum);
  const float z_tgt = to_f32(z[tgt]);
  __syncthreads();  // everyone has read z[tgt] before it is overwritten
  if (threadIdx.x == 0) losses[row] = lse - z_tgt;
  if (grad_scale == 0.0f) return;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
    const float p = __expf(to_f32(z[j]) - lse);
    z[j] = from_f32<bf16>((p - (j == tgt ? 1.0f : 0.0f)) * grad_scale);
  }
}

// ---- AdamW (decoupled weight decay), fp32 state; also writes the bf16 compute copy.
__global__ void adamw_kernel(float* p, float* m, float* v, const float* g, bf16* value, int64_t n, float lr, float b1,
                             float b2, float eps, float wd, float bc1, float bc2, float gs) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = g[i] * gs;
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float pi = p[i] - lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + wd * p[i]);
    p[i] = pi;
    if (value) value[i] = __float2bfloat16(pi);
  }
}

template <class K, class... Args>
void launch_flat(K kernel, int64_t n, Args... args) {
  if (n == 0) return;
  kernel<<<grid_for(n), 256, 0, compute_stream()>>>(args...);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void rmsnorm_forward(bf16* y, float* rstd, const bf16* x, const bf16* w, int64_t n, int64_t c, float eps) {
  if (n == 0) return;
  rmsnorm_forward_kernel<<<unsigned((n + kWarps - 1) / kWarps), 32 * kWarps, 0, compute_stream()>>>(y, rstd, x, w, n,
                                                                                                   c, eps);
  CUDA_CHECK_LAUNCH();
}

void rmsnorm_backward(bf16* dx, float* dw, const bf16* dy, const bf16* x, const bf16* w, const float* rstd, int64_t n,
                      int64_t c) {
  if (n == 0) return;
  const int64_t want = (n + kWarps - 1) / kWarps, cap = int64_t(sm_count()) * 4;
  const size_t smem = size_t(c) * sizeof(float);
  if (smem > 48 * 1024)
    CUDA_CHECK(cudaFuncSetAttribute(rmsnorm_backward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  rmsnorm_backward_kernel<<<unsigned(want < cap ? want : cap), 32 * kWarps, smem, compute_stream()>>>(dx, dw, dy, x, w,
                                                                                                    rstd, n, c);
  CUDA_CHECK_LAUNCH();
}

void rope(bf16* x, const float* cos, const float* sin, int64_t b, int64_t t, int64_t h, int64_t d, int64_t r,
          bool inverse) {
  launch_flat(rope_kernel, b * t * h * (r / 2), x, cos, sin, b * t * h, t, h, d, r / 2, inverse ? -1.0f : 1.0f);
}

void swiglu_forward(bf16* h, const bf16* gu, int64_t n, int64_t f) { launch_flat(swiglu_forward_kernel, n * f, h, gu, n, f); }
void swiglu_backward(bf16* dgu, const bf16* dh, const bf16* gu, int64_t n, int64_t f) {
  launch_flat(swiglu_backward_kernel, n * f, dgu, dh, gu, n, f);
}

void embedding_forward(bf16* out, const bf16* table, const int32_t* ids, int64_t n, int64_t c) {
  launch_flat(embedding_forward_kernel, n * c, out, table, ids, n, c);
}
void embedding_backward(float* dtable, const bf16* dout, const int32_t* ids, int64_t n, int64_t c) {
  launch_flat(embedding_backward_kernel, n * c, dtable, dout, ids, n, c);
}

void cross_entropy(float* losses, bf16* logits, const int32_t* targets, int64_t n, int64_t v, float grad_scale) {
  if (n == 0) return;
  cross_entropy_kernel<<<unsigned(n), 512, 0, compute_stream()>>>(losses, logits, targets, v, grad_scale);
  CUDA_CHECK_LAUNCH();
}

void adamw_update(float* p, float* m, float* v, const float* g, bf16* value, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, float bc1, float bc2, float grad_scale) {
  launch_flat(adamw_kernel, n, p, m, v, g, value, n, lr, beta1, beta2, eps, weight_decay, bc1, bc2, grad_scale);
}

}  // namespace msa::cuda
