// Fused causal GQA attention, forward and backward (FlashAttention-2 scheme, our own code). See attention.h for the
// contract and docs/attention_kernels.md for the design, the measurements and what is left.
//
// Building blocks (sm_80+ warp-level tensor cores, fine on sm_90a):
//   mma.sync m16n8k16 bf16 -> fp32, operands fetched from shared memory with ldmatrix (.trans for row-major B),
//   tiles staged global -> shared with cp.async (16 B per copy, zero-filled past the end), two stages.
// Fragment layouts of m16n8k16 (lane = 4 g + t):
//   A (16x16): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B (16x8):  b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g)
//   C (16x8):  c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
// so the C fragments of two neighbouring 8-column blocks of S are exactly the A fragment of a 16-wide k chunk of P.
//
// Masking is by position arrays (key j visible to query i iff kpos[j] <= qpos[i]). Whole tiles invisible to a warp
// are skipped, tiles fully visible run without the elementwise mask, only straddling tiles pay for it. Nothing
// assumes the positions are sorted; sorted (causal) positions make the visible tiles one contiguous range.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_check.h"

namespace msa::cuda {
namespace {

using bf16 = __nv_bfloat16;

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// ---------------------------------------------------------------------------------------------------------------
// PTX wrappers
// ---------------------------------------------------------------------------------------------------------------

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy; bytes past `valid` are zero-filled (src is then not read).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
// 4-byte variant for position / statistics rows (.ca: sizes below 16 must go through L1).
__device__ __forceinline__ void cp_async4(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void cp_async8(uint32_t dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// c += a b   (16x16 bf16) x (16x8 bf16) -> 16x8 fp32
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats -> one bf16x2 register, `lo` in the low half (the lower column index).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// 2^x with the hardware approximation (exp2(-inf) = 0, which the masking relies on).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ int warp_min(int v) {
  for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ int warp_max(int v) {
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Copies rows [0, rows_valid) of a (ROWS, D) tile whose rows are `ld` elements apart into shared memory with a
// padded row of LDS elements (the 16-byte pad puts the 8 rows one ldmatrix reads on different banks). Rows past
// rows_valid are zero-filled: a zero key scores 0 and a zero value adds nothing, so tails need no special case in
// the matrix products (the mask removes them from the softmax).
template <int ROWS, int D, int LDS, int NTHREADS>
__device__ __forceinline__ void load_tile(bf16* smem, const bf16* gmem, int64_t ld, int rows_valid,
                                          const bf16* safe) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  for (int c = threadIdx.x; c < ROWS * kChunks; c += NTHREADS) {
    const int r = c / kChunks, col = (c % kChunks) * 8;
    const bool valid = r < rows_valid;
    cp_async16(smem_addr(smem + r * LDS + col), valid ? gmem + r * ld + col : safe, valid);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------------------------

struct FwdParams {
  bf16* o;
  float* lse;
  const bf16 *q, *k, *v;
  const int32_t *qpos, *kpos;
  int batch, tq, tk, hq, hkv;
  float scale_log2;  // scale * log2(e): scores go straight to the exp2 domain
};

template <int D, int BN_ = 64>
struct FwdCfg {
  static constexpr int BM = 128;            // query rows per CTA
  static constexpr int BN = BN_;            // keys per tile
  static constexpr int MT = 2;              // 16-row m-tiles per warp: each K / V fragment feeds MT MMAs
  static constexpr int WARPS = BM / (16 * MT);
  static constexpr int THREADS = WARPS * 32;
  static constexpr int LDS = D + 8;         // padded shared row (elements)
  static constexpr int SMEM = (BM + 4 * BN) * LDS * 2 + 2 * BN * 4;  // Q, 2 x K, 2 x V, 2 x kpos
};

// One CTA per (query tile, query head, batch); warp w owns query rows w*16*MT .. (w+1)*16*MT - 1 of the tile.
template <int D, int BN_>
__global__ void __launch_bounds__(FwdCfg<D, BN_>::THREADS, 2) attention_fwd_kernel(const FwdParams p) {
  using C = FwdCfg<D, BN_>;
  constexpr int BM = C::BM, BN = C::BN, LDS = C::LDS, NT = C::THREADS, MT = C::MT;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);                 // (BM, LDS)
  bf16* sK = sQ + BM * LDS;                                 // 2 stages x (BN, LDS)
  bf16* sV = sK + 2 * BN * LDS;                             // 2 stages x (BN, LDS)
  int32_t* sKpos = reinterpret_cast<int32_t*>(sV + 2 * BN * LDS);  // 2 stages x (BN)
  __shared__ int s_red[2][C::WARPS];

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  // Grid (Hq, B, query tiles), the tile index slowest and reversed: the last query tiles, which do the most work
  // under causal masking, start first on every head (longest job first), and neighbouring CTAs share K/V in L2.
  const int qt = gridDim.z - 1 - blockIdx.z;
  const int h = blockIdx.x, b = blockIdx.y;
  const int kvh = h / (p.hq / p.hkv);         // GQA: query head h reads KV head h / group
  const int q0 = qt * BM;
  const int wrow = warp * 16 * MT;            // the warp's first row within the tile
  const int64_t ldq = int64_t(p.hq) * D, ldk = int64_t(p.hkv) * D;  // row strides of (B, T, H, d)
  const bf16* Q = p.q + (int64_t(b) * p.tq + q0) * ldq + int64_t(h) * D;
  const bf16* K = p.k + int64_t(b) * p.tk * ldk + int64_t(kvh) * D;
  const bf16* V = p.v + int64_t(b) * p.tk * ldk + int64_t(kvh) * D;

  // This thread's rows: g and g+8 of each of the warp's m-tiles, their positions and validity.
  int qp[MT][2];
  bool qv[MT][2];
  int lo = INT_MAX, hi = INT_MIN;
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = q0 + wrow + m * 16 + r * 8 + g;
      qv[m][r] = row < p.tq;
      qp[m][r] = qv[m][r] ? p.qpos[row] : INT_MIN;
      if (qv[m][r]) lo = min(lo, qp[m][r]);
      hi = max(hi, qp[m][r]);
    }
  // Warp bounds over its valid rows decide per key tile: skip, unmasked, or masked.
  const int wq_min = warp_min(lo), wq_max = warp_max(hi);
  if (lane == 0) s_red[0][warp] = wq_max;
  __syncthreads();
  int cta_qmax = INT_MIN;
  for (int w = 0; w < C::WARPS; ++w) cta_qmax = max(cta_qmax, s_red[0][w]);

  // The key tiles to visit: from the first to the last key any query of the tile sees. One pass over kpos
  // (L2-resident, a few microseconds at 128K keys) instead of a scratch buffer of per-tile bounds.
  int jmin = INT_MAX, jmax = -1;
  constexpr int kUnroll = 8;  // 8 independent loads in flight per thread: the scan is latency-bound otherwise
  for (int base = threadIdx.x; base < p.tk; base += NT * kUnroll) {
    int kv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) kv[u] = base + u * NT < p.tk ? __ldg(p.kpos + base + u * NT) : INT_MAX;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (base + u * NT < p.tk && kv[u] <= cta_qmax) {
        jmin = min(jmin, base + u * NT);
        jmax = base + u * NT;  // the index grows along both loops
      }
  }
  jmin = warp_min(jmin);
  jmax = warp_max(jmax);
  __syncthreads();  // everyone has read s_red[0]
  if (lane == 0) {
    s_red[0][warp] = jmin;
    s_red[1][warp] = jmax;
  }
  __syncthreads();
  for (int w = 0; w < C::WARPS; ++w) {
    jmin = min(jmin, s_red[0][w]);
    jmax = max(jmax, s_red[1][w]);
  }
  const int n_first = jmax < 0 ? 0 : jmin / BN, n_last = jmax < 0 ? -1 : jmax / BN;

  auto load_kv = [&](int n, int stage) {
    const int k0 = n * BN;
    load_tile<BN, D, LDS, NT>(sK + stage * BN * LDS, K + int64_t(k0) * ldk, ldk, p.tk - k0, p.k);
    load_tile<BN, D, LDS, NT>(sV + stage * BN * LDS, V + int64_t(k0) * ldk, ldk, p.tk - k0, p.v);
    if (threadIdx.x < BN) {
      const bool valid = k0 + threadIdx.x < p.tk;
      cp_async4(smem_addr(sKpos + stage * BN + threadIdx.x), valid ? p.kpos + k0 + threadIdx.x : p.kpos, valid);
    }
  };

  float acc_o[MT][D / 8][4];  // O (rows g, g+8 of each m-tile) x D columns, fp32
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int i = 0; i < D / 8; ++i) acc_o[m][i][0] = acc_o[m][i][1] = acc_o[m][i][2] = acc_o[m][i][3] = 0.f;
  float mrow[MT][2], lrow[MT][2];  // running row max (log2 domain) and row sum (this thread's columns)
#pragma unroll
  for (int m = 0; m < MT; ++m) mrow[m][0] = mrow[m][1] = -INFINITY, lrow[m][0] = lrow[m][1] = 0.f;

  if (n_first <= n_last) {
    load_tile<BM, D, LDS, NT>(sQ, Q, ldq, p.tq - q0, p.q);
    load_kv(n_first, 0);
  }
  cp_async_commit();

  for (int n = n_first, stage = 0; n <= n_last; ++n, stage ^= 1) {
    cp_async_wait_all();
    __syncthreads();  // tile n landed for everyone, and everyone is done with the other stage
    if (n < n_last) load_kv(n + 1, stage ^ 1);  // overlaps with this tile's math
    cp_async_commit();

    const int k0 = n * BN;
    const bf16* sKs = sK + stage * BN * LDS;
    const bf16* sVs = sV + stage * BN * LDS;
    const int32_t* kp = sKpos + stage * BN;
    // Tile bounds over its valid keys (zero-filled positions past Tk are excluded by index).
    const bool kv0 = lane < BN && k0 + lane < p.tk, kv1 = lane + 32 < BN && k0 + lane + 32 < p.tk;
    const int kmin = warp_min(min(kv0 ? kp[lane] : INT_MAX, kv1 ? kp[lane + 32] : INT_MAX));
    const int kmax = warp_max(max(kv0 ? kp[lane] : INT_MIN, kv1 ? kp[lane + 32] : INT_MIN));
    if (kmin > wq_max) continue;  // no row of this warp sees any key of the tile (warp-uniform)
    const bool need_mask = !(k0 + BN <= p.tk && kmax <= wq_min);

    // S = Q K^T  (16 MT x BN per warp)
    float s[MT][BN / 8][4];
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int i = 0; i < BN / 8; ++i) s[m][i][0] = s[m][i][1] = s[m][i][2] = s[m][i][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t qa[MT][4];  // Q rows of each m-tile as A fragments
#pragma unroll
      for (int m = 0; m < MT; ++m)
        ldsm_x4(qa[m], smem_addr(sQ + (wrow + m * 16 + (lane & 15)) * LDS + kk * 16 + (lane >> 4) * 8));
#pragma unroll
      for (int nb = 0; nb < BN / 16; ++nb) {
        uint32_t r[4];  // K rows nb*16.. as B fragments of two 8-key blocks
        ldsm_x4(r, smem_addr(sKs + (nb * 16 + (lane & 7) + ((lane >> 4) << 3)) * LDS + kk * 16 +
                             ((lane >> 3) & 1) * 8));
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          mma(s[m][2 * nb], qa[m], r[0], r[1]);
          mma(s[m][2 * nb + 1], qa[m], r[2], r[3]);
        }
      }
    }

