// MSA attention layer (spec/msa.md): Index Branch -> block selection -> Main Branch (GQA over the selected
// blocks), plus the KL alignment loss that trains the Index Branch.
//
// Detach rules, and where each is enforced:
//  - The LM loss never reaches the Index Branch: the selection is integer block ids, and the Main Branch's
//    backward (AttentionGQA::backward) reads no index buffer.
//  - The KL loss reaches only the Index Branch: the teacher is recomputed from the Main Branch's q, k, lse as a
//    constant inside ops::msa_index_kl, which outputs gradients for qI and kI only.
//  - stopgrad(x): IndexBranch::backward adds to dx only when attention.detach_index_input is false.
// Phase (LayerContext::phase): warmup = dense Main Branch, KL over the whole causal prefix; sparse = Main Branch
// and KL over the selected blocks. Selection is computed in both (recall is logged in warmup too).
#pragma once
#include "model/attention_gqa.h"
#include "model/index_branch.h"

namespace msa {

class AttentionMSA : public AttentionLayer {
 public:
  AttentionMSA(const std::string& prefix, LayerContext& ctx);
  const Tensor& forward(const Tensor& x) override;
  void backward(Tensor& dx, const Tensor& dout, const Tensor& x) override;
  void collect(ParamList& ps) override;
  MsaLayerStats msa_stats() const override { return stats_; }
  int64_t attended_pairs() const override { return main_.attended_pairs(); }
  const Tensor& selection() const { return sel_; }  // (B, Hkv, T, k)
  // The two branches, for reading the last forward's intermediate tensors (msatrain op msa writes them).
  const AttentionGQA& main_branch() const { return main_; }
  IndexBranch& index_branch() { return index_; }

 private:
  LayerContext& ctx_;
  AttentionGQA main_;
  IndexBranch index_;
  Tensor sel_;  // (B, Hkv, T, k) int32
  Tensor ki_all_;   // (B, key_seq, dI) with cp: the whole sequence's index keys, gathered
  Tensor dki_all_;  // (B, key_seq, dI) with cp: this rank's KL gradient of every index key, before the scatter
  MsaLayerStats stats_;
  double kl_grad_coef_ = 0;  // kl_coef * weights.kl / Hkv of the last forward
  ops::MsaIndexParams index_params() const;
};

}  // namespace msa
