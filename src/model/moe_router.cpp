#include "model/moe_router.h"

#include "ops/ops.h"
#include "ops/ops_moe.h"

namespace msa {

MoeRouter::MoeRouter(const std::string& name, const MoeConfig& cfg, int64_t rows, int64_t d_model, DType dtype,
                     Device device)
    : cfg_(cfg), w_(name, {cfg.n_experts, d_model}, dtype, device, ParamKind::matrix) {
  const int64_t e = cfg.n_experts, k = cfg.top_k;
  // With bf16 activations the logits come out of the GEMM in fp32 and the routing math stays fp32 (close scores
  // must not flip experts by rounding); dlogits feeds the two bf16 GEMMs of the backward.
  const DType stat = dtype == DType::bf16 ? DType::f32 : dtype;
  logits_ = Tensor::zeros({rows, e}, stat, device);
  scores_ = Tensor::zeros({rows, e}, stat, device);
  idx_ = Tensor::zeros({rows, k}, DType::i32, device);
  gates_ = Tensor::zeros({rows, k}, stat, device);
  lse_ = Tensor::zeros({rows}, stat, device);
  dlogits_ = Tensor::zeros({rows, e}, dtype, device);
}

void MoeRouter::forward(const Tensor& x) {
  ops::gemm(logits_, x, false, w_.value, true);  // (N, E) = x Wr^T
  ops::moe_route_forward(scores_, idx_, gates_, lse_, logits_, cfg_.top_k, cfg_.score == "sigmoid", cfg_.renormalize);
}

void MoeRouter::backward(Tensor& dx, const Tensor& x, const Tensor& dgates, const std::vector<double>& aux_grad,
                         double z_coef) {
  ops::moe_route_backward(dlogits_, dgates, scores_, idx_, gates_, lse_, logits_, aux_grad, z_coef,
                          cfg_.score == "sigmoid", cfg_.renormalize);
  ops::gemm(w_.grad, dlogits_, true, x, false, 1.0, 1.0);  // dWr += dlogits^T x   (E, C)
  ops::gemm(dx, dlogits_, false, w_.value, false, 1.0, 1.0);  // dx += dlogits Wr  (N, C)
}

}  // namespace msa
