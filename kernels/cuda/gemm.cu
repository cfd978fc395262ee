#include <map>
#include <mutex>
#include <tuple>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cublas_check.h"
#include "kernels/cuda/gemm.h"

namespace msa::cuda {
namespace {

// cuBLASLt is column-major. A row-major (R, C) matrix is the column-major (C, R) matrix, its transpose, so
// row-major C = op(A) op(B) is computed as column-major C^T = op(B)^T op(A)^T: b goes first.
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
};
using Key = std::tuple<int64_t, int64_t, int64_t, bool, bool, bool, bool>;  // m, n, k, ta, tb, c f32, beta != 0

// Median-free quick timing of one algorithm: 2 warm-up runs, then 5 timed ones (ms per run).
float time_algo(const Plan& p, const cublasLtMatmulAlgo_t& algo, const void* a, const void* b, void* c, float beta) {
  const float alpha = 1.0f;
  cudaStream_t s = compute_stream();
  cudaEvent_t e0, e1;
  CUDA_CHECK(cudaEventCreate(&e0));
  CUDA_CHECK(cudaEventCreate(&e1));
  float ms = 0;
  for (int i = 0; i < 7; ++i) {
    if (i == 2) CUDA_CHECK(cudaEventRecord(e0, s));
    if (cublasLtMatmul(blaslt_handle(), p.desc, &alpha, b, p.la, a, p.lb, &beta, c, p.lc, c, p.lc, &algo,
                       blaslt_workspace(), blaslt_workspace_bytes(), s) != CUBLAS_STATUS_SUCCESS) {
      ms = INFINITY;  // this candidate does not run here: never pick it
      break;
    }
  }
  CUDA_CHECK(cudaEventRecord(e1, s));
  CUDA_CHECK(cudaEventSynchronize(e1));
  if (ms == 0) {
    CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    ms /= 5;
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return ms;
}

// The descriptors of one shape (no algorithm chosen yet).
Plan make_descriptors(const Key& key) {
  const auto [m, n, k, ta, tb, c_f32, accumulate] = key;
  Plan p;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_first = tb ? CUBLAS_OP_T : CUBLAS_OP_N, op_second = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof op_first));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof op_second));
  // First operand: b, stored row-major (K, N) -> column-major (N, K), or (N, K) -> (K, N) when transposed.
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.la, CUDA_R_16BF, tb ? k : n, tb ? n : k, tb ? k : n));
  // Second operand: a, stored (M, K) -> column-major (K, M), or (K, M) -> (M, K) when transposed.
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.lb, CUDA_R_16BF, ta ? m : k, ta ? k : m, ta ? m : k));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.lc, c_f32 ? CUDA_R_32F : CUDA_R_16BF, n, m, n));
  return p;
}

// cuBLASLt's first heuristic choice is sometimes several times slower than its fifth (seen on H100 for
// 16384x1536x1024), so the plan times the top candidates once, on the call's own inputs and output (see below),
// and keeps the fastest.
void choose_algo(Plan& p, const Key& key, const void* a, const void* b, void* c) {
  const auto [m, n, k, ta, tb, c_f32, accumulate] = key;
  cublasLtMatmulPreference_t pref;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const size_t ws = blaslt_workspace_bytes();
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
  constexpr int kCandidates = 8;
  cublasLtMatmulHeuristicResult_t results[kCandidates] = {};
  int found = 0;
  CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(blaslt_handle(), p.desc, p.la, p.lb, p.lc, p.lc, pref, kCandidates,
                                              results, &found));
  cublasLtMatmulPreferenceDestroy(pref);
  if (found == 0)
    fail("cuBLASLt has no algorithm for this GEMM (m " + std::to_string(m) + ", n " + std::to_string(n) + ", k " +
             std::to_string(k) + ")",
         "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
  p.algo = results[0].algo;
  if (found > 1) {
    // Timed on the call's own output when it is overwritten anyway (beta = 0); an accumulation (beta = 1) must
    // not be disturbed, so it is timed on the op scratch instead (weight gradients: at most the largest matrix).
    // Either way the first step allocates no output-sized buffer of its own (a logits-sized one was 1.6 GB).
    const size_t c_bytes = size_t(m) * size_t(n) * (c_f32 ? 4 : 2);
    void* out = accumulate ? scratch(c_bytes) : c;
    float best = INFINITY;
    for (int i = 0; i < found; ++i) {
      const float ms = time_algo(p, results[i].algo, a, b, out, accumulate ? 1.0f : 0.0f);
      if (ms < best) best = ms, p.algo = results[i].algo;
    }
  }
}

// The row counts of the MoE experts' GEMMs (m, or k for their weight gradients) change with the routing every
// step: timing candidates for each new shape would cost far more than the GEMMs. So the timed choice is kept per
// bucket (m and k rounded up to a multiple of 1024, or of 128 below 1024), and a new shape of a tuned bucket
// takes the bucket's algorithm when cuBLASLt accepts it for that shape (cublasLtMatmulAlgoCheck). Bucket
// boundaries (the dense GEMMs) are timed themselves.
int64_t bucket(int64_t x) { return x < 1024 ? (x + 127) / 128 * 128 : (x + 1023) / 1024 * 1024; }

// Plans by shape, built once: a dense training step calls the same few dozen shapes over and over.
Plan& plan_for(const Key& key, const void* a, const void* b, void* c) {
  static std::mutex mu;
  static std::map<Key, Plan> plans;
  static std::map<Key, cublasLtMatmulAlgo_t> tuned;  // by bucket
  std::lock_guard<std::mutex> lock(mu);
  auto it = plans.find(key);
  if (it != plans.end()) return it->second;
  const auto [m, n, k, ta, tb, c_f32, accumulate] = key;
  const Key bkey{bucket(m), n, bucket(k), ta, tb, c_f32, accumulate};
  Plan p = make_descriptors(key);
  bool have = false;
  // A shape on a bucket boundary (the dense model's, rows a multiple of 1024) is always timed itself.
  const bool ragged = bkey != Key{m, n, k, ta, tb, c_f32, accumulate};
  if (auto t = tuned.find(bkey); ragged && t != tuned.end()) {
    cublasLtMatmulHeuristicResult_t check{};
    have = cublasLtMatmulAlgoCheck(blaslt_handle(), p.desc, p.la, p.lb, p.lc, p.lc, &t->second, &check) ==
               CUBLAS_STATUS_SUCCESS &&
           check.workspaceSize <= blaslt_workspace_bytes();
    if (have) p.algo = t->second;
  }
  if (!have) {
    choose_algo(p, key, a, b, c);
    tuned.emplace(bkey, p.algo);
  }
  return plans.emplace(key, p).first->second;
}

}  // namespace

void gemm_bf16(void* c, bool c_is_f32, const bf16* a, bool trans_a, const bf16* b, bool trans_b, int64_t m, int64_t n,
               int64_t k, float alpha, float beta) {
  if (m == 0 || n == 0) return;
  Plan& p = plan_for(Key{m, n, k, trans_a, trans_b, c_is_f32, beta != 0.0f}, a, b, c);
  CUBLAS_CHECK(cublasLtMatmul(blaslt_handle(), p.desc, &alpha, b, p.la, a, p.lb, &beta, c, p.lc, c, p.lc, &p.algo,
                              blaslt_workspace(), blaslt_workspace_bytes(), compute_stream()));
}

}  // namespace msa::cuda
