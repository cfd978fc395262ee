#include "optim/adamw.h"

#include <cmath>

#include "ops/ops.h"

namespace msa {

AdamW::AdamW(const ParamList& params, const TrainConfig& cfg) : params_(params), cfg_(cfg) {
  for (const Param* p : params_) {
    m_.push_back(Tensor::zeros(p->value.shape(), p->value.dtype(), p->value.device()));
    v_.push_back(Tensor::zeros(p->value.shape(), p->value.dtype(), p->value.device()));
  }
}

void AdamW::step(double lr, double grad_scale) {
  ++t_;
  for (size_t i = 0; i < params_.size(); ++i) {
    Param& p = *params_[i];
    const bool decays = p.kind == ParamKind::matrix || cfg_.decay_norms_and_embeddings;
    ops::AdamWHyper h{lr, cfg_.beta1, cfg_.beta2, cfg_.adam_eps, decays ? cfg_.weight_decay : 0.0, t_, grad_scale};
    ops::adamw_update(p.value, m_[i], v_[i], p.grad, h);
  }
}

double global_grad_norm(const ParamList& params) {
  double s = 0;
  for (const Param* p : params) s += ops::sum_squares(p->grad);
  return std::sqrt(s);
}

}  // namespace msa
