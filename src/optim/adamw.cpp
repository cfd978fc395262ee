#include "optim/adamw.h"

#include <cmath>

#include "ops/ops.h"

namespace msa {

AdamW::AdamW(const ParamList& params, const TrainConfig& cfg) : params_(params), cfg_(cfg) {
  for (const Param* p : params_) {
    m_.push_back(Tensor::zeros(p->master.shape(), p->master.dtype(), p->master.device()));
    v_.push_back(Tensor::zeros(p->master.shape(), p->master.dtype(), p->master.device()));
  }
}

void AdamW::step(double lr, const std::array<double, 2>& group_scale, const std::array<bool, 2>& group_update) {
  ++t_;
  for (size_t i = 0; i < params_.size(); ++i) {
    Param& p = *params_[i];
    const size_t g = static_cast<size_t>(p.group);
    if (!group_update[g]) continue;
    const double grad_scale = group_scale[g];
    const bool decays = p.kind == ParamKind::matrix || cfg_.decay_norms_and_embeddings;
    ops::AdamWHyper h{lr, cfg_.beta1, cfg_.beta2, cfg_.adam_eps, decays ? cfg_.weight_decay : 0.0, t_, grad_scale};
    ops::adamw_update(p.master, m_[i], v_[i], p.grad, h, &p.value);  // also refreshes the bf16 value on the GPU
  }
}

double global_grad_norm(const ParamList& params, ParamGroup group) {
  std::vector<const Tensor*> grads;
  for (const Param* p : params)
    if (p->group == group) grads.push_back(&p->grad);
  return std::sqrt(ops::sum_squares(grads));
}

}  // namespace msa
