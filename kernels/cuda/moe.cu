#include <algorithm>
#include <climits>

#include "core/error.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/moe.h"

namespace msa::cuda {
namespace {

constexpr int kWarps = 8;        // tokens (router) or rows (row_dots) per block: one warp each
constexpr int kMaxExperts = 64 * 32;  // the router's top-k keeps one bit per expert a lane owns (64 bits)

// ---- Router forward: one warp per token; lane l owns experts l, l + 32, ...
__global__ void route_forward_kernel(float* scores, int32_t* idx, float* gates, float* lse, const float* logits,
                                     int64_t n, int e, int k, bool sigmoid, bool renorm) {
  const int lane = threadIdx.x & 31;
  const int64_t t = blockIdx.x * int64_t(kWarps) + (threadIdx.x >> 5);
  if (t >= n) return;
  const float* z = logits + t * e;
  float* s = scores + t * e;
  float zmax = -INFINITY;
  for (int i = lane; i < e; i += 32) zmax = fmaxf(zmax, z[i]);
  zmax = warp_max(zmax);
  float sum = 0.0f;
  for (int i = lane; i < e; i += 32) sum += expf(z[i] - zmax);
  sum = warp_sum(sum);
  if (lane == 0) lse[t] = zmax + logf(sum);
  for (int i = lane; i < e; i += 32) s[i] = sigmoid ? 1.0f / (1.0f + expf(-z[i])) : expf(z[i] - zmax) / sum;

  // Top-k by k rounds of a warp argmax over the experts not taken yet. Each lane scans its experts in increasing
  // id with a strict >, and the warp merge prefers the lower id on equal scores: ties go to the lower id.
  uint64_t taken = 0;  // bit q: expert lane + 32 q is chosen
  float chosen = 0.0f;
  for (int j = 0; j < k; ++j) {
    float best = -INFINITY;
    int bi = INT_MAX;
    for (int q = 0, i = lane; i < e; ++q, i += 32)
      if (!((taken >> q) & 1u) && (bi == INT_MAX || s[i] > best)) best = s[i], bi = i;
    for (int o = 16; o > 0; o >>= 1) {
      const float ob = __shfl_xor_sync(0xffffffffu, best, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (oi != INT_MAX && (bi == INT_MAX || ob > best || (ob == best && oi < bi))) best = ob, bi = oi;
    }
    if ((bi & 31) == lane) taken |= uint64_t(1) << (bi >> 5);
    if (lane == 0) idx[t * k + j] = bi, gates[t * k + j] = best;
    chosen += best;
  }
  if (renorm && lane == 0)
    for (int j = 0; j < k; ++j) gates[t * k + j] /= chosen;
}

// ---- Router backward: one warp per token. ds_i = aux_i + sum over the slots j choosing i of dr_j, with
// dr_j = (dg_j - sum_l dg_l g_l) / sum_l r_l under renorm, else dg_j; then through the score function, plus
// the z-loss term 2 z_coef lse softmax(z). ds is recomputed in each pass (k is small) instead of stored.
template <class T>
__global__ void route_backward_kernel(T* dlogits, const float* dgates, const float* scores, const int32_t* idx,
                                      const float* gates, const float* lse, const float* logits,
                                      const float* aux_grad, float z_coef, int64_t n, int e, int k, bool sigmoid,
                                      bool renorm) {
  const int lane = threadIdx.x & 31;
  const int64_t t = blockIdx.x * int64_t(kWarps) + (threadIdx.x >> 5);
  if (t >= n) return;
  const float* s = scores + t * e;
  const float* dg = dgates + t * k;
  const float* g = gates + t * k;
  const int32_t* ti = idx + t * k;
  float dot = 0.0f, r_sum = 0.0f;
  for (int j = 0; j < k; ++j) dot += dg[j] * g[j], r_sum += s[ti[j]];
  auto ds = [&](int i) {
    float v = aux_grad[i];
    for (int j = 0; j < k; ++j)
      if (ti[j] == i) v += renorm ? (dg[j] - dot) / r_sum : dg[j];
    return v;
  };
  float sds = 0.0f;
  if (!sigmoid) {
    for (int i = lane; i < e; i += 32) sds += s[i] * ds(i);
    sds = warp_sum(sds);
  }
  const float l = lse[t];
  const float* z = logits + t * e;
  T* dz = dlogits + t * e;
  for (int i = lane; i < e; i += 32) {
    float v = sigmoid ? ds(i) * s[i] * (1.0f - s[i]) : s[i] * (ds(i) - sds);
    if (z_coef != 0.0f) v += 2.0f * z_coef * l * expf(z[i] - l);
    dz[i] = from_f32<T>(v);
  }
}

// ---- Rows: 8 bf16 (16 bytes) per thread when the row length allows, else one.
struct Row8 {
  float v[8];
};
__device__ __forceinline__ Row8 load8(const bf16* p) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
  Row8 r;
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const float2 f = __bfloat1622float2(h[q]);
    r.v[2 * q] = f.x, r.v[2 * q + 1] = f.y;
  }
  return r;
}
__device__ __forceinline__ void store8(bf16* p, const Row8& r) {
  uint4 raw;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&raw);
#pragma unroll
  for (int q = 0; q < 4; ++q) h[q] = __floats2bfloat162_rn(r.v[2 * q], r.v[2 * q + 1]);
  *reinterpret_cast<uint4*>(p) = raw;
}

