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

Plan make_plan(const Key& key) {
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
  cublasLtMatmulPreference_t pref;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const size_t ws = blaslt_workspace_bytes();
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(blaslt_handle(), p.desc, p.la, p.lb, p.lc, p.lc, pref, 1, &result,
                                              &found));
  cublasLtMatmulPreferenceDestroy(pref);
  if (found == 0)
    fail("cuBLASLt has no algorithm for this GEMM (m " + std::to_string(m) + ", n " + std::to_string(n) + ", k " +
             std::to_string(k) + ")",
         "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
  p.algo = result.algo;
  return p;
}

// Plans by shape, built once: a training step calls the same few dozen shapes over and over.
Plan& plan_for(const Key& key) {
  static std::mutex mu;
  static std::map<Key, Plan> plans;
  std::lock_guard<std::mutex> lock(mu);
  auto it = plans.find(key);
  if (it == plans.end()) it = plans.emplace(key, make_plan(key)).first;
  return it->second;
}

}  // namespace

void gemm_bf16(void* c, bool c_is_f32, const bf16* a, bool trans_a, const bf16* b, bool trans_b, int64_t m, int64_t n,
               int64_t k, float alpha, float beta) {
  if (m == 0 || n == 0) return;
  Plan& p = plan_for(Key{m, n, k, trans_a, trans_b, c_is_f32, beta != 0.0f});
  CUBLAS_CHECK(cublasLtMatmul(blaslt_handle(), p.desc, &alpha, b, p.la, a, p.lb, &beta, c, p.lc, c, p.lc, &p.algo,
                              blaslt_workspace(), blaslt_workspace_bytes(), compute_stream()));
}

}  // namespace msa::cuda
