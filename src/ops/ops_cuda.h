// The CUDA side of ops.h: the same ops on device tensors (bf16 activations and weights, fp32 statistics,
// gradients and optimizer state). ops_cpu.cpp forwards here when a tensor lives on the GPU; built only with
// the CUDA backend. Shapes are checked by the caller in ops_cpu.cpp.
#pragma once
#include "ops/ops.h"
#include "ops/ops_moe.h"

namespace msa::ops::gpu {

void gemm(Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, double alpha, double beta);
void rmsnorm_forward(Tensor& y, Tensor& rstd, const Tensor& x, const Tensor& w, double eps);
void rmsnorm_backward(Tensor& dx, Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd);
void rope(Tensor& x, const Tensor& cos, const Tensor& sin, int64_t rot_dims, bool inverse);
void attention_forward(Tensor& o, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& qpos,
                       const Tensor& kpos, double scale, bool plain_causal);
void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& o, const Tensor& lse,
                        const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& qpos, const Tensor& kpos,
                        double scale, bool plain_causal);
void swiglu_forward(Tensor& h, const Tensor& gu);
void swiglu_backward(Tensor& dgu, const Tensor& dh, const Tensor& gu);
void embedding_forward(Tensor& out, const Tensor& table, const Tensor& ids);
void embedding_backward(Tensor& dtable, const Tensor& dout, const Tensor& ids);
void cross_entropy(Tensor& losses, Tensor& logits, const Tensor& targets, double grad_scale, int64_t vocab);
void copy_columns(Tensor& dst, int64_t dst_col, const Tensor& src, int64_t src_col, int64_t width);
void convert(Tensor& dst, const Tensor& src);
void copy_columns_rope(Tensor& dst, int64_t dst_col, const Tensor& src, int64_t src_col, int64_t width,
                       int64_t head_dim, const Tensor& cos, const Tensor& sin, int64_t rot_dims, bool inverse);
void add_inplace(Tensor& y, const Tensor& x, double alpha);
void scale_inplace(Tensor& y, double alpha);
double sum_squares(const Tensor& x);
double sum_squares(const std::vector<const Tensor*>& xs);
double sum(const Tensor& x);
bool all_finite(const Tensor& x);
void adamw_update(Tensor& p, Tensor& m, Tensor& v, const Tensor& g, const AdamWHyper& h, Tensor* value);

// The MoE ops of ops_moe.h (ops_moe_cuda.cpp): router tensors fp32 (dlogits bf16 or fp32), rows bf16.
void moe_route_forward(Tensor& scores, Tensor& idx, Tensor& gates, Tensor& lse, const Tensor& logits, int64_t k,
                       bool sigmoid, bool renorm);
void moe_route_backward(Tensor& dlogits, const Tensor& dgates, const Tensor& scores, const Tensor& idx,
                        const Tensor& gates, const Tensor& lse, const Tensor& logits,
                        const std::vector<double>& aux_grad, double z_coef, bool sigmoid, bool renorm);
void gather_rows(Tensor& dst, const Tensor& src, const std::vector<int64_t>& rows, const std::vector<double>& scale);
void scatter_add_rows(Tensor& dst, const Tensor& src, const std::vector<int64_t>& rows,
                      const std::vector<double>& scale);
void row_dots(std::vector<double>& out, const Tensor& a, const std::vector<int64_t>& rows, const Tensor& b);

}  // namespace msa::ops::gpu