// One block per output row (grid-stride); VEC: columns in groups of 8.
template <bool VEC>
__global__ void gather_rows_kernel(bf16* dst, const bf16* src, const int32_t* rows, const float* scale, int64_t m,
                                   int64_t c) {
  for (int64_t i = blockIdx.x; i < m; i += gridDim.x) {
    const bf16* from = src + int64_t(rows[i]) * c;
    bf16* to = dst + i * c;
    const float w = scale ? scale[i] : 1.0f;
    if constexpr (VEC) {
      for (int64_t j = 8 * int64_t(threadIdx.x); j < c; j += 8 * int64_t(blockDim.x)) {
        Row8 r = load8(from + j);
#pragma unroll
        for (int q = 0; q < 8; ++q) r.v[q] *= w;
        store8(to + j, r);
      }
    } else {
      for (int64_t j = threadIdx.x; j < c; j += blockDim.x) to[j] = from_f32<bf16>(w * to_f32(from[j]));
    }
  }
}

// One block per destination row: its sources summed in list order in fp32 registers, then added once.
template <bool VEC>
__global__ void scatter_add_rows_kernel(bf16* dst, const bf16* src, const int32_t* dst_rows, const int32_t* start,
                                        const int32_t* src_rows, const float* scale, int64_t d, int64_t c) {
  for (int64_t r = blockIdx.x; r < d; r += gridDim.x) {
    bf16* to = dst + int64_t(dst_rows[r]) * c;
    const int32_t p0 = start[r], p1 = start[r + 1];
    if constexpr (VEC) {
      for (int64_t j = 8 * int64_t(threadIdx.x); j < c; j += 8 * int64_t(blockDim.x)) {
        Row8 acc{};
        for (int32_t p = p0; p < p1; ++p) {
          const Row8 x = load8(src + int64_t(src_rows[p]) * c + j);
          const float w = scale ? scale[p] : 1.0f;
#pragma unroll
          for (int q = 0; q < 8; ++q) acc.v[q] += w * x.v[q];
        }
        const Row8 old = load8(to + j);
#pragma unroll
        for (int q = 0; q < 8; ++q) acc.v[q] += old.v[q];
        store8(to + j, acc);
      }
    } else {
      for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
        float acc = 0.0f;
        for (int32_t p = p0; p < p1; ++p) acc += (scale ? scale[p] : 1.0f) * to_f32(src[int64_t(src_rows[p]) * c + j]);
        to[j] = from_f32<bf16>(to_f32(to[j]) + acc);
      }
    }
  }
}

// One warp per row.
template <bool VEC>
__global__ void row_dots_kernel(float* out, const bf16* a, const int32_t* rows, const bf16* b, int64_t m, int64_t c) {
  const int lane = threadIdx.x & 31;
  const int64_t i = blockIdx.x * int64_t(kWarps) + (threadIdx.x >> 5);
  if (i >= m) return;
  const bf16* x = a + int64_t(rows[i]) * c;
  const bf16* y = b + i * c;
  float acc = 0.0f;
  if constexpr (VEC) {
    for (int64_t j = 8 * int64_t(lane); j < c; j += 256) {
      const Row8 u = load8(x + j), v = load8(y + j);
#pragma unroll
      for (int q = 0; q < 8; ++q) acc += u.v[q] * v.v[q];
    }
  } else {
    for (int64_t j = lane; j < c; j += 32) acc += to_f32(x[j]) * to_f32(y[j]);
  }
  acc = warp_sum(acc);
  if (lane == 0) out[i] = acc;
}

