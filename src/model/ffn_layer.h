// The feed-forward slot of a block: the dense SwiGLU or a Mixture-of-Experts layer. Both read the normed
// residual stream and write (N, C).
#pragma once
#include <vector>

#include "core/tensor.h"
#include "model/param.h"

namespace msa {

// What an MoE layer measured in its last forward (docs/moe.md); empty (moe = false) for dense layers.
struct MoeLayerStats {
  bool moe = false;
  std::vector<double> routed;  // (E) assignments routed to each expert, before the capacity drop
  double assignments = 0;      // tokens x top_k
  double dropped = 0;          // assignments over an expert's capacity (their slot passes through the residual)
  double aux_sum = 0;          // tokens x n_experts x sum_e f_e P_e: the load-balancing loss, summed over tokens
  double z_sum = 0;            // sum over tokens of logsumexp(router logits)^2
  double objective = 0;        // weights.moe x (aux_loss_coef x aux_sum + z_loss_coef x z_sum): the trained term
};

class FFNLayer {
 public:
  virtual ~FFNLayer() = default;
  virtual const Tensor& forward(const Tensor& x) = 0;                          // x (N, C) -> (N, C)
  virtual void backward(Tensor& dx, const Tensor& dout, const Tensor& x) = 0;  // dx (N, C) written
  virtual void collect(ParamList& ps) = 0;
  virtual MoeLayerStats moe_stats() const { return {}; }
};

}  // namespace msa