    if (need_mask) {
#pragma unroll
      for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int i = 0; i < BN / 8; ++i)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int col = i * 8 + 2 * t + (e & 1);
            const bool vis = k0 + col < p.tk && kp[col] <= qp[m][e / 2] && qv[m][e / 2];
            if (!vis) s[m][i][e] = -INFINITY;
          }
    }

    // Online softmax (log2 domain). A row that has seen nothing yet keeps m = -inf; it exponentiates against 0
    // so that -inf - -inf never appears.
    float corr[MT][2];
    bool grew = false;  // did any running max of the warp change (else O needs no rescale: corr is exactly 1)
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx[BN / 8];  // tree reductions: short dependency chains
#pragma unroll
        for (int i = 0; i < BN / 8; ++i) mx[i] = fmaxf(s[m][i][2 * r], s[m][i][2 * r + 1]);
#pragma unroll
        for (int w = BN / 16; w > 0; w /= 2)
#pragma unroll
          for (int i = 0; i < w; ++i) mx[i] = fmaxf(mx[i], mx[i + w]);
        float mxr = fmaxf(mx[0], __shfl_xor_sync(0xffffffffu, mx[0], 1));  // the 4 lanes of a quad share a row
        mxr = fmaxf(mxr, __shfl_xor_sync(0xffffffffu, mxr, 2));
        const float mnew = fmaxf(mrow[m][r], mxr * p.scale_log2);
        const float muse = mnew == -INFINITY ? 0.f : mnew;
        corr[m][r] = fast_exp2(mrow[m][r] - muse);  // rescale of the old sum and output
        grew |= mnew != mrow[m][r];
        mrow[m][r] = mnew;
        float rs[BN / 8];