// 16-byte vector access needs rows of a multiple of 8 elements and 16-byte aligned bases.
bool vec8(int64_t c, const void* p, const void* q) {
  return c % 8 == 0 && reinterpret_cast<uintptr_t>(p) % 16 == 0 && reinterpret_cast<uintptr_t>(q) % 16 == 0;
}
// Threads per row block: enough for one pass over the row's vector groups, a multiple of 32, at most 256.
int row_threads(int64_t c, bool vec) {
  const int64_t work = vec ? c / 8 : c;
  return int(std::min<int64_t>(256, std::max<int64_t>(32, (work + 31) / 32 * 32)));
}
unsigned row_blocks(int64_t rows) { return unsigned(std::max<int64_t>(1, std::min<int64_t>(rows, 65535))); }
unsigned warp_blocks(int64_t rows) { return unsigned((rows + kWarps - 1) / kWarps); }

}  // namespace

void moe_route_forward(float* scores, int32_t* idx, float* gates, float* lse, const float* logits, int64_t n,
                       int64_t e, int64_t k, bool sigmoid, bool renorm) {
  MSA_CHECK(e <= kMaxExperts && 1 <= k && k <= e, "moe_route_forward: " << e << " experts, top " << k
                                                                         << " (the GPU router takes up to "
                                                                         << kMaxExperts << " experts)");
  if (n == 0) return;
  route_forward_kernel<<<warp_blocks(n), 32 * kWarps, 0, compute_stream()>>>(scores, idx, gates, lse, logits, n,
                                                                             int(e), int(k), sigmoid, renorm);
  CUDA_CHECK_LAUNCH();
}

void moe_route_backward(void* dlogits, bool dlogits_f32, const float* dgates, const float* scores,
                        const int32_t* idx, const float* gates, const float* lse, const float* logits,
                        const float* aux_grad, float z_coef, int64_t n, int64_t e, int64_t k, bool sigmoid,
                        bool renorm) {
  if (n == 0) return;
  if (dlogits_f32)
    route_backward_kernel<float><<<warp_blocks(n), 32 * kWarps, 0, compute_stream()>>>(
        static_cast<float*>(dlogits), dgates, scores, idx, gates, lse, logits, aux_grad, z_coef, n, int(e), int(k),
        sigmoid, renorm);
  else
    route_backward_kernel<bf16><<<warp_blocks(n), 32 * kWarps, 0, compute_stream()>>>(
        static_cast<bf16*>(dlogits), dgates, scores, idx, gates, lse, logits, aux_grad, z_coef, n, int(e), int(k),
        sigmoid, renorm);
  CUDA_CHECK_LAUNCH();
}

void gather_rows(bf16* dst, const bf16* src, const int32_t* rows, const float* scale, int64_t m, int64_t c) {
  if (m == 0 || c == 0) return;
  const bool vec = vec8(c, dst, src);
  if (vec)
    gather_rows_kernel<true><<<row_blocks(m), row_threads(c, true), 0, compute_stream()>>>(dst, src, rows, scale, m, c);
  else
    gather_rows_kernel<false><<<row_blocks(m), row_threads(c, false), 0, compute_stream()>>>(dst, src, rows, scale, m,
                                                                                              c);
  CUDA_CHECK_LAUNCH();
}

void scatter_add_rows(bf16* dst, const bf16* src, const int32_t* dst_rows, const int32_t* start,
                      const int32_t* src_rows, const float* scale, int64_t d, int64_t c) {
  if (d == 0 || c == 0) return;
  if (vec8(c, dst, src))
    scatter_add_rows_kernel<true><<<row_blocks(d), row_threads(c, true), 0, compute_stream()>>>(
        dst, src, dst_rows, start, src_rows, scale, d, c);
  else
    scatter_add_rows_kernel<false><<<row_blocks(d), row_threads(c, false), 0, compute_stream()>>>(
        dst, src, dst_rows, start, src_rows, scale, d, c);
  CUDA_CHECK_LAUNCH();
}

void row_dots(float* out, const bf16* a, const int32_t* rows, const bf16* b, int64_t m, int64_t c) {
  if (m == 0) return;
  if (vec8(c, a, b))
    row_dots_kernel<true><<<warp_blocks(m), 32 * kWarps, 0, compute_stream()>>>(out, a, rows, b, m, c);
  else
    row_dots_kernel<false><<<warp_blocks(m), 32 * kWarps, 0, compute_stream()>>>(out, a, rows, b, m, c);
  CUDA_CHECK_LAUNCH();
}

}  // namespace msa::cuda
