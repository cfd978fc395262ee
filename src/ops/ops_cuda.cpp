// Device-tensor ops: dtype checks, then the launchers in kernels/cuda.
#include "ops/ops_cuda.h"

#include <cmath>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_cudnn.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/layer_ops.h"
#include "kernels/cuda/op_profile.h"
#include "kernels/cuda/runtime.h"
#include "ops/cuda_args.h"

namespace msa::ops::gpu {
namespace {

cuda::AttentionDims attention_dims(const Tensor& q, const Tensor& k, double scale) {
  return cuda::AttentionDims{q.dim(0), q.dim(1), k.dim(1), q.dim(2), k.dim(2), q.dim(3), float(scale)};
}

// cuDNN's fused kernels serve plain causal self-attention when enabled and cuDNN has an engine for the shape
// (decided once per shape); everything else runs our kernel. Both write the same lse, so either backward can
// follow either forward.
bool use_cudnn(const cuda::AttentionDims& dims, bool plain_causal) {
  return plain_causal && cuda::cudnn_attention_enabled() && cuda::cudnn_attention_supported(dims);
}

}  // namespace

void gemm(Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, double alpha, double beta) {
  expect(a, DType::bf16, "gemm a");
  expect(b, DType::bf16, "gemm b");
  const int64_t m = trans_a ? a.dim(1) : a.dim(0), k = trans_a ? a.dim(0) : a.dim(1);
  const int64_t n = trans_b ? b.dim(0) : b.dim(1);
  cuda::OpScope scope(cuda::profiling_enabled() ? "gemm " + std::to_string(m) + "x" + std::to_string(n) + "x" +
                                                      std::to_string(k) + (trans_a ? " aT" : "") + (trans_b ? " bT" : "") +
                                                      (is_f32(c) ? " ->f32" : "")
                                                : std::string());
  cuda::gemm_bf16(c.raw(), is_f32(c), bf(a), trans_a, bf(b), trans_b, m, n, k, float(alpha), float(beta));
}

void rmsnorm_forward(Tensor& y, Tensor& rstd, const Tensor& x, const Tensor& w, double eps) {
  cuda::OpScope scope("rmsnorm_forward");
  expect(rstd, DType::f32, "rmsnorm rstd");
  cuda::rmsnorm_forward(bf(y), f32(rstd), bf(x), bf(w), rows(x), x.dim(-1), float(eps));
}

void rmsnorm_backward(Tensor& dx, Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd) {
  cuda::OpScope scope("rmsnorm_backward");
  expect(dw, DType::f32, "rmsnorm dw");
  cuda::rmsnorm_backward(bf(dx), f32(dw), bf(dy), bf(x), bf(w), f32(rstd), rows(x), x.dim(-1));
}

void rope(Tensor& x, const Tensor& cos, const Tensor& sin, int64_t rot_dims, bool inverse) {
  cuda::OpScope scope("rope");
  expect(cos, DType::f32, "rope table");
  cuda::rope(bf(x), f32(cos), f32(sin), x.dim(0), x.dim(1), x.dim(2), x.dim(3), rot_dims, inverse);
}

void attention_forward(Tensor& o, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& qpos,
                       const Tensor& kpos, double scale, bool plain_causal) {
  expect(lse, DType::f32, "attention lse");
  const cuda::AttentionDims dims = attention_dims(q, k, scale);
  if (use_cudnn(dims, plain_causal)) {
    cuda::OpScope scope("attention_forward (cudnn)");
    void* ws = cuda::scratch(cuda::cudnn_attention_forward_workspace_bytes(dims));
    cuda::cudnn_attention_forward(bf(o), f32(lse), bf(q), bf(k), bf(v), dims, ws, cuda::compute_stream());
    return;
  }
  cuda::OpScope scope("attention_forward");
  cuda::attention_forward(bf(o), f32(lse), bf(q), bf(k), bf(v), i32(qpos), i32(kpos), dims, cuda::compute_stream());
}

void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& o, const Tensor& lse,
                        const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& qpos, const Tensor& kpos,
                        double scale, bool plain_causal) {
  const cuda::AttentionDims dims = attention_dims(q, k, scale);
  if (use_cudnn(dims, plain_causal)) {
    cuda::OpScope scope("attention_backward (cudnn)");
    void* ws = cuda::scratch(cuda::cudnn_attention_backward_workspace_bytes(dims));
    cuda::cudnn_attention_backward(bf(dq), bf(dk), bf(dv), bf(dout), bf(o), f32(lse), bf(q), bf(k), bf(v), dims, ws,
                                   cuda::compute_stream());
    return;
  }
  cuda::OpScope scope("attention_backward");
  void* ws = cuda::scratch(cuda::attention_backward_workspace_bytes(dims));
  cuda::attention_backward(bf(dq), bf(dk), bf(dv), bf(dout), bf(o), f32(lse), bf(q), bf(k), bf(v), i32(qpos),
                           i32(kpos), dims, ws, cuda::compute_stream());
}