#pragma unroll
        for (int i = 0; i < BN / 8; ++i) {
          s[m][i][2 * r] = fast_exp2(fmaf(s[m][i][2 * r], p.scale_log2, -muse));
          s[m][i][2 * r + 1] = fast_exp2(fmaf(s[m][i][2 * r + 1], p.scale_log2, -muse));
          rs[i] = s[m][i][2 * r] + s[m][i][2 * r + 1];
        }
#pragma unroll
        for (int w = BN / 16; w > 0; w /= 2)
#pragma unroll
          for (int i = 0; i < w; ++i) rs[i] += rs[i + w];
        lrow[m][r] = lrow[m][r] * corr[m][r] + rs[0];
      }
    // After the first tiles the running max rarely moves: skip the D/4 multiplies per row when no row's did.
    if (__any_sync(0xffffffffu, grew)) {
#pragma unroll
      for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int i = 0; i < D / 8; ++i) {
          acc_o[m][i][0] *= corr[m][0];
          acc_o[m][i][1] *= corr[m][0];
          acc_o[m][i][2] *= corr[m][1];
          acc_o[m][i][3] *= corr[m][1];
        }
    }

    // O += P V: P straight from the S accumulators (C layout of two 8-key blocks = A layout of one 16-key chunk).
#pragma unroll
    for (int kc = 0; kc < BN / 16; ++kc) {
      uint32_t pa[MT][4];
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        pa[m][0] = pack_bf16(s[m][2 * kc][0], s[m][2 * kc][1]);
        pa[m][1] = pack_bf16(s[m][2 * kc][2], s[m][2 * kc][3]);
        pa[m][2] = pack_bf16(s[m][2 * kc + 1][0], s[m][2 * kc + 1][1]);
        pa[m][3] = pack_bf16(s[m][2 * kc + 1][2], s[m][2 * kc + 1][3]);
      }
#pragma unroll
      for (int db = 0; db < D / 16; ++db) {
        uint32_t r[4];  // V (keys x d) is row-major B: transpose on load
        ldsm_x4_t(r, smem_addr(sVs + (kc * 16 + (lane & 15)) * LDS + db * 16 + (lane >> 4) * 8));
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          mma(acc_o[m][2 * db], pa[m], r[0], r[1]);
          mma(acc_o[m][2 * db + 1], pa[m], r[2], r[3]);
        }
      }
    }
  }
  cp_async_wait_all();  // nothing in flight may land in sQ while it is reused below
  __syncwarp();         // the warp's last ldmatrix of its Q rows precede the staging stores below

  // Epilogue: O / l, lse = ln(sum exp(scaled scores)) = m ln2 + ln l; a row that saw nothing gives 0 and -inf.
  float* lse = p.lse + (int64_t(b) * p.hq + h) * p.tq;  // (B, Hq, Tq)
  bf16* sO = sQ + wrow * LDS;  // the warp's own rows of sQ (only this warp read them): staging for 16 B stores
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float l = lrow[m][r];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = l > 0.f ? 1.f / l : 0.f;
      const int row = q0 + wrow + m * 16 + r * 8 + g;
      if (t == 0 && qv[m][r]) lse[row] = l > 0.f ? mrow[m][r] * kLn2 + logf(l) : -INFINITY;
#pragma unroll
      for (int i = 0; i < D / 8; ++i)
        *reinterpret_cast<uint32_t*>(sO + (m * 16 + r * 8 + g) * LDS + i * 8 + 2 * t) =
            pack_bf16(acc_o[m][i][2 * r] * inv, acc_o[m][i][2 * r + 1] * inv);
    }
  __syncwarp();
  bf16* O = p.o + (int64_t(b) * p.tq + q0 + wrow) * ldq + int64_t(h) * D;
  for (int c = lane; c < 16 * MT * (D / 8); c += 32) {
    const int r = c / (D / 8), col = (c % (D / 8)) * 8;
    if (q0 + wrow + r < p.tq)
      *reinterpret_cast<uint4*>(O + int64_t(r) * ldq + col) = *reinterpret_cast<const uint4*>(sO + r * LDS + col);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Backward
// ---------------------------------------------------------------------------------------------------------------

constexpr int kBwdBM = 64;  // query rows per step

// Workspace layout: dq accumulator fp32 (B, Tq, Hq, d) | delta fp32 (B, Hq, Tq) | lse log2(e) fp32 (B, Hq, Tq) |
// query-tile bounds int2 (NQT).
struct BwdWorkspace {
  size_t dq_off, delta_off, lse2_off, qb_off, part_off, total;
  bool split;
};
inline size_t align256(size_t x) { return (x + 255) / 256 * 256; }

// Warps per backward CTA: 8 (128 keys) by default; MSA_ATTN_BWD_WARPS=4 (64 keys, two CTAs per SM) to compare.
int bwd_warps() {
  static const int warps = [] {
    const char* e = std::getenv("MSA_ATTN_BWD_WARPS");
    return e && std::atoi(e) == 4 ? 4 : 8;
  }();
  return warps;
}

// Split the query heads of a GQA group over CTAs when the unsplit grid (KV heads x batch x key tiles) has fewer
// CTAs than SMs: each CTA would otherwise walk all heads of the group in sequence while SMs idle (B = 1, 4K
// tokens: 128 CTAs; fwd+bwd 2.16 -> 1.31 ms). At 256 CTAs (B = 4, 4K) splitting measured 3% slower (the partials
// cost more than the better balance gains). MSA_ATTN_BWD_SPLIT=0 / 1 forces it (tests exercise both paths).
bool bwd_split(const AttentionDims& d) {
  if (d.hq == d.hkv) return false;
  if (const char* e = std::getenv("MSA_ATTN_BWD_SPLIT")) return std::atoi(e) != 0;
  int dev = 0, sms = 132;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const int64_t bn = 16 * bwd_warps();
  return d.hkv * d.batch * ((d.tk + bn - 1) / bn) < int64_t(sms);
}
BwdWorkspace bwd_workspace(const AttentionDims& d) {
  BwdWorkspace w;
  const size_t nqt = (d.tq + kBwdBM - 1) / kBwdBM;
  w.dq_off = 0;
  w.delta_off = align256(size_t(d.batch * d.tq * d.hq * d.d) * sizeof(float));
  w.lse2_off = w.delta_off + align256(size_t(d.batch * d.hq * d.tq) * sizeof(float));
  w.qb_off = w.lse2_off + align256(size_t(d.batch * d.hq * d.tq) * sizeof(float));
  w.part_off = w.qb_off + align256(nqt * sizeof(int2));
  w.split = bwd_split(d);
  // split: fp32 partial dK and dV per query head (B, Tk, Hq, d) each
  w.total = w.part_off + (w.split ? 2 * align256(size_t(d.batch * d.tk * d.hq * d.d) * sizeof(float)) : 0);
  return w;
}

// delta[b, h, i] = sum_d dO[b, i, h, :] . O[b, i, h, :]  (one warp per row); lse2 = lse log2(e) (the exp2 domain)
__global__ void attention_bwd_delta_kernel(float* delta, float* lse2, const float* lse, const bf16* dout,
                                           const bf16* o, int64_t rows, int tq, int hq, int d) {
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;  // row = (b, i, h) of (B, Tq, Hq)
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const __nv_bfloat162* a = reinterpret_cast<const __nv_bfloat162*>(dout + row * d);
  const __nv_bfloat162* c = reinterpret_cast<const __nv_bfloat162*>(o + row * d);
  float sum = 0.f;
  for (int j = lane; j < d / 2; j += 32) {
    const float2 x = __bfloat1622float2(a[j]), y = __bfloat1622float2(c[j]);
    sum += x.x * y.x + x.y * y.y;
  }
  for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  if (lane == 0) {
    const int64_t h = row % hq, i = (row / hq) % tq, b = row / (int64_t(hq) * tq);
    delta[(b * hq + h) * tq + i] = sum;
    lse2[(b * hq + h) * tq + i] = lse[(b * hq + h) * tq + i] * kLog2e;
  }
}

// (min, max) of qpos over the valid rows of each backward query tile.
__global__ void attention_bwd_qbounds_kernel(int2* qb, const int32_t* qpos, int tq) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i * kBwdBM >= tq) return;
  int lo = INT_MAX, hi = INT_MIN;
  for (int r = i * kBwdBM; r < min(tq, (i + 1) * kBwdBM); ++r) {
    lo = min(lo, qpos[r]);
    hi = max(hi, qpos[r]);
  }
  qb[i] = make_int2(lo, hi);
}

