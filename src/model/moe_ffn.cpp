#include "model/moe_ffn.h"

#include "comm/comm.h"
#include "config/load.h"
#include "ops/ops.h"
#include "ops/ops_moe.h"

namespace msa {
namespace {

// The routed experts this rank holds: ids [first, first + count).
std::pair<std::vector<std::string>, std::vector<int64_t>> local_experts(const std::string& prefix,
                                                                        const LayerContext& ctx) {
  const int64_t ep = ctx.ep_comm ? ctx.ep_comm->size() : 1, rank = ctx.ep_comm ? ctx.ep_comm->rank() : 0;
  const int64_t count = ctx.moe.n_experts / ep;
  MSA_CHECK(count * ep == ctx.moe.n_experts, ctx.moe.n_experts << " experts over " << ep << " ranks");
  std::vector<std::string> names;
  std::vector<int64_t> ids;
  for (int64_t e = rank * count; e < (rank + 1) * count; ++e) {
    names.push_back(prefix + ".experts." + std::to_string(e));
    ids.push_back(e);
  }
  return {names, ids};
}

}  // namespace

MoEFFN::MoEFFN(const std::string& prefix, LayerContext& ctx)
    : ctx_(ctx),
      cfg_(ctx.moe),
      router_(prefix + ".router", ctx.moe, ctx.rows(), ctx.cfg.d_model, ctx.dtype, ctx.device),
      experts_(local_experts(prefix, ctx).first, local_experts(prefix, ctx).second, ctx.cfg.d_model, ctx.moe.d_ff,
               ctx.dtype, ctx.device) {
  const int64_t n = ctx.rows(), c = ctx.cfg.d_model;
  if (cfg_.shared_experts > 0)
    shared_ = std::make_unique<ExpertSet>(std::vector<std::string>{prefix + ".shared"}, std::vector<int64_t>{-1}, c,
                                          cfg_.shared_experts * cfg_.d_ff, ctx.dtype, ctx.device);
  out_ = Tensor::zeros({n, c}, ctx.dtype, ctx.device);
  dgates_ = Tensor::zeros({n, cfg_.top_k}, ctx.stat_dtype(), ctx.device);  // the router's gates' dtype
  if (ctx.device != Device::cpu) idx_host_ = Tensor::zeros({n, cfg_.top_k}, DType::i32);
  if (!ctx.ep_exchange) ctx.ep_exchange = std::make_shared<RowExchange>(ctx.ep_comm);  // shared by the MoE layers
}

void MoEFFN::collect(ParamList& ps) {
  router_.collect(ps);
  if (shared_) shared_->collect(ps);
  experts_.collect(ps);
}

const Tensor& MoEFFN::forward(const Tensor& x) {
  const int64_t n = ctx_.rows(), c = ctx_.cfg.d_model, e = cfg_.n_experts, k = cfg_.top_k;
  const DType dt = ctx_.dtype;
  const Device dev = ctx_.device;
  weight_ = ctx_.weights.moe;
  router_.forward(x);
  if (dev == Device::cpu) {
    plan_ = plan_dispatch(router_.idx(), cfg_, ctx_.ep_comm);
  } else {
    idx_host_.copy_from(router_.idx());  // the plan is made on the host: it sizes the exchange
    plan_ = plan_dispatch(idx_host_, cfg_, ctx_.ep_comm);
  }
  const int64_t a = int64_t(plan_.token.size()), r = int64_t(plan_.expert_order.size());
  const std::vector<double> gates = router_.gates().to_vector();
  gate_of_row_.resize(size_t(a));
  for (int64_t i = 0; i < a; ++i) gate_of_row_[size_t(i)] = gates[size_t(plan_.slot[size_t(i)])];

  // Dispatch: gather this rank's rows in send order, exchange, reorder expert-major.
  Tensor send = grow_rows(send_buf_, a, c, dt, dev);
  Tensor recv = grow_rows(recv_buf_, r, c, dt, dev);
  xe_ = grow_rows(xe_buf_, r, c, dt, dev);
  ops::gather_rows(send, x, plan_.token);                                // (A, C)
  ctx_.ep_exchange->exchange(send, plan_.send_counts, recv, plan_.recv_counts);  // (R, C) by source rank
  ops::gather_rows(xe_, recv, plan_.expert_order);                       // (R, C) by local expert
  // Experts, then back: expert-major -> received order -> the source rank's send order.
  Tensor ye = grow_rows(ye_buf_, r, c, dt, dev);
  experts_.forward(ye, xe_, plan_.offsets);
  recv.zero_();
  ops::scatter_add_rows(recv, ye, plan_.expert_order);
  y_send_ = grow_rows(y_send_buf_, a, c, dt, dev);
  ctx_.ep_exchange->exchange(recv, plan_.recv_counts, y_send_, plan_.send_counts);
  // Combine: out[t] = shared(x)[t] + sum over t's kept slots of gate * expert output, slots in send order.
  if (shared_) {
    shared_->forward(out_, x, {0, n});
  } else {
    out_.zero_();
  }
  ops::scatter_add_rows(out_, y_send_, plan_.token, gate_of_row_);

  // Router losses. Load balancing in the Switch Transformer / GShard form, per micro-batch:
  //   aux = E sum_e f_e P_e,  f_e = routed_e / (N k) (before capacity; a constant),  P_e = mean_t s[t, e],
  // summed over tokens as N aux = E sum_e f_e sum_t s[t, e]. Router z-loss (ST-MoE): sum_t logsumexp(z_t)^2.
  const std::vector<double> s = router_.scores().to_vector(), lse = router_.lse().to_vector();
  stats_ = MoeLayerStats{};
  stats_.moe = true;
  stats_.routed.assign(plan_.routed.begin(), plan_.routed.end());
  stats_.assignments = double(n * k);
  stats_.dropped = double(plan_.dropped);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t i = 0; i < e; ++i)
      stats_.aux_sum += double(e) * (stats_.routed[size_t(i)] / double(n * k)) * s[size_t(t * e + i)];
    stats_.z_sum += lse[size_t(t)] * lse[size_t(t)];
  }
  stats_.objective = weight_ * (cfg_.aux_loss_coef * stats_.aux_sum + cfg_.z_loss_coef * stats_.z_sum);
  return out_;
}

