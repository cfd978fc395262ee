#include <algorithm>

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

// Wide rows (C a multiple of 256, up to 256 * kMaxCols): one block of 256 threads per group of rows; thread t owns
// columns t, t + 256, ... and keeps their w and its share of dw in registers for all its rows. One block-wide sum
// per row (the k term); dw reaches global memory once per block and column, with no shared-memory atomics.
constexpr int kMaxCols = 8;

template <int COLS>
__global__ void rmsnorm_backward_wide_kernel(bf16* dx, float* dw, const bf16* dy, const bf16* x, const bf16* w,
                                             const float* rstd, int64_t n, int64_t rows_per_block) {
  __shared__ float scratch[32];
  constexpr int c = COLS * 256;
  float wr[COLS], dwr[COLS];
#pragma unroll
  for (int k = 0; k < COLS; ++k) wr[k] = to_f32(w[threadIdx.x + 256 * k]), dwr[k] = 0.0f;
  const int64_t first = blockIdx.x * rows_per_block, last = min(n, first + rows_per_block);
  for (int64_t row = first; row < last; ++row) {
    const bf16 *xr = x + row * c, *dyr = dy + row * c;
    const float r = rstd[row];
    float xv[COLS], g[COLS], dot = 0.0f;
#pragma unroll
    for (int k = 0; k < COLS; ++k) {
      xv[k] = to_f32(xr[threadIdx.x + 256 * k]);
      g[k] = to_f32(dyr[threadIdx.x + 256 * k]);
      dot += wr[k] * g[k] * xv[k];
    }
    const float kk = block_sum(dot, scratch) / float(c) * r * r * r;
    bf16* dxr = dx + row * c;
#pragma unroll
    for (int k = 0; k < COLS; ++k) {
      const int j = threadIdx.x + 256 * k;
      dxr[j] = from_f32<bf16>(to_f32(dxr[j]) + r * wr[k] * g[k] - xv[k] * kk);
      dwr[k] += g[k] * xv[k] * r;
    }
  }
#pragma unroll
  for (int k = 0; k < COLS; ++k) atomicAdd(&dw[threadIdx.x + 256 * k], dwr[k]);
}