__global__ void attention_bwd_dq_convert_kernel(bf16* dq, const float* acc, int64_t n4) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // one float4 each (d is a multiple of 4)
  if (i >= n4) return;
  const float4 v = reinterpret_cast<const float4*>(acc)[i];
  uint2 out = make_uint2(pack_bf16(v.x, v.y), pack_bf16(v.z, v.w));
  reinterpret_cast<uint2*>(dq)[i] = out;
}

// Split backward: dk (B, Tk, Hkv, d) = sum over the group's query heads of the fp32 partials (B, Tk, Hq, d).
__global__ void attention_bwd_reduce_kernel(bf16* dk, bf16* dv, const float* dk_part, const float* dv_part,
                                            int64_t n4, int hkv, int group, int d) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // one float4 of the output each
  if (i >= n4) return;
  const int64_t d4 = i % (d / 4), rest = i / (d / 4);  // rest = (b, key) * hkv + kv head
  const int64_t kvh = rest % hkv, bt = rest / hkv;
  const int64_t src = (bt * hkv * group + kvh * group) * d + d4 * 4;  // first query head of the group
  float4 a = make_float4(0.f, 0.f, 0.f, 0.f), c = a;
  for (int hh = 0; hh < group; ++hh) {
    const float4 x = *reinterpret_cast<const float4*>(dk_part + src + int64_t(hh) * d);
    const float4 y = *reinterpret_cast<const float4*>(dv_part + src + int64_t(hh) * d);
    a.x += x.x, a.y += x.y, a.z += x.z, a.w += x.w;
    c.x += y.x, c.y += y.y, c.z += y.z, c.w += y.w;
  }
  reinterpret_cast<uint2*>(dk)[i] = make_uint2(pack_bf16(a.x, a.y), pack_bf16(a.z, a.w));
  reinterpret_cast<uint2*>(dv)[i] = make_uint2(pack_bf16(c.x, c.y), pack_bf16(c.z, c.w));
}

struct BwdParams {
  bf16 *dk, *dv;
  float* dq_acc;
  const float *lse2, *delta;  // (B, Hq, Tq): lse log2(e), rowsum(dO O)
  const int2* qbounds;
  const bf16 *q, *k, *v, *dout;
  const int32_t *qpos, *kpos;
  int batch, tq, tk, hq, hkv;
  float scale, scale_log2;
  float *dk_part, *dv_part;   // split: fp32 partial dK, dV per query head (B, Tk, Hq, d); else null
};

// dQ warp tiling (MSA_ATTN_BWD_DQ16=1 selects the old one for d = 128 with 8 warps, a benchmark / test switch):
// RETILE: 32 queries per warp (2 x WARPS/2 warps over (BM, D), where D / (WARPS/2) >= 16): each dS fragment feeds
// twice the MMAs, one pass over the keys; else 16 queries per warp (4 x WARPS/4) in passes of 32 d columns.
template <int D, int NWARPS, bool RETILE_ = true>
struct BwdCfg {
  static constexpr int BM = kBwdBM, WARPS = NWARPS, THREADS = 32 * WARPS;
  static constexpr int BN = 16 * WARPS;  // keys per CTA: 16 per warp
  static constexpr bool RETILE = RETILE_ && D / (WARPS / 2) >= 16;
  // dQ = dS K: warps tile (BM, D) as QWARPS (queries, 16 * MQ rows each) x WQD (d); DC columns of d per pass keep
  // the accumulator small.
  static constexpr int MQ = RETILE ? 2 : 1, QWARPS = 4 / MQ;
  static constexpr int WQD = WARPS / QWARPS, DW = D / WQD, DC = DW < 32 ? DW : 32;
  static constexpr int LDS = D + 8;    // padded (rows, d) tiles
  static constexpr int LDS_S = BM + 8; // padded dS^T (keys, queries)
  // K, V, 2 x Q, 2 x dO, dS^T, 2 x (lse, delta, qpos), 2 x qbounds
  static constexpr int SMEM = (2 * BN + 4 * BM) * LDS * 2 + BN * LDS_S * 2 + 2 * 3 * BM * 4 + 2 * 8;
};

