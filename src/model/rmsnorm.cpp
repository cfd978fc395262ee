#include "model/rmsnorm.h"

#include "ops/ops.h"

namespace msa {

RMSNorm::RMSNorm(const std::string& name, int64_t rows, int64_t dim, double eps, DType dtype, Device device)
    : weight_(name, {dim}, dtype, device, ParamKind::norm),
      eps_(eps),
      out_(Tensor::zeros({rows, dim}, dtype, device)),
      rstd_(Tensor::zeros({rows}, dtype, device)) {
  weight_.value.from_vector(std::vector<double>(dim, 1.0));
}

const Tensor& RMSNorm::forward(const Tensor& x) {
  ops::rmsnorm_forward(out_, rstd_, x, weight_.value, eps_);
  return out_;
}

void RMSNorm::backward(Tensor& dx, const Tensor& dy, const Tensor& x) {
  ops::rmsnorm_backward(dx, weight_.grad, dy, x, weight_.value, rstd_);
}

}  // namespace msa
