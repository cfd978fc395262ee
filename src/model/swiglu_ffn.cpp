#include "model/swiglu_ffn.h"

#include "ops/ops.h"

namespace msa {

SwiGLUFFN::SwiGLUFFN(const std::string& prefix, LayerContext& ctx) : ctx_(ctx) {
  const int64_t n = ctx.rows(), c = ctx.cfg.d_model, f = ctx.cfg.ffn_hidden;
  w13_ = Param(prefix + ".w13", {2 * f, c}, ctx.dtype, ctx.device, ParamKind::matrix);
  w2_ = Param(prefix + ".w2", {c, f}, ctx.dtype, ctx.device, ParamKind::matrix);
  gu_ = Tensor::zeros({n, 2 * f}, ctx.dtype, ctx.device);
  h_ = Tensor::zeros({n, f}, ctx.dtype, ctx.device);
  out_ = Tensor::zeros({n, c}, ctx.dtype, ctx.device);
}

const Tensor& SwiGLUFFN::forward(const Tensor& x) {
  ops::gemm(gu_, x, false, w13_.value, true);
  ops::swiglu_forward(h_, gu_);
  ops::gemm(out_, h_, false, w2_.value, true);
  return out_;
}

void SwiGLUFFN::backward(Tensor& dx, const Tensor& dout, const Tensor& x) {
  ops::gemm(ctx_.d_h, dout, false, w2_.value, false);          // dh = dout W2        (N, F)
  ops::gemm(w2_.grad, dout, true, h_, false, 1.0, 1.0);        // dW2 += dout^T h     (C, F)
  ops::swiglu_backward(ctx_.d_gu, ctx_.d_h, gu_);              // d[gate | up]        (N, 2F)
  ops::gemm(w13_.grad, ctx_.d_gu, true, x, false, 1.0, 1.0);   // dW13 += dgu^T x     (2F, C)
  ops::gemm(dx, ctx_.d_gu, false, w13_.value, false);          // dx = dgu W13        (N, C)
}

}  // namespace msa
