#include "model/rmsnorm.h"

#include "ops/ops.h"

namespace msa {

RMSNorm::RMSNorm(const std::string& name, int64_t rows, int64_t dim, double eps, DType dtype, Device device)
    : weight_(name, {dim}, dtype, device, ParamKind::norm),
      eps_(eps),
      out_(Tensor::zeros({rows, dim}, dtype, device)),
      rstd_(Tensor::zeros({rows}, dtype == DType::bf16 ? DType::f32 : dtype, device)) {  // fp32 statistics on the GPU
  weight_.assign(std::vector<double>(dim, 1.0));
}

const Tensor& RMSNorm::forward(const Tensor& x) {
  ops::rmsnorm_forward(out_, rstd_, x, weight_.value, eps_);
  return out_;
}

void RMSNorm::backward(Tensor& dx, const Tensor& dy, const Tensor& x) {
  ops::rmsnorm_backward(dx, weight_.grad, dy, x, weight_.value, rstd_);
}

}  // namespace msa
