// C = alpha * op(A) * op(B) + beta * C on row-major matrices (op = transpose or not). The reference GEMM.
#pragma once
#include "kernels/cpu/eigen_maps.h"

namespace msa::cpu {

// C (M, N); op(A) (M, K); op(B) (K, N). A is stored (M, K) or, transposed, (K, M); likewise B.
template <class T>
void gemm(T* c, const T* a, bool trans_a, const T* b, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, T beta) {
  auto C = mat(c, m, n, n);
  auto A = mat(a, trans_a ? k : m, trans_a ? m : k, trans_a ? m : k);
  auto B = mat(b, trans_b ? n : k, trans_b ? k : n, trans_b ? k : n);
  if (beta == T(0)) C.setZero();
  else if (beta != T(1)) C *= beta;
  if (!trans_a && !trans_b) C.noalias() += alpha * A * B;
  else if (!trans_a && trans_b) C.noalias() += alpha * A * B.transpose();
  else if (trans_a && !trans_b) C.noalias() += alpha * A.transpose() * B;
  else C.noalias() += alpha * A.transpose() * B.transpose();
}

}  // namespace msa::cpu