void MoEFFN::backward(Tensor& dx, const Tensor& dout, const Tensor& x) {
  const int64_t n = ctx_.rows(), c = ctx_.cfg.d_model, e = cfg_.n_experts;
  const int64_t a = int64_t(plan_.token.size()), r = int64_t(plan_.expert_order.size());
  const DType dt = ctx_.dtype;
  const Device dev = ctx_.device;
  // Gates: d out[t] / d gate = the expert's output row.
  std::vector<double> dgate;
  ops::row_dots(dgate, dout, plan_.token, y_send_);
  std::vector<double> dg(size_t(dgates_.numel()), 0.0);  // dropped slots keep 0
  for (int64_t i = 0; i < a; ++i) dg[size_t(plan_.slot[size_t(i)])] = dgate[size_t(i)];
  dgates_.from_vector(dg);
  // Expert inputs: dy = gate * dout[t], sent the dispatch way, reordered expert-major.
  Tensor send = grow_rows(send_buf_, a, c, dt, dev);
  Tensor recv = grow_rows(recv_buf_, r, c, dt, dev);
  Tensor dye = grow_rows(ye_buf_, r, c, dt, dev);
  ops::gather_rows(send, dout, plan_.token, gate_of_row_);
  ctx_.ep_exchange->exchange(send, plan_.send_counts, recv, plan_.recv_counts);
  ops::gather_rows(dye, recv, plan_.expert_order);
  Tensor dxe = grow_rows(y_send_buf_, r, c, dt, dev);  // y_send_ is not needed any more (dgate is taken)
  experts_.backward(dxe, dye, xe_, plan_.offsets);
  recv.zero_();
  ops::scatter_add_rows(recv, dxe, plan_.expert_order);
  ctx_.ep_exchange->exchange(recv, plan_.recv_counts, send, plan_.send_counts);
  // dx = shared experts' dx + the routed rows' dx + the router's dx.
  if (shared_) {
    shared_->backward(dx, dout, x, {0, n});
  } else {
    dx.zero_();
  }
  ops::scatter_add_rows(dx, send, plan_.token);
  // d(weight * aux_coef * N aux)/d s[t, e] = weight * aux_coef * E * f_e for every token t.
  std::vector<double> aux_grad(static_cast<size_t>(e));
  for (int64_t i = 0; i < e; ++i)
    aux_grad[size_t(i)] = weight_ * cfg_.aux_loss_coef * double(e) * stats_.routed[size_t(i)] / stats_.assignments;
  router_.backward(dx, x, dgates_, aux_grad, weight_ * cfg_.z_loss_coef);
}

std::vector<ExpertTensor> global_expert_tensors(const ModelConfig& model, const MoeConfig& moe) {
  std::vector<ExpertTensor> out;
  if (model.ffn != "moe") return out;
  const std::vector<bool> dense = parse_layer_set(moe.dense_layers, model.n_layers, "moe.dense_layers");
  for (int64_t l = 0; l < model.n_layers; ++l) {
    if (dense[size_t(l)]) continue;
    for (int64_t e = 0; e < moe.n_experts; ++e) {
      const std::string p = "layers." + std::to_string(l) + ".ffn.experts." + std::to_string(e);
      out.push_back({p + ".w13", {2 * moe.d_ff, model.d_model}, e});
      out.push_back({p + ".w2", {model.d_model, moe.d_ff}, e});
    }
  }
  return out;
}

}  // namespace msa