template <int COLS>
void launch_rmsnorm_backward_wide(bf16* dx, float* dw, const bf16* dy, const bf16* x, const bf16* w, const float* rstd,
                                  int64_t n) {
  const int64_t blocks = std::min<int64_t>(n, int64_t(sm_count()) * 8);
  const int64_t rows_per_block = (n + blocks - 1) / blocks;
  rmsnorm_backward_wide_kernel<COLS><<<unsigned((n + rows_per_block - 1) / rows_per_block), 256, 0,
                                       compute_stream()>>>(dx, dw, dy, x, w, rstd, n, rows_per_block);
  CUDA_CHECK_LAUNCH();
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

// One thread per output element: it reads its element and its RoPE partner (2 loads, 1 store). Block row
// blockIdx.x is the matrix row, so no 64-bit division per element (which cost 3x in time on the H100).
__global__ void rope_copy_columns_kernel(bf16* dst, int64_t dst_cols, int64_t dst_col, const bf16* src,
                                         int64_t src_cols, int64_t src_col, int width, int d, const float* cos,
                                         const float* sin, int64_t t, int half, float sign) {
  const int64_t n = blockIdx.x;
  const int j = blockIdx.y * blockDim.x + threadIdx.x;
  if (j >= width) return;
  const int i = j % d;
  const bf16* x = src + n * src_cols + src_col + (j - i);
  const float* c = cos + (n % t) * half;
  const float* s = sin + (n % t) * half;
  float out;
  if (i < half) out = to_f32(x[i]) * c[i] - to_f32(x[i + half]) * sign * s[i];
  else if (i < 2 * half) out = to_f32(x[i - half]) * sign * s[i - half] + to_f32(x[i]) * c[i - half];
  else out = to_f32(x[i]);
  dst[n * dst_cols + dst_col + j] = from_f32<bf16>(out);
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

// Two columns per thread (bf16x2 loads and stores) when F is even: the kernels are bound by memory traffic.
// Grid (rows, column chunks): no 64-bit division per element.
__global__ void swiglu_forward_x2_kernel(__nv_bfloat162* h, const __nv_bfloat162* gu, int64_t f2) {
  const int64_t r = blockIdx.x, j = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  if (j >= f2) return;
  const float2 g = __bfloat1622float2(gu[r * 2 * f2 + j]), u = __bfloat1622float2(gu[r * 2 * f2 + f2 + j]);
  h[r * f2 + j] = __floats2bfloat162_rn(g.x * sigmoidf(g.x) * u.x, g.y * sigmoidf(g.y) * u.y);
}

__global__ void swiglu_backward_x2_kernel(__nv_bfloat162* dgu, const __nv_bfloat162* dh, const __nv_bfloat162* gu,
                                          int64_t f2) {
  const int64_t r = blockIdx.x, j = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  if (j >= f2) return;
  const float2 g = __bfloat1622float2(gu[r * 2 * f2 + j]), u = __bfloat1622float2(gu[r * 2 * f2 + f2 + j]);
  const float2 d = __bfloat1622float2(dh[r * f2 + j]);
  const float sx = sigmoidf(g.x), sy = sigmoidf(g.y);
  dgu[r * 2 * f2 + j] = __floats2bfloat162_rn(d.x * u.x * sx * (1.0f + g.x * (1.0f - sx)),
                                              d.y * u.y * sy * (1.0f + g.y * (1.0f - sy)));
  dgu[r * 2 * f2 + f2 + j] = __floats2bfloat162_rn(d.x * g.x * sx, d.y * g.y * sy);
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
__global__ void cross_entropy_kernel(float* losses, bf16* logits, const int32_t* targets, int64_t v, int64_t stride,
                                     float grad_scale) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  bf16* z = logits + row * stride;
  const int32_t tgt = targets[row];
  if (grad_scale != 0.0f)
    for (int64_t j = v + threadIdx.x; j < stride; j += blockDim.x) z[j] = from_f32<bf16>(0.0f);
  if (tgt < 0) {
    if (threadIdx.x == 0) losses[row] = 0.0f;
    if (grad_scale != 0.0f)
      for (int64_t j = threadIdx.x; j < stride; j += blockDim.x) z[j] = from_f32<bf16>(0.0f);
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

// The same with 16-byte loads and stores (8 bf16 per access) when rows are 16-byte aligned (stride % 8 == 0, as
// the model's padded vocabulary guarantees): the kernel is bound by reading the logits twice and writing them once.
__global__ void cross_entropy_vec8_kernel(float* losses, bf16* logits, const int32_t* targets, int64_t v,
                                          int64_t stride, float grad_scale) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x, chunks = stride / 8;
  bf16* z = logits + row * stride;
  uint4* zv = reinterpret_cast<uint4*>(z);
  const int32_t tgt = targets[row];
  if (tgt < 0) {
    if (threadIdx.x == 0) losses[row] = 0.0f;
    if (grad_scale != 0.0f)
      for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) zv[c] = make_uint4(0, 0, 0, 0);
    return;
  }
  float m = -INFINITY, s = 0.0f;
  for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
    const uint4 raw = zv[c];
    const bf16* e = reinterpret_cast<const bf16*>(&raw);
    float x[8], cm = -INFINITY;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      x[k] = c * 8 + k < v ? to_f32(e[k]) : -INFINITY;  // padding columns are not in the softmax
      cm = fmaxf(cm, x[k]);
    }
    if (cm == -INFINITY) continue;
    const float nm = fmaxf(m, cm);
    s *= __expf(m - nm);  // m = -inf the first time: exp(-inf) = 0 and s is 0 anyway
#pragma unroll
    for (int k = 0; k < 8; ++k) s += __expf(x[k] - nm);
    m = nm;
  }
  const float row_max = block_max(m, scratch);
  const float row_sum = block_sum(m == -INFINITY ? 0.0f : s * __expf(m - row_max), scratch);
  const float lse = row_max + logf(row_sum);
  const float z_tgt = to_f32(z[tgt]);
  __syncthreads();  // everyone has read z[tgt] before it is overwritten
  if (threadIdx.x == 0) losses[row] = lse - z_tgt;
  if (grad_scale == 0.0f) return;
  for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
    uint4 raw = zv[c];
    bf16* e = reinterpret_cast<bf16*>(&raw);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const int64_t j = c * 8 + k;
      const float p = j < v ? __expf(to_f32(e[k]) - lse) : 0.0f;
      e[k] = from_f32<bf16>((p - (j == tgt ? 1.0f : 0.0f)) * grad_scale);
    }
    zv[c] = raw;
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
  switch (c) {  // the model's widths (d_model) take the register kernel; head-dim norms the warp-per-row one
    case 256: return launch_rmsnorm_backward_wide<1>(dx, dw, dy, x, w, rstd, n);
    case 512: return launch_rmsnorm_backward_wide<2>(dx, dw, dy, x, w, rstd, n);
    case 768: return launch_rmsnorm_backward_wide<3>(dx, dw, dy, x, w, rstd, n);
    case 1024: return launch_rmsnorm_backward_wide<4>(dx, dw, dy, x, w, rstd, n);
    case 1536: return launch_rmsnorm_backward_wide<6>(dx, dw, dy, x, w, rstd, n);
    case 2048: return launch_rmsnorm_backward_wide<kMaxCols>(dx, dw, dy, x, w, rstd, n);
    default: break;
  }
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

