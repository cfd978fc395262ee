// The ops of the Mixture-of-Experts layer (docs/moe.md): the router, row gathers and scatters between token
// order and expert order, and the grouped GEMM over experts. Row lists are host vectors: the layer needs the
// routing on the host anyway, to size the all-to-all exchange.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace msa::ops {

// logits (N, E) -> scores (N, E) (softmax or sigmoid), idx (N, k) int32 (top-k by score, ties to the lower
// id), gates (N, k) (the chosen scores, divided by their sum when renorm), lse (N) logsumexp of the logits.
void moe_route_forward(Tensor& scores, Tensor& idx, Tensor& gates, Tensor& lse, const Tensor& logits, int64_t k,
                       bool sigmoid, bool renorm);
// dlogits (N, E) written: the gradient of sum(dgates * gates) + sum_t,e aux_grad[e] * scores[t,e]
// + z_coef * sum_t lse_t^2 with respect to the logits.
void moe_route_backward(Tensor& dlogits, const Tensor& dgates, const Tensor& scores, const Tensor& idx,
                        const Tensor& gates, const Tensor& lse, const Tensor& logits,
                        const std::vector<double>& aux_grad, double z_coef, bool sigmoid, bool renorm);

// dst (M, C): dst[i] = scale[i] * src[rows[i]] (scale empty = 1).   src (N, C)
void gather_rows(Tensor& dst, const Tensor& src, const std::vector<int64_t>& rows,
                 const std::vector<double>& scale = {});
// dst (N, C): dst[rows[i]] += scale[i] * src[i] (scale empty = 1), in the order of i.   src (M, C)
void scatter_add_rows(Tensor& dst, const Tensor& src, const std::vector<int64_t>& rows,
                      const std::vector<double>& scale = {});
// out[i] = dot(a[rows[i]], b[i]) in double.   a (N, C), b (M, C)
void row_dots(std::vector<double>& out, const Tensor& a, const std::vector<int64_t>& rows, const Tensor& b);

// Grouped GEMM: rows [offsets[g], offsets[g+1]) of c and a form group g, which uses the matrix b[g]:
//   c_g (R_g, N) = a_g (R_g, K) op(b[g])      op(b) = b^T (b (N, K)) when trans_b, else b (K, N)
// One call per expert set, so that a device grouped kernel can replace the loop. Empty groups are skipped.
void grouped_gemm(Tensor& c, const Tensor& a, const std::vector<const Tensor*>& b, bool trans_b,
                  const std::vector<int64_t>& offsets);
// Weight gradients of a grouped GEMM: db[g] (N, K) += dy_g^T (R_g, N) x_g (R_g, K).
void grouped_gemm_weight_grad(const std::vector<Tensor*>& db, const Tensor& dy, const Tensor& x,
                              const std::vector<int64_t>& offsets);

}  // namespace msa::ops
