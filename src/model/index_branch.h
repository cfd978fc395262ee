// MSA Index Branch (spec/msa.md §1): from the (detached) layer input x,
//   qI[t, g] = rope(rmsnorm(WqI x_t)[g])   Hkv index query heads of dim dI
//   kI[t]    = rope(rmsnorm(WkI x_t))       one shared index key
// Its parameters learn only from the KL loss (ParamGroup::index).
#pragma once
#include "model/layer_context.h"
#include "model/param.h"

namespace msa {

class IndexBranch {
 public:
  IndexBranch(const std::string& prefix, LayerContext& ctx);
  void forward(const Tensor& x);  // x (N, C) -> qi(), ki()
  // Back-propagates the KL gradient held in dqi(), dki() (written by the KL kernel) into the index parameters.
  // dx (N, C) is accumulated only when given: that is the detach_index_input = false ablation. With detach
  // (the default) the caller passes nullptr, and stopgrad(x) of spec §1 holds by construction.
  void backward(const Tensor& x, Tensor* dx);
  void collect(ParamList& ps);

  Tensor& qi() { return qi_; }    // (B, T, Hkv, dI)
  Tensor& ki() { return ki_; }    // (B, T, dI)
  Tensor& dqi() { return dqi_; }  // (B, T, Hkv, dI)
  Tensor& dki() { return dki_; }  // (B, T, dI)

 private:
  LayerContext& ctx_;
  int64_t hkv_, di_;
  Param wq_;      // (Hkv dI, C)
  Param wk_;      // (dI, C)
  Param q_norm_;  // (dI)
  Param k_norm_;  // (dI)
  Tensor qi_pre_, ki_pre_;    // (N, Hkv dI), (N, dI) projections
  Tensor q_rstd_, k_rstd_;    // (N Hkv), (N)
  Tensor qi_, ki_;            // normed and rotated
  Tensor dqi_, dki_;          // KL gradients w.r.t. qi_, ki_
  Tensor dqi_pre_, dki_pre_;  // gradients w.r.t. the projections
};

}  // namespace msa