void swiglu_forward(Tensor& h, const Tensor& gu) {
  cuda::OpScope scope("swiglu_forward");
  cuda::swiglu_forward(bf(h), bf(gu), rows(h), h.dim(-1));
}
void swiglu_backward(Tensor& dgu, const Tensor& dh, const Tensor& gu) {
  cuda::OpScope scope("swiglu_backward");
  cuda::swiglu_backward(bf(dgu), bf(dh), bf(gu), rows(dh), dh.dim(-1));
}

void embedding_forward(Tensor& out, const Tensor& table, const Tensor& ids) {
  cuda::OpScope scope("embedding_forward");
  expect(ids, DType::i32, "embedding ids");
  cuda::embedding_forward(bf(out), bf(table), i32(ids), ids.numel(), table.dim(1));
}

void embedding_backward(Tensor& dtable, const Tensor& dout, const Tensor& ids) {
  cuda::OpScope scope("embedding_backward");
  expect(dtable, DType::f32, "embedding gradient");
  cuda::embedding_backward(f32(dtable), bf(dout), i32(ids), ids.numel(), dtable.dim(1));
}

void cross_entropy(Tensor& losses, Tensor& logits, const Tensor& targets, double grad_scale, int64_t vocab) {
  cuda::OpScope scope("cross_entropy");
  expect(losses, DType::f32, "cross_entropy losses");
  expect(logits, DType::bf16, "cross_entropy logits");
  cuda::cross_entropy(f32(losses), bf(logits), i32(targets), rows(logits), vocab, logits.dim(-1), float(grad_scale));
}

void copy_columns(Tensor& dst, int64_t dst_col, const Tensor& src, int64_t src_col, int64_t width) {
  cuda::OpScope scope("copy_columns");
  cuda::copy_columns(dst.raw(), dst.dim(-1), dst_col, src.raw(), src.dim(-1), src_col, rows(dst), width,
                     int(dtype_size(dst.dtype())));
}

void copy_columns_rope(Tensor& dst, int64_t dst_col, const Tensor& src, int64_t src_col, int64_t width,
                       int64_t head_dim, const Tensor& cos, const Tensor& sin, int64_t rot_dims, bool inverse) {
  cuda::OpScope scope("copy_columns_rope");
  expect(dst, DType::bf16, "copy_columns_rope");
  expect(cos, DType::f32, "rope table");
  cuda::rope_copy_columns(bf(dst), dst.dim(-1), dst_col, bf(src), src.dim(-1), src_col, rows(dst), width, head_dim,
                          f32(cos), f32(sin), cos.dim(0), rot_dims, inverse);
}

void convert(Tensor& dst, const Tensor& src) {
  cuda::OpScope scope("convert");
  cuda::convert(dst.raw(), is_f32(dst), src.raw(), is_f32(src), dst.numel());
}

void add_inplace(Tensor& y, const Tensor& x, double alpha) {
  cuda::OpScope scope("add_inplace");
  cuda::add_inplace(y.raw(), is_f32(y), x.raw(), is_f32(x), y.numel(), float(alpha));
}
void scale_inplace(Tensor& y, double alpha) {
  cuda::OpScope scope("scale_inplace");
  cuda::scale_inplace(y.raw(), is_f32(y), y.numel(), float(alpha));
}
double sum_squares(const Tensor& x) {
  cuda::OpScope scope("sum_squares");
  return cuda::sum_squares(x.raw(), is_f32(x), x.numel());
}
double sum(const Tensor& x) {
  cuda::OpScope scope("sum");
  return cuda::sum(x.raw(), is_f32(x), x.numel());
}
double sum_squares(const std::vector<const Tensor*>& xs) {
  cuda::OpScope scope("sum_squares (many)");
  std::vector<std::pair<const void*, int64_t>> f32s, bf16s;
  for (const Tensor* x : xs) (is_f32(*x) ? f32s : bf16s).push_back({x->raw(), x->numel()});
  return cuda::sum_squares_many(f32s, true) + cuda::sum_squares_many(bf16s, false);
}

bool all_finite(const Tensor& x) {
  cuda::OpScope scope("all_finite");
  return cuda::all_finite(x.raw(), is_f32(x), x.numel());
}

void adamw_update(Tensor& p, Tensor& m, Tensor& v, const Tensor& g, const AdamWHyper& h, Tensor* value) {
  cuda::OpScope scope("adamw_update");
  expect(p, DType::f32, "adamw master weights");
  expect(m, DType::f32, "adamw first moment");
  expect(v, DType::f32, "adamw second moment");
  expect(g, DType::f32, "adamw gradient");
  const double bc1 = 1.0 - std::pow(h.beta1, double(h.step)), bc2 = 1.0 - std::pow(h.beta2, double(h.step));
  bf16* out = nullptr;  // the bf16 compute copy, written in the same pass
  if (value && value->raw() != p.raw()) {
    expect(*value, DType::bf16, "adamw value");
    out = bf(*value);
  }
  cuda::adamw_update(f32(p), f32(m), f32(v), f32(g), out, p.numel(), float(h.lr), float(h.beta1), float(h.beta2),
                     float(h.eps), float(h.weight_decay), float(bc1), float(bc2), float(h.grad_scale));
}

}  // namespace msa::ops::gpu
