// AdamW over a model's parameters: fp32 (or fp64 in tests) moments beside the master weights, decoupled weight
// decay on matrices only (norm scales and embeddings too when train.decay_norms_and_embeddings), and the
// global-norm clip applied as a gradient scale.
#pragma once
#include <array>
#include <vector>

#include "config/config.h"
#include "model/param.h"

namespace msa {

class AdamW {
 public:
  AdamW(const ParamList& params, const TrainConfig& cfg);
  // One update with learning rate lr; every gradient is multiplied by grad_scale first.
  void step(double lr, double grad_scale) { step(lr, {grad_scale, grad_scale}, {true, true}); }
  // Per ParamGroup (backbone, index): gradient scale (each group's own clip) and whether it is updated at all
  // (a frozen group keeps its weights and moments).
  void step(double lr, const std::array<double, 2>& group_scale, const std::array<bool, 2>& group_update);
  int64_t steps_taken() const { return t_; }
  // Moments by parameter, in the order of the ParamList (checkpoints store them).
  std::vector<Tensor>& first_moments() { return m_; }
  std::vector<Tensor>& second_moments() { return v_; }
  void set_steps_taken(int64_t t) { t_ = t; }

 private:
  ParamList params_;
  TrainConfig cfg_;
  std::vector<Tensor> m_, v_;
  int64_t t_ = 0;
};


}  // namespace msa