// One CTA per (key tile, KV head, batch). Warps own 16 keys each and work on the transposed problem:
//   S^T = K Q^T, P^T = exp2(S^T scale log2e - lse log2e), dP^T = V dO^T, dS^T = P^T (dP^T - delta)
//   dV += P^T dO, dK += dS^T Q   (registers, over every query tile and every query head of the group)
//   dQ += dS K                   (dS^T through shared memory, warps then own 32 (or 16) queries; fp32 atomics)
template <int D, int NWARPS, bool SPLIT, bool RETILE>
__global__ void __launch_bounds__(BwdCfg<D, NWARPS>::THREADS, 8 / NWARPS) attention_bwd_kernel(const BwdParams p) {
  using C = BwdCfg<D, NWARPS, RETILE>;
  constexpr int BM = C::BM, BN = C::BN, LDS = C::LDS, LDS_S = C::LDS_S, NT = C::THREADS;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sK = reinterpret_cast<bf16*>(smem);  // (BN, LDS)
  bf16* sV = sK + BN * LDS;                  // (BN, LDS)
  bf16* sQ = sV + BN * LDS;                  // 2 stages x (BM, LDS)
  bf16* sdO = sQ + 2 * BM * LDS;             // 2 stages x (BM, LDS)
  bf16* sdS = sdO + 2 * BM * LDS;            // (BN, LDS_S): dS^T, keys x queries
  float* sLse = reinterpret_cast<float*>(sdS + BN * LDS_S);  // 2 stages x BM
  float* sDelta = sLse + 2 * BM;                             // 2 stages x BM
  int32_t* sQpos = reinterpret_cast<int32_t*>(sDelta + 2 * BM);  // 2 stages x BM
  int2* sQb = reinterpret_cast<int2*>(sQpos + 2 * BM);            // 2 stages: the query tile's position bounds
  __shared__ int s_red[2][C::WARPS];
  __shared__ int s_skip[C::WARPS];

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  // Grid (Hkv, B, key tiles), the tile index slowest: key tile 0, which sees every query under causal masking,
  // starts first on every head (longest job first).
  const int group = p.hq / p.hkv;
  const int heads = SPLIT ? 1 : group;  // query heads this CTA walks: one, or the whole group
  const int kt = blockIdx.z, kvh = SPLIT ? blockIdx.x / group : blockIdx.x, b = blockIdx.y;
  const int h_first = SPLIT ? blockIdx.x : kvh * group;  // this CTA's first query head
  const int k0 = kt * BN;
  const int64_t ldq = int64_t(p.hq) * D, ldk = int64_t(p.hkv) * D;  // row strides of (B, T, H, d)
  const bf16* K = p.k + (int64_t(b) * p.tk + k0) * ldk + int64_t(kvh) * D;
  const bf16* V = p.v + (int64_t(b) * p.tk + k0) * ldk + int64_t(kvh) * D;

  load_tile<BN, D, LDS, NT>(sK, K, ldk, p.tk - k0, p.k);
  load_tile<BN, D, LDS, NT>(sV, V, ldk, p.tk - k0, p.v);
  cp_async_commit();

  // This thread's two keys (g and g+8 of the warp's 16) and the bounds per warp and per CTA.
  const int key0 = k0 + warp * 16 + g, key1 = key0 + 8;
  const bool kval0 = key0 < p.tk, kval1 = key1 < p.tk;
  const int kp0 = kval0 ? p.kpos[key0] : INT_MAX, kp1 = kval1 ? p.kpos[key1] : INT_MAX;
  const int wk_min = warp_min(min(kp0, kp1));
  const int wk_max = warp_max(max(kval0 ? kp0 : INT_MIN, kval1 ? kp1 : INT_MIN));
  const bool warp_keys_full = k0 + warp * 16 + 16 <= p.tk;
  if (lane == 0) s_red[0][warp] = wk_min;
  __syncthreads();
  int cta_kmin = INT_MAX;
  for (int w = 0; w < C::WARPS; ++w) cta_kmin = min(cta_kmin, s_red[0][w]);

  // The query tiles to visit: from the first to the last whose largest position reaches the smallest key.
  const int nqt = (p.tq + BM - 1) / BM;
  int ifirst = INT_MAX, ilast = -1;
  for (int i = threadIdx.x; i < nqt; i += NT)
    if (p.qbounds[i].y >= cta_kmin) {
      ifirst = min(ifirst, i);
      ilast = i;
    }
  ifirst = warp_min(ifirst);
  ilast = warp_max(ilast);
  __syncthreads();
  if (lane == 0) {
    s_red[0][warp] = ifirst;
    s_red[1][warp] = ilast;
  }
  __syncthreads();
  for (int w = 0; w < C::WARPS; ++w) {
    ifirst = min(ifirst, s_red[0][w]);
    ilast = max(ilast, s_red[1][w]);
  }
  const int nrange = ilast < 0 ? 0 : ilast - ifirst + 1;
  const int nsteps = nrange * heads;  // (query head, query tile) pairs

  auto load_step = [&](int step, int stage) {
    const int h = h_first + step / nrange, q0 = (ifirst + step % nrange) * BM;
    const int64_t off = (int64_t(b) * p.tq + q0) * ldq + int64_t(h) * D;
    load_tile<BM, D, LDS, NT>(sQ + stage * BM * LDS, p.q + off, ldq, p.tq - q0, p.q);
    load_tile<BM, D, LDS, NT>(sdO + stage * BM * LDS, p.dout + off, ldq, p.tq - q0, p.dout);
    const int64_t so = (int64_t(b) * p.hq + h) * p.tq + q0;  // (B, Hq, Tq)
    for (int r = threadIdx.x; r < BM; r += NT) {
      const bool valid = q0 + r < p.tq;
      cp_async4(smem_addr(sLse + stage * BM + r), valid ? p.lse2 + so + r : p.lse2, valid);
      cp_async4(smem_addr(sDelta + stage * BM + r), valid ? p.delta + so + r : p.delta, valid);
      cp_async4(smem_addr(sQpos + stage * BM + r), valid ? p.qpos + q0 + r : p.qpos, valid);
    }
    if (threadIdx.x == NT - 1) cp_async8(smem_addr(sQb + stage), p.qbounds + q0 / BM);  // no global load per step
  };

  float acc_dk[D / 8][4], acc_dv[D / 8][4];  // rows: the warp's keys g, g+8; columns: d
#pragma unroll
  for (int i = 0; i < D / 8; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc_dk[i][e] = acc_dv[i][e] = 0.f;

  if (nsteps > 0) load_step(0, 0);
  cp_async_commit();

  // dQ (BM x d) += dS K for step `st`: warp w owns queries (w % QWARPS)*16*MQ.. and d columns (w / QWARPS)*DW..;
  // the key chunks of skipped warps are all zero (and were not written).
  auto dq_step = [&](int st) {
    constexpr int DW = C::DW, DC = C::DC, MQ = C::MQ;
    const int h = h_first + st / nrange, q0 = (ifirst + st % nrange) * BM;
    const int qw = (warp % C::QWARPS) * 16 * MQ, dw0 = (warp / C::QWARPS) * DW;
    if (q0 + qw >= p.tq) return;
    float* dqb = p.dq_acc + ((int64_t(b) * p.tq + q0 + qw + g) * p.hq + h) * D;  // (B, Tq, Hq, d)
#pragma unroll
    for (int dc = 0; dc < DW / DC; ++dc) {
      float acc[MQ][DC / 8][4];
#pragma unroll
      for (int m = 0; m < MQ; ++m)
#pragma unroll
        for (int i = 0; i < DC / 8; ++i) acc[m][i][0] = acc[m][i][1] = acc[m][i][2] = acc[m][i][3] = 0.f;
#pragma unroll
      for (int kc = 0; kc < BN / 16; ++kc) {
        if (s_skip[kc]) continue;
        uint32_t sa[MQ][4];  // dS as A fragments: (queries, keys) read from dS^T (keys, queries) transposed
#pragma unroll
        for (int m = 0; m < MQ; ++m)
          ldsm_x4_t(sa[m], smem_addr(sdS + (kc * 16 + (lane & 7) + ((lane >> 4) << 3)) * LDS_S + qw + m * 16 +
                                     ((lane >> 3) & 1) * 8));
#pragma unroll
        for (int db = 0; db < DC / 16; ++db) {
          uint32_t r[4];  // K (keys x d) is row-major B: transposed load
          ldsm_x4_t(r, smem_addr(sK + (kc * 16 + (lane & 15)) * LDS + dw0 + dc * DC + db * 16 + (lane >> 4) * 8));
#pragma unroll
          for (int m = 0; m < MQ; ++m) {
            mma(acc[m][2 * db], sa[m], r[0], r[1]);
            mma(acc[m][2 * db + 1], sa[m], r[2], r[3]);
          }
        }
      }
#pragma unroll
      for (int m = 0; m < MQ; ++m) {
        const int qrow0 = q0 + qw + m * 16 + g;
        float* dq0 = dqb + int64_t(m * 16) * ldq;
#pragma unroll
        for (int i = 0; i < DC / 8; ++i) {
          const int col = dw0 + dc * DC + i * 8 + 2 * t;
          if (qrow0 < p.tq)
            atomicAdd(reinterpret_cast<float2*>(dq0 + col), make_float2(acc[m][i][0] * p.scale, acc[m][i][1] * p.scale));
          if (qrow0 + 8 < p.tq)
            atomicAdd(reinterpret_cast<float2*>(dq0 + 8 * ldq + col),
                      make_float2(acc[m][i][2] * p.scale, acc[m][i][3] * p.scale));
        }
      }
    }
  };

  for (int step = 0, stage = 0; step < nsteps; ++step, stage ^= 1) {
    cp_async_wait_all();
    __syncthreads();  // this step's tiles landed; everyone is done with the other stage and with sdS
    if (step + 1 < nsteps) load_step(step + 1, stage ^ 1);
    cp_async_commit();
    const int qt = ifirst + step % nrange, q0 = qt * BM;
    const bf16* sQs = sQ + stage * BM * LDS;
    const bf16* sdOs = sdO + stage * BM * LDS;
    const float* lse = sLse + stage * BM;
    const float* dlt = sDelta + stage * BM;
    const int32_t* qp = sQpos + stage * BM;
    const int2 qb = sQb[stage];
    const bool skip = wk_min > qb.y;  // none of the warp's keys is visible to any query of the tile
    const bool need_mask = !(warp_keys_full && q0 + BM <= p.tq && wk_max <= qb.x);

    if (!skip) {
      // S^T = K Q^T and dP^T = V dO^T  (16 keys x BM queries per warp)
      float st[BM / 8][4], dpt[BM / 8][4];
#pragma unroll
      for (int i = 0; i < BM / 8; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) st[i][e] = dpt[i][e] = 0.f;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t ka[4], va[4];  // the warp's K and V rows as A fragments
        ldsm_x4(ka, smem_addr(sK + (warp * 16 + (lane & 15)) * LDS + kk * 16 + (lane >> 4) * 8));
        ldsm_x4(va, smem_addr(sV + (warp * 16 + (lane & 15)) * LDS + kk * 16 + (lane >> 4) * 8));
#pragma unroll
        for (int nb = 0; nb < BM / 16; ++nb) {
          uint32_t r[4];  // Q rows and dO rows as B fragments (col-major B = row-major rows)
          const int roff = (nb * 16 + (lane & 7) + ((lane >> 4) << 3)) * LDS + kk * 16 + ((lane >> 3) & 1) * 8;
          ldsm_x4(r, smem_addr(sQs + roff));
          mma(st[2 * nb], ka, r[0], r[1]);
          mma(st[2 * nb + 1], ka, r[2], r[3]);
          ldsm_x4(r, smem_addr(sdOs + roff));
          mma(dpt[2 * nb], va, r[0], r[1]);
          mma(dpt[2 * nb + 1], va, r[2], r[3]);
        }
      }
      // P^T and dS^T in place: st <- P^T, dpt <- dS^T.
#pragma unroll
      for (int i = 0; i < BM / 8; ++i) {
        const int col = i * 8 + 2 * t;  // query within the tile
        const float2 l2 = *reinterpret_cast<const float2*>(lse + col);  // already lse log2(e)
        const float2 dl = *reinterpret_cast<const float2*>(dlt + col);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int c = col + (e & 1);
          float pe = fast_exp2(fmaf(st[i][e], p.scale_log2, -((e & 1) ? l2.y : l2.x)));
          if (need_mask) {
            const bool vis = q0 + c < p.tq && (e < 2 ? kval0 && kp0 <= qp[c] : kval1 && kp1 <= qp[c]);
            if (!vis) pe = 0.f;
          }
          st[i][e] = pe;
          dpt[i][e] = pe * (dpt[i][e] - ((e & 1) ? dl.y : dl.x));
        }
      }
      // dV += P^T dO, dK += dS^T Q  (A from registers; dO and Q (queries x d) are row-major B: transposed loads)
#pragma unroll
      for (int kc = 0; kc < BM / 16; ++kc) {
        const uint32_t pa[4] = {pack_bf16(st[2 * kc][0], st[2 * kc][1]), pack_bf16(st[2 * kc][2], st[2 * kc][3]),
                                pack_bf16(st[2 * kc + 1][0], st[2 * kc + 1][1]),
                                pack_bf16(st[2 * kc + 1][2], st[2 * kc + 1][3])};
        const uint32_t sa[4] = {pack_bf16(dpt[2 * kc][0], dpt[2 * kc][1]),
                                pack_bf16(dpt[2 * kc][2], dpt[2 * kc][3]),
                                pack_bf16(dpt[2 * kc + 1][0], dpt[2 * kc + 1][1]),
                                pack_bf16(dpt[2 * kc + 1][2], dpt[2 * kc + 1][3])};
#pragma unroll
        for (int db = 0; db < D / 16; ++db) {
          uint32_t r[4];
          const int roff = (kc * 16 + (lane & 15)) * LDS + db * 16 + (lane >> 4) * 8;
          ldsm_x4_t(r, smem_addr(sdOs + roff));
          mma(acc_dv[2 * db], pa, r[0], r[1]);
          mma(acc_dv[2 * db + 1], pa, r[2], r[3]);
          ldsm_x4_t(r, smem_addr(sQs + roff));
          mma(acc_dk[2 * db], sa, r[0], r[1]);
          mma(acc_dk[2 * db + 1], sa, r[2], r[3]);
        }
        // dS^T (bf16) to shared for the dQ product.
        *reinterpret_cast<uint32_t*>(sdS + (warp * 16 + g) * LDS_S + kc * 16 + 2 * t) = sa[0];
        *reinterpret_cast<uint32_t*>(sdS + (warp * 16 + g + 8) * LDS_S + kc * 16 + 2 * t) = sa[1];
        *reinterpret_cast<uint32_t*>(sdS + (warp * 16 + g) * LDS_S + kc * 16 + 8 + 2 * t) = sa[2];
        *reinterpret_cast<uint32_t*>(sdS + (warp * 16 + g + 8) * LDS_S + kc * 16 + 8 + 2 * t) = sa[3];
      }
    }
    if (lane == 0) s_skip[warp] = skip;
    __syncthreads();  // dS^T complete
    dq_step(step);
  }
  cp_async_wait_all();

  // dK = scale dS^T Q, dV as accumulated. Split: fp32 partials of this query head, summed by the reduce kernel.
  if constexpr (SPLIT) {
    const int64_t ldp = int64_t(p.hq) * D;  // (B, Tk, Hq, d)
    float* dKp = p.dk_part + int64_t(b) * p.tk * ldp + int64_t(h_first) * D;
    float* dVp = p.dv_part + int64_t(b) * p.tk * ldp + int64_t(h_first) * D;
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      const int col = i * 8 + 2 * t;
      if (kval0) {
        *reinterpret_cast<float2*>(dKp + int64_t(key0) * ldp + col) =
            make_float2(acc_dk[i][0] * p.scale, acc_dk[i][1] * p.scale);
        *reinterpret_cast<float2*>(dVp + int64_t(key0) * ldp + col) = make_float2(acc_dv[i][0], acc_dv[i][1]);
      }
      if (kval1) {
        *reinterpret_cast<float2*>(dKp + int64_t(key1) * ldp + col) =
            make_float2(acc_dk[i][2] * p.scale, acc_dk[i][3] * p.scale);
        *reinterpret_cast<float2*>(dVp + int64_t(key1) * ldp + col) = make_float2(acc_dv[i][2], acc_dv[i][3]);
      }
    }
    return;
  }
  // bf16, written (not accumulated).
  bf16* dK = p.dk + (int64_t(b) * p.tk) * ldk + int64_t(kvh) * D;
  bf16* dV = p.dv + (int64_t(b) * p.tk) * ldk + int64_t(kvh) * D;
