#include "model/attention_msa.h"

#include "model/context_parallel.h"
#include "ops/ops.h"

namespace msa {

AttentionMSA::AttentionMSA(const std::string& prefix, LayerContext& ctx)
    : ctx_(ctx), main_(prefix, ctx), index_(prefix + ".index", ctx) {
  sel_ = Tensor::zeros({ctx.batch, ctx.cfg.n_kv_heads, ctx.seq, ctx.attn.topk_blocks}, DType::i32, ctx.device);
  if (ctx.cp) {
    ki_all_ = Tensor::zeros({ctx.batch, ctx.key_seq, ctx.attn.index_head_dim}, ctx.dtype, ctx.device);
    dki_all_ = Tensor::zeros({ctx.batch, ctx.key_seq, ctx.attn.index_head_dim}, ctx.dtype, ctx.device);
  }
}

void AttentionMSA::collect(ParamList& ps) {
  main_.collect(ps);
  index_.collect(ps);
}

ops::MsaIndexParams AttentionMSA::index_params() const {
  const auto& a = ctx_.attn;
  return ops::MsaIndexParams{a.block_size, a.topk_blocks, a.sink_blocks, a.force_local, a.score_pool == "mean"};
}

const Tensor& AttentionMSA::forward(const Tensor& x) {
  const bool sparse = ctx_.phase == MsaPhase::sparse;
  index_.forward(x);
  // With cp, the index keys of the whole sequence (gather keys): block ids and scores are global.
  if (ctx_.cp) ctx_.cp->gather_keys(ki_all_, index_.ki());
  const Tensor& ki = ctx_.cp ? ki_all_ : index_.ki();
  Tensor& dki = ctx_.cp ? dki_all_ : index_.dki();
  ops::msa_select(sel_, index_.qi(), ki, ctx_.positions, ctx_.key_positions, index_params());
  const Tensor& out = main_.forward(x, sparse ? ops::BlockSelection{&sel_, ctx_.attn.block_size}
                                              : ops::BlockSelection{});
  // KL loss (spec §4): the gradient is prepared now, since the teacher is already known.
  kl_grad_coef_ = ctx_.attn.kl_coef * ctx_.weights.kl / double(ctx_.cfg.n_kv_heads);
  stats_ = MsaLayerStats{};
  if (ctx_.weights.kl != 0 || ctx_.measure_recall) {
    dki.zero_();
    auto r = ops::msa_index_kl(index_.dqi(), dki, index_.qi(), ki, main_.q(), main_.k(), main_.lse(), sel_, sparse,
                               ctx_.positions, ctx_.key_positions, index_params(), main_.scale(), kl_grad_coef_,
                               ctx_.measure_recall);
    stats_ = MsaLayerStats{r.kl_sum, r.recall_sum, r.selected_share_sum, r.rows, ctx_.measure_recall,
                           kl_grad_coef_ * r.kl_sum};
  }
  return out;
}

void AttentionMSA::backward(Tensor& dx, const Tensor& dout, const Tensor& x) {
  main_.backward(dx, dout, x);  // LM gradient: q, k, v and the backbone, never the Index Branch
  if (kl_grad_coef_ == 0) return;
  // With cp, every rank holds KL gradients for every index key: sum them into the owners' rows (scatter key
  // grads). kl_grad_coef_ is the same on every rank of the group, so all of them take part.
  if (ctx_.cp) ctx_.cp->scatter_key_grads(index_.dki(), dki_all_);
  index_.backward(x, ctx_.attn.detach_index_input ? nullptr : &dx);
}

}  // namespace msa
