// The ops model code is written against. Each checks shapes, then dispatches on device and dtype to a kernel:
// kernels/cpu (templated, float and double) or, when built, kernels/cuda. Model code never branches on device.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace msa::ops {

// c (M, N) = alpha * op(a) * op(b) + beta * c; a is (M, K) or (K, M) when trans_a; b is (K, N) or (N, K).
void gemm(Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, double alpha = 1.0,
          double beta = 0.0);

// y (N, C) = rmsnorm(x) * w; rstd (N) saved.   Backward accumulates: dx += ..., dw += ...
void rmsnorm_forward(Tensor& y, Tensor& rstd, const Tensor& x, const Tensor& w, double eps);
void rmsnorm_backward(Tensor& dx, Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd);

// x (B, T, H, d) rotated in place by the tables cos, sin (T, r/2); inverse = the backward.
void rope(Tensor& x, const Tensor& cos, const Tensor& sin, int64_t rot_dims, bool inverse);

// Optional block selection for attention: MSA's Main Branch attends only to keys in the selected blocks.
struct BlockSelection {
  const Tensor* sel = nullptr;  // (B, Hkv, Tq, topk) int32 block ids, -1 = unused
  int64_t block_size = 1;
};

// Attention with positional (causal) masking: key j visible to query i iff kpos[j] <= qpos[i] (and, with a
// selection, key j's block is selected for query i's group).
// q, o (B, Tq, Hq, d); k, v (B, Tk, Hkv, d); lse (B, Hq, Tq); qpos (Tq), kpos (Tk) int32.
// plain_causal: the caller guarantees qpos = kpos = 0..T-1 (dense causal self-attention, no selection), which
// lets the GPU use cuDNN's fused attention (MSATRAIN_ATTENTION=own|cudnn, default cudnn where it runs).
void attention_forward(Tensor& o, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& qpos,
                       const Tensor& kpos, double scale, const BlockSelection& selection = {},
                       bool plain_causal = false);
// dq, dk, dv written.
void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& o, const Tensor& lse,
                        const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& qpos, const Tensor& kpos,
                        double scale, const BlockSelection& selection = {}, bool plain_causal = false);

// MSA Index Branch (spec §1-§2, §4). qi (B, Tq, Hkv, dI), ki (B, Tk, dI) normed and rotated.
struct MsaIndexParams {
  int64_t block_size, topk, sink_blocks;
  bool force_local, mean_pool;
};
// sel (B, Hkv, Tq, topk) int32, the selection contract of spec §2.
void msa_select(Tensor& sel, const Tensor& qi, const Tensor& ki, const Tensor& qpos, const Tensor& kpos,
                const MsaIndexParams& p);
struct MsaKlStats {
  double kl_sum = 0, recall_sum = 0, selected_share_sum = 0;
  int64_t rows = 0;  // (b, t, g) rows
};
// KL(teacher || student) over the support (the selected blocks' keys when sparse_support, else all causal keys);
// the teacher is the group-mean Main Branch attention recomputed from q, k, lse (B, Hq, Tq) (a constant).
// dqi written and dki accumulated with grad_coef * d(sum KL)/d(qi, ki). want_recall measures index_recall.
MsaKlStats msa_index_kl(Tensor& dqi, Tensor& dki, const Tensor& qi, const Tensor& ki, const Tensor& q, const Tensor& k,
                        const Tensor& lse, const Tensor& sel, bool sparse_support, const Tensor& qpos,
                        const Tensor& kpos, const MsaIndexParams& p, double main_scale, double grad_coef,
                        bool want_recall);

// h (N, F) = silu(gu[:, :F]) * gu[:, F:]; backward writes dgu (N, 2F).
void swiglu_forward(Tensor& h, const Tensor& gu);
void swiglu_backward(Tensor& dgu, const Tensor& dh, const Tensor& gu);

// out (N, C) = table[ids]; backward: dtable[ids] += dout.
void embedding_forward(Tensor& out, const Tensor& table, const Tensor& ids);
void embedding_backward(Tensor& dtable, const Tensor& dout, const Tensor& ids);

// losses (N) from logits (N, Vp) and targets (N, int32, < 0 = ignored); when grad_scale != 0 the logits are
// replaced by the gradient of grad_scale * sum(losses). Columns from vocab on are padding (vocab <= 0: none):
// left out of the softmax, gradient 0.
void cross_entropy(Tensor& losses, Tensor& logits, const Tensor& targets, double grad_scale, int64_t vocab = 0);

// dst[:, dst_col : dst_col + width] = src[:, src_col : src_col + width] for 2-D views (N, *) of the same N.
void copy_columns(Tensor& dst, int64_t dst_col, const Tensor& src, int64_t src_col, int64_t width);

// dst = src converted to dst's dtype (same numel and device), e.g. fp32 master weights into bf16 values.
void convert(Tensor& dst, const Tensor& src);

// dst[:, dst_col : dst_col + width] = RoPE(src[:, src_col : src_col + width]): the window is whole heads of
// head_dim; each head's first rot_dims dims rotate by the tables cos, sin (T, rot_dims/2) of the row's token
// (row n is token n % T); the transpose rotation when inverse. The q / k split of the QKV projection fused with
// RoPE (forward), and its backward.
void copy_columns_rope(Tensor& dst, int64_t dst_col, const Tensor& src, int64_t src_col, int64_t width,
                       int64_t head_dim, const Tensor& cos, const Tensor& sin, int64_t rot_dims, bool inverse);

// Elementwise helpers.
void add_inplace(Tensor& y, const Tensor& x, double alpha = 1.0);  // y += alpha * x
void scale_inplace(Tensor& y, double alpha);                      // y *= alpha
double sum_squares(const Tensor& x);                               // in double
// Sum of the squares of every tensor's elements (all on one device): one host round trip for all of them.
double sum_squares(const std::vector<const Tensor*>& xs);
double sum(const Tensor& x);
bool all_finite(const Tensor& x);

// AdamW on master weights p with moments m, v and gradient g (all the same shape and dtype).
struct AdamWHyper {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step;       // 1-based
  double grad_scale;  // clip factor applied to g
};
// value (optional, may be null): the compute copy of p (bf16 on the GPU), written from the new p in the same pass.
void adamw_update(Tensor& p, Tensor& m, Tensor& v, const Tensor& g, const AdamWHyper& h, Tensor* value = nullptr);

}  // namespace msa::ops