#pragma unroll
  for (int i = 0; i < D / 8; ++i) {
    const int col = i * 8 + 2 * t;
    if (kval0) {
      *reinterpret_cast<uint32_t*>(dK + int64_t(key0) * ldk + col) =
          pack_bf16(acc_dk[i][0] * p.scale, acc_dk[i][1] * p.scale);
      *reinterpret_cast<uint32_t*>(dV + int64_t(key0) * ldk + col) = pack_bf16(acc_dv[i][0], acc_dv[i][1]);
    }
    if (kval1) {
      *reinterpret_cast<uint32_t*>(dK + int64_t(key1) * ldk + col) =
          pack_bf16(acc_dk[i][2] * p.scale, acc_dk[i][3] * p.scale);
      *reinterpret_cast<uint32_t*>(dV + int64_t(key1) * ldk + col) = pack_bf16(acc_dv[i][2], acc_dv[i][3]);
    }
  }
}

void check_dims(const AttentionDims& d, const char* what) {
  if (d.d != 32 && d.d != 64 && d.d != 128) fail("head dim must be 32, 64 or 128", what, __FILE__, __LINE__);
  if (d.hkv <= 0 || d.hq % d.hkv != 0) fail("Hq must be a multiple of Hkv", what, __FILE__, __LINE__);
  // Query / key tiles index gridDim.z (at most 65535 tiles of 64 or more rows).
  if (d.tq > 65535LL * 64 || d.tk > 65535LL * 64) fail("sequence too long (> 4M tokens)", what, __FILE__, __LINE__);
}