void rope_copy_columns(bf16* dst, int64_t dst_cols, int64_t dst_col, const bf16* src, int64_t src_cols,
                       int64_t src_col, int64_t rows, int64_t width, int64_t d, const float* cos, const float* sin,
                       int64_t t, int64_t r, bool inverse) {
  if (rows == 0 || width == 0) return;
  const dim3 grid(unsigned(rows), unsigned((width + 255) / 256));
  rope_copy_columns_kernel<<<grid, 256, 0, compute_stream()>>>(dst, dst_cols, dst_col, src, src_cols, src_col,
                                                               int(width), int(d), cos, sin, t, int(r / 2),
                                                               inverse ? -1.0f : 1.0f);
  CUDA_CHECK_LAUNCH();
}

void swiglu_forward(bf16* h, const bf16* gu, int64_t n, int64_t f) {
  if (f % 2 == 0) {
    if (n == 0) return;
    const dim3 grid(unsigned(n), unsigned((f / 2 + 255) / 256));
    swiglu_forward_x2_kernel<<<grid, 256, 0, compute_stream()>>>(reinterpret_cast<__nv_bfloat162*>(h),
                                                                 reinterpret_cast<const __nv_bfloat162*>(gu), f / 2);
    CUDA_CHECK_LAUNCH();
  } else
    launch_flat(swiglu_forward_kernel, n * f, h, gu, n, f);
}
void swiglu_backward(bf16* dgu, const bf16* dh, const bf16* gu, int64_t n, int64_t f) {
  if (f % 2 == 0) {
    if (n == 0) return;
    const dim3 grid(unsigned(n), unsigned((f / 2 + 255) / 256));
    swiglu_backward_x2_kernel<<<grid, 256, 0, compute_stream()>>>(
        reinterpret_cast<__nv_bfloat162*>(dgu), reinterpret_cast<const __nv_bfloat162*>(dh),
        reinterpret_cast<const __nv_bfloat162*>(gu), f / 2);
    CUDA_CHECK_LAUNCH();
  } else
    launch_flat(swiglu_backward_kernel, n * f, dgu, dh, gu, n, f);
}

void embedding_forward(bf16* out, const bf16* table, const int32_t* ids, int64_t n, int64_t c) {
  launch_flat(embedding_forward_kernel, n * c, out, table, ids, n, c);
}
void embedding_backward(float* dtable, const bf16* dout, const int32_t* ids, int64_t n, int64_t c) {
  launch_flat(embedding_backward_kernel, n * c, dtable, dout, ids, n, c);
}

void cross_entropy(float* losses, bf16* logits, const int32_t* targets, int64_t n, int64_t v, int64_t stride,
                   float grad_scale) {
  if (n == 0) return;
  if (stride % 8 == 0 && reinterpret_cast<uintptr_t>(logits) % 16 == 0)
    cross_entropy_vec8_kernel<<<unsigned(n), 512, 0, compute_stream()>>>(losses, logits, targets, v, stride, grad_scale);
  else
    cross_entropy_kernel<<<unsigned(n), 512, 0, compute_stream()>>>(losses, logits, targets, v, stride, grad_scale);
  CUDA_CHECK_LAUNCH();
}

void adamw_update(float* p, float* m, float* v, const float* g, bf16* value, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, float bc1, float bc2, float grad_scale) {
  launch_flat(adamw_kernel, n, p, m, v, g, value, n, lr, beta1, beta2, eps, weight_decay, bc1, bc2, grad_scale);
}

}  // namespace msa::cuda
