#include "model/transformer.h"

#include <algorithm>
#include <cmath>

#include "config/load.h"
#include "model/context_parallel.h"
#include "ops/ops.h"

namespace msa {

Transformer::Transformer(const ModelConfig& cfg, const AttentionConfig& attn, const MoeConfig& moe, DType dtype,
                         Device device, int64_t micro_batch, int64_t seq, Comm* ep_comm, ContextParallel* cp)
    : ctx_(cfg, attn, dtype, device, micro_batch, cp ? cp->local_len() : seq),
      embed_("embed.weight", {padded_vocab(cfg.vocab_size), cfg.d_model}, dtype, device, ParamKind::embedding),
      final_norm_("final_norm.weight", ctx_.rows(), cfg.d_model, cfg.norm_eps, dtype, device) {
  if (cp) {
    MSA_CHECK(cp->seq_len() == seq, "context parallel for sequences of " << cp->seq_len() << ", model of " << seq);
    ctx_.use_context_parallel(*cp);  // before the blocks: they size their key buffers by it
  }
  const int64_t n = ctx_.rows();
  ctx_.moe = moe;
  ctx_.ep_comm = ep_comm;
  const std::vector<bool> dense = parse_layer_set(attn.dense_layers, cfg.n_layers);
  const std::vector<bool> dense_ffn = parse_layer_set(moe.dense_layers, cfg.n_layers, "moe.dense_layers");
  for (int64_t l = 0; l < cfg.n_layers; ++l)
    blocks_.push_back(std::make_unique<Block>(int(l), ctx_, attn.type == "msa" && !dense[size_t(l)],
                                              cfg.ffn == "moe" && !dense_ffn[size_t(l)]));
  if (!cfg.tie_embeddings)
    head_ = Param("lm_head.weight", {padded_vocab(cfg.vocab_size), cfg.d_model}, dtype, device, ParamKind::matrix);
  x0_ = Tensor::zeros({n, cfg.d_model}, dtype, device);
  logits_ = Tensor::zeros({n, padded_vocab(cfg.vocab_size)}, dtype, device);
  losses_ = Tensor::zeros({n}, ctx_.stat_dtype(), device);
  d_res_ = Tensor::zeros({n, cfg.d_model}, dtype, device);

  params_.push_back(&embed_);
  for (auto& b : blocks_) b->collect(params_);
  final_norm_.collect(params_);
  if (!cfg.tie_embeddings) params_.push_back(&head_);
}

namespace {
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : s) h = (h ^ ch) * 0x100000001b3ull;
  return h;
}
}  // namespace

void Transformer::init_weights(Rng& rng) {
  const double std_ = ctx_.cfg.init_std;
  const double out_std = std_ / std::sqrt(2.0 * double(ctx_.cfg.n_layers));
  const uint64_t expert_seed = rng.state();
  for (Param* p : params_) {
    Rng expert_rng(splitmix64(expert_seed ^ fnv1a(p->name)));
    Rng& r = p->expert >= 0 ? expert_rng : rng;
    if (p->kind == ParamKind::norm) {
      p->assign(std::vector<double>(p->value.numel(), 1.0));
      continue;
    }
    const bool residual_out = p->name.ends_with(".wo") || p->name.ends_with(".w2");
    const double s = residual_out ? out_std : std_;
    std::vector<double> v(p->value.numel());
    for (double& x : v) x = s * r.normal();
    if (p == &embed_ || p == &head_)  // the padding rows beyond the vocabulary stay 0 (no token, no gradient)
      std::fill(v.begin() + ctx_.cfg.vocab_size * ctx_.cfg.d_model, v.end(), 0.0);
    p->assign(v);
  }
}

void Transformer::zero_grads() {
  for (Param* p : params_) p->grad.zero_();
}

int64_t Transformer::num_parameters() const {
  int64_t n = 0;
  for (const Param* p : params_) n += p->value.numel();
  return n;
}

ForwardStats Transformer::forward(const Tensor& tokens, const Tensor& targets, const LossWeights& weights) {
  const int64_t n = ctx_.rows();
  MSA_CHECK(tokens.numel() == n && targets.numel() == n,
            "micro-batch of " << tokens.numel() << " tokens, model built for " << n);
  tokens_ = tokens;
  ctx_.weights = weights;
  ops::embedding_forward(x0_, embed_.value, tokens);
  const Tensor* x = &x0_;
  for (auto& b : blocks_) x = &b->forward(*x);
  const Tensor& h = final_norm_.forward(*x);
  ops::gemm(logits_, h, false, head_weight().value, true);  // (N, V) = h W^T
  ops::cross_entropy(losses_, logits_, targets.view({n}), weights.lm, ctx_.cfg.vocab_size);
  ForwardStats st;
  st.lm_loss_sum = ops::sum(losses_);
  st.objective = weights.lm * st.lm_loss_sum;
  for (auto& b : blocks_) {
    st.attended_pairs += b->attended_pairs();
    const MsaLayerStats m = b->msa_stats();
    if (m.rows == 0) continue;
    ++st.msa_layers;
    st.msa.kl_sum += m.kl_sum;
    st.msa.recall_sum += m.recall_sum;
    st.msa.selected_share_sum += m.selected_share_sum;
    st.msa.rows += m.rows;
    st.msa.recall_measured = st.msa.recall_measured || m.recall_measured;
    st.objective += m.objective;
  }
  for (auto& b : blocks_) {
    MoeLayerStats m = b->moe_stats();
    if (!m.moe) continue;
    st.objective += m.objective;
    st.moe.push_back(std::move(m));
  }
  return st;
}

void Transformer::backward(const std::function<void(const ParamList&)>& grads_ready) {
  d_res_.zero_();
  if (ctx_.weights.lm != 0) {  // with no LM gradient (KL only) the residual stream's gradient stays zero
    // logits_ holds dlogits (N, V). h = final_norm(x_L):  dh = dlogits W;  dW += dlogits^T h
    Tensor& dh = ctx_.d_norm;
    ops::gemm(dh, logits_, false, head_weight().value, false);
    ops::gemm(head_weight().grad, logits_, true, final_norm_.out(), false, 1.0, 1.0);
    // The final norm's input is the last block's output (the embeddings when L = 0).
    final_norm_.backward(d_res_, dh, blocks_.empty() ? x0_ : blocks_.back()->out());
  }
  if (grads_ready) {
    ParamList done;
    final_norm_.collect(done);
    if (!ctx_.cfg.tie_embeddings) done.push_back(&head_);  // tied: the embedding's gradient is not final yet
    grads_ready(done);
  }
  for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) {
    (*it)->backward(d_res_);
    if (grads_ready) {
      ParamList done;
      (*it)->collect(done);
      grads_ready(done);
    }
  }
  ops::embedding_backward(embed_.grad, d_res_, tokens_);
}

}  // namespace msa