template <int D, int BN>
void launch_forward_cfg(const FwdParams& p, int64_t tq, cudaStream_t stream) {
  using C = FwdCfg<D, BN>;
  CUDA_CHECK(
      cudaFuncSetAttribute(attention_fwd_kernel<D, BN>, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM));
  const dim3 grid(unsigned(p.hq), unsigned(p.batch), unsigned((tq + C::BM - 1) / C::BM));
  attention_fwd_kernel<D, BN><<<grid, C::THREADS, C::SMEM, stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

// Key tiles of 64 (default) or 32 (MSA_ATTN_FWD_BN=32, for benchmarking: half the S registers, twice the tiles).
template <int D>
void launch_forward(const FwdParams& p, int64_t tq, cudaStream_t stream) {
  static const int bn = [] {
    const char* e = std::getenv("MSA_ATTN_FWD_BN");
    return e ? std::atoi(e) : 64;
  }();
  if (bn == 32)
    launch_forward_cfg<D, 32>(p, tq, stream);
  else
    launch_forward_cfg<D, 64>(p, tq, stream);
}

template <int D, int NWARPS, bool SPLIT, bool RETILE = true>
void launch_backward_cfg(const BwdParams& p, int64_t tk, cudaStream_t stream) {
  using C = BwdCfg<D, NWARPS, RETILE>;
  CUDA_CHECK(cudaFuncSetAttribute(attention_bwd_kernel<D, NWARPS, SPLIT, RETILE>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM));
  // Grid (KV heads, or query heads when split; batch; key tiles)
  const dim3 grid(unsigned(SPLIT ? p.hq : p.hkv), unsigned(p.batch), unsigned((tk + C::BN - 1) / C::BN));
  attention_bwd_kernel<D, NWARPS, SPLIT, RETILE><<<grid, C::THREADS, C::SMEM, stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

// MSA_ATTN_BWD_DQ16=1 (benchmark / test switch): the old dQ tiling (16 queries per warp), d = 128 with 8 warps.
bool bwd_dq16() {
  static const bool v = [] {
    const char* e = std::getenv("MSA_ATTN_BWD_DQ16");
    return e && std::atoi(e) != 0;
  }();
  return v;
}

// 4 warps (64 keys, two CTAs per SM) or 8 warps (128 keys, half the dQ atomics per FLOP); MSA_ATTN_BWD_WARPS
// overrides the default for benchmarking.
template <int D>
void launch_backward(const BwdParams& p, int64_t tk, cudaStream_t stream) {
  const bool split = p.dk_part != nullptr;
  if (bwd_warps() == 4)
    split ? launch_backward_cfg<D, 4, true>(p, tk, stream) : launch_backward_cfg<D, 4, false>(p, tk, stream);
  else if (D == 128 && bwd_dq16())
    split ? launch_backward_cfg<D, 8, true, false>(p, tk, stream)
          : launch_backward_cfg<D, 8, false, false>(p, tk, stream);
  else
    split ? launch_backward_cfg<D, 8, true>(p, tk, stream) : launch_backward_cfg<D, 8, false>(p, tk, stream);
}

}  // namespace

void attention_forward(__nv_bfloat16* o, float* lse, const __nv_bfloat16* q, const __nv_bfloat16* k,
                       const __nv_bfloat16* v, const int32_t* qpos, const int32_t* kpos, const AttentionDims& dims,
                       cudaStream_t stream) {
  check_dims(dims, "attention_forward");
  if (dims.batch == 0 || dims.tq == 0 || dims.hq == 0) return;
  FwdParams p{o, lse, q, k, v, qpos, kpos, int(dims.batch), int(dims.tq), int(dims.tk), int(dims.hq),
              int(dims.hkv), dims.scale * kLog2e};
  switch (dims.d) {
    case 32: launch_forward<32>(p, dims.tq, stream); break;
    case 64: launch_forward<64>(p, dims.tq, stream); break;
    default: launch_forward<128>(p, dims.tq, stream); break;
  }
}

size_t attention_backward_workspace_bytes(const AttentionDims& dims) { return bwd_workspace(dims).total; }

void attention_backward(__nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv, const __nv_bfloat16* dout,
                        const __nv_bfloat16* o, const float* lse, const __nv_bfloat16* q, const __nv_bfloat16* k,
                        const __nv_bfloat16* v, const int32_t* qpos, const int32_t* kpos, const AttentionDims& dims,
                        void* workspace, cudaStream_t stream) {
  check_dims(dims, "attention_backward");
  if (dims.batch == 0 || dims.hq == 0) return;
  const BwdWorkspace w = bwd_workspace(dims);
  char* ws = static_cast<char*>(workspace);
  float* dq_acc = reinterpret_cast<float*>(ws + w.dq_off);
  float* delta = reinterpret_cast<float*>(ws + w.delta_off);
  float* lse2 = reinterpret_cast<float*>(ws + w.lse2_off);
  int2* qb = reinterpret_cast<int2*>(ws + w.qb_off);
  const int64_t nq = dims.batch * dims.tq * dims.hq * dims.d;  // elements of q / dq
  if (nq > 0) {
    CUDA_CHECK(cudaMemsetAsync(dq_acc, 0, size_t(nq) * sizeof(float), stream));
    const int64_t rows = dims.batch * dims.tq * dims.hq;
    attention_bwd_delta_kernel<<<unsigned((rows * 32 + 255) / 256), 256, 0, stream>>>(
        delta, lse2, lse, dout, o, rows, int(dims.tq), int(dims.hq), int(dims.d));
    CUDA_CHECK_LAUNCH();
    const int64_t nqt = (dims.tq + kBwdBM - 1) / kBwdBM;
    attention_bwd_qbounds_kernel<<<unsigned((nqt + 127) / 128), 128, 0, stream>>>(qb, qpos, int(dims.tq));
    CUDA_CHECK_LAUNCH();
  }
  if (dims.tk > 0) {
    BwdParams p{dk, dv, dq_acc, lse2, delta, qb, q, k, v, dout, qpos, kpos, int(dims.batch), int(dims.tq),
                int(dims.tk), int(dims.hq), int(dims.hkv), dims.scale, dims.scale * kLog2e, nullptr, nullptr};
    if (w.split) {
      p.dk_part = reinterpret_cast<float*>(ws + w.part_off);
      p.dv_part = p.dk_part + align256(size_t(dims.batch * dims.tk * dims.hq * dims.d) * sizeof(float)) / 4;
    }
    switch (dims.d) {
      case 32: launch_backward<32>(p, dims.tk, stream); break;
      case 64: launch_backward<64>(p, dims.tk, stream); break;
      default: launch_backward<128>(p, dims.tk, stream); break;
    }
    if (w.split) {
      const int64_t n4 = dims.batch * dims.tk * dims.hkv * dims.d / 4;  // float4s of dk (and dv)
      attention_bwd_reduce_kernel<<<unsigned((n4 + 255) / 256), 256, 0, stream>>>(
          dk, dv, p.dk_part, p.dv_part, n4, int(dims.hkv), int(dims.hq / dims.hkv), int(dims.d));
      CUDA_CHECK_LAUNCH();
    }
  }
  if (nq > 0) {
    attention_bwd_dq_convert_kernel<<<unsigned((nq / 4 + 255) / 256), 256, 0, stream>>>(dq, dq_acc, nq / 4);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace msa::cuda
