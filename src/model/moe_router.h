// The MoE router: logits = x Wr^T in the model's float type (fp32 in training), scores (softmax or sigmoid),
// top-k experts per token and their gates; backward through the gates, the load-balancing loss and the router
// z-loss (docs/moe.md).
#pragma once
#include "config/config.h"
#include "model/param.h"

namespace msa {

class MoeRouter {
 public:
  MoeRouter(const std::string& name, const MoeConfig& cfg, int64_t rows, int64_t d_model, DType dtype, Device device);
  void forward(const Tensor& x);  // x (N, C) -> logits, scores, idx, gates, lse
  // dgates (N, k) in the gates' dtype: d(loss)/d(gates); aux_grad (E): d(loss)/d(score of expert e), the same for every token;
  // z_coef: weight of sum_t lse_t^2. dWr accumulated, dx (N, C) accumulated.
  void backward(Tensor& dx, const Tensor& x, const Tensor& dgates, const std::vector<double>& aux_grad, double z_coef);
  void collect(ParamList& ps) { ps.push_back(&w_); }

  const Tensor& scores() const { return scores_; }  // (N, E)
  const Tensor& idx() const { return idx_; }        // (N, k) int32 expert ids, best first
  const Tensor& gates() const { return gates_; }    // (N, k); router tensors are fp32 when activations are bf16
  const Tensor& lse() const { return lse_; }        // (N)

 private:
  MoeConfig cfg_;
  Param w_;         // (E, C)
  Tensor logits_;   // (N, E)
  Tensor scores_;   // (N, E)
  Tensor idx_;      // (N, k)
  Tensor gates_;    // (N, k)
  Tensor lse_;      // (N)
  Tensor dlogits_;  // (N, E)
};

}  // namespace msa
