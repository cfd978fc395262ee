#include "train/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <sstream>

#include "config/load.h"
#include "core/device.h"
#include "model/moe_dispatch.h"
#include "ops/ops.h"
#include "optim/lr_schedule.h"

namespace msa {
namespace {

std::set<int64_t> parse_fault_steps() {
  std::set<int64_t> steps;
  if (const char* env = std::getenv("MSATRAIN_INJECT_NAN_STEPS")) {
    std::stringstream ss(env);
    std::string item;
    while (std::getline(ss, item, ','))
      if (!item.empty()) steps.insert(std::stoll(item));
  }
  return steps;
}

// StepStats' MoE fields from the world's sums: aux sum, z sum, dropped, assignments, then per MoE layer the
// assignments routed to each of the `experts` experts.
void set_moe_stats(StepStats& s, const std::vector<double>& sums, int64_t experts, int64_t global_tokens) {
  const size_t e = size_t(experts);
  const double layers = double((sums.size() - 4) / e);  // 0 when moe.dense_layers names every layer
  s.aux_loss = layers > 0 ? sums[0] / (double(global_tokens) * layers) : 0.0;
  s.z_loss = layers > 0 ? sums[1] / (double(global_tokens) * layers) : 0.0;
  s.dropped_share = sums[3] > 0 ? sums[2] / sums[3] : 0.0;
  for (size_t at = 4; at < sums.size(); at += e) {
    const double total = std::accumulate(sums.begin() + long(at), sums.begin() + long(at + e), 0.0);
    const double busiest = *std::max_element(sums.begin() + long(at), sums.begin() + long(at + e));
    s.load_max_over_mean.push_back(total > 0 ? busiest / (total / double(experts)) : 0.0);
  }
}

}  // namespace

namespace {
// The world, after checking that the config's layout fits it (a UserError naming the keys otherwise).
Comm& validated_world(const RunConfig& cfg, Comm& world) {
  validate_layout(cfg, world.size());
  return world;
}
}  // namespace

Trainer::Trainer(const RunConfig& cfg, Comm& world, const std::string& resume)
    : cfg_(cfg),
      world_(validated_world(cfg, world)),
      grid_(world, int(cfg.parallel.dp), int(cfg.parallel.cp), int(cfg.parallel.ep)) {
  const auto& m = cfg_.model;
  const auto& t = cfg_.train;
  const int64_t seqs_per_step = t.batch_tokens / m.seq_len;
  seqs_per_rank_ = seqs_per_step / cfg_.parallel.dp;
  MSA_USER_CHECK(seqs_per_rank_ % t.micro_batch == 0,
                 "train.batch_tokens / model.seq_len = " << seqs_per_step << " sequences per step give "
                                                         << seqs_per_rank_ << " per data-parallel rank (parallel.dp = "
                                                         << cfg_.parallel.dp << "), not a multiple of train.micro_batch ("
                                                         << t.micro_batch << ")");
  micro_steps_ = seqs_per_rank_ / t.micro_batch;
  global_tokens_ = seqs_per_step * m.seq_len;

  train_data_ = std::make_unique<TokenDataset>(cfg_.data.dir, "train");
  val_data_ = std::make_unique<TokenDataset>(cfg_.data.dir, "val");
  MSA_USER_CHECK(train_data_->vocab_size() <= m.vocab_size,
                 cfg_.data.dir << " was tokenized with a vocabulary of " << train_data_->vocab_size()
                               << " ids, larger than model.vocab_size = " << m.vocab_size);
  sampler_ = std::make_unique<WindowSampler>(*train_data_, m.seq_len, static_cast<uint64_t>(cfg_.run.seed));
  val_windows_ = std::make_unique<ValidationWindows>(*val_data_, m.seq_len, cfg_.eval.sequences);

  const Device device = parse_device(cfg_.device);
  if (device == Device::cuda) {
    const std::string gpu = bind_gpu();
    if (is_root()) std::printf("msatrain: rank 0 on %s\n", gpu.c_str());
  }
  // Every rank must take the same path (NCCL's setup is a collective): NCCL only if all ranks can.
  const bool nccl_here = device == Device::cuda && nccl_usable(world_.size());
  const bool nccl = world_.allreduce_min(nccl_here ? 1 : 0) == 1;
  if (grid_.cp_size() > 1) {
    cp_ = std::make_unique<ContextParallel>(grid_.cp(), m.seq_len, nccl);
    if (is_root() && cp_->uses_nccl()) std::printf("msatrain: context parallel keys gathered over NCCL\n");
    positions_ = cp_->local_positions();
  } else {
    positions_ = cp_local_positions(m.seq_len, 1, 0);  // the whole sequence
  }
  Comm* ep_comm = m.ffn == "moe" ? &grid_.ep() : nullptr;  // MoE layers exchange tokens over the ep group
  model_ = std::make_unique<Transformer>(m, cfg_.attention, cfg_.moe, compute_dtype(device), device, t.micro_batch,
                                         m.seq_len, ep_comm, cp_.get());
  Rng init_rng(static_cast<uint64_t>(cfg_.run.seed));
  model_->init_weights(init_rng);
  optim_ = std::make_unique<AdamW>(model_->params(), t);
  reducer_ = std::make_unique<GradientReducer>(model_->params(), world_, grid_.ep_dp(), nccl);
  if (is_root() && reducer_->uses_nccl()) std::printf("msatrain: gradients summed with NCCL, overlapping the backward\n");
  // MoE rows over the ep group: NCCL on the same condition (every rank on its own GPU), else host-staged.
  if (nccl && grid_.ep().size() > 1 && model_->context().ep_exchange) {
    model_->context().ep_exchange->use_nccl();
    if (is_root()) std::printf("msatrain: MoE rows exchanged with NCCL over the ep group\n");
  }
  const int64_t local = int64_t(positions_.size());
  tokens_ = Tensor::zeros({t.micro_batch, local}, DType::i32);
  targets_ = Tensor::zeros({t.micro_batch, local}, DType::i32);
  tokens_dev_ = device == Device::cpu ? tokens_ : Tensor::zeros(tokens_.shape(), DType::i32, device);
  targets_dev_ = device == Device::cpu ? targets_ : Tensor::zeros(targets_.shape(), DType::i32, device);
  fault_nan_steps_ = parse_fault_steps();
  if (const char* env = std::getenv("MSATRAIN_INJECT_FAILURE")) {  // "RANK:STEP", 0-based step
    MSA_USER_CHECK(std::sscanf(env, "%d:%lld", &fault_fail_rank_, &fault_fail_step_) == 2,
                   "MSATRAIN_INJECT_FAILURE must be RANK:STEP, got '" << env << "'");
  }

  restore(resume);
  if (is_root()) {
    std::filesystem::create_directories(cfg_.run.dir);
    std::ofstream(cfg_.run.dir + "/config.yaml") << to_yaml(cfg_);
    metrics_.open(cfg_.run.dir + "/metrics.jsonl", start_step_ == 0);
  }
}

void Trainer::upload_batch() {
  if (tokens_dev_.raw() == tokens_.raw()) return;  // CPU: the model reads the host batch itself
  tokens_dev_.copy_from(tokens_);
  targets_dev_.copy_from(targets_);
}

std::string Trainer::phase_name(int64_t step) const {
  if (!is_msa()) return "dense";
  return phase_at(step) == MsaPhase::warmup ? "warmup" : "sparse";
}

StepStats Trainer::train_step(int64_t step) {
  StepStats s;
  s.lr = lr_at(step, cfg_.train);
  model_->zero_grads();
  model_->set_msa_phase(phase_at(step));
  if (cp_) cp_->take_traffic();  // count this step's traffic only (not the last evaluation's)
  const int64_t every = cfg_.attention.recall_every;
  // Measured on the first step, every `every` steps (1-based step % every == 0, so it lines up with log_every)
  // and on the last; run() logs every step that measured it.
  const bool recall_step =
      is_msa() && every > 0 && (step == 0 || (step + 1) % every == 0 || step + 1 == cfg_.train.steps);
  // Every token of the global batch weighs 1/global_tokens, whatever rank or micro-batch holds it.
  const double w = 1.0 / double(global_tokens_);
  const LossWeights weights{w, w, w};
  // The cp ranks of one dp slice load the same samples, each its own tokens of them.
  const int64_t first = step * seqs_per_rank_ * cfg_.parallel.dp + grid_.dp_index() * seqs_per_rank_;
  // sums: objective, lm loss, kl sum, kl rows, recall sum, recall rows, selected share sum
  double sums[7] = {0, 0, 0, 0, 0, 0, 0};
  // MoE: aux sum, z sum, dropped, assignments, then per MoE layer the tokens routed to each expert.
  std::vector<double> moe_sums;
  int64_t attended = 0;
  for (int64_t mb = 0; mb < micro_steps_; ++mb) {
    sampler_->load(first + mb * cfg_.train.micro_batch, tokens_, targets_, positions_);
    upload_batch();
    model_->set_measure_recall(recall_step && mb == 0);  // recall on a sample: the first micro-batch
    const ForwardStats f = model_->forward(tokens_dev_, targets_dev_, weights);
    // The last micro-batch's gradients are final block by block: their sums may start during its backward.
    const bool last_micro = mb + 1 == micro_steps_;
    model_->backward(last_micro ? [this](const ParamList& ps) { reducer_->ready(ps); }
                                : std::function<void(const ParamList&)>());
    sums[0] += f.objective;
    sums[1] += f.lm_loss_sum;
    sums[2] += f.msa.kl_sum;
    sums[3] += double(f.msa.rows);
    if (f.msa.recall_measured) sums[4] += f.msa.recall_sum, sums[5] += double(f.msa.rows);
    sums[6] += f.msa.selected_share_sum;
    moe_sums.resize(4 + f.moe.size() * size_t(cfg_.moe.n_experts), 0.0);
    for (size_t l = 0; l < f.moe.size(); ++l) {
      const MoeLayerStats& m = f.moe[l];
      moe_sums[0] += m.aux_sum, moe_sums[1] += m.z_sum, moe_sums[2] += m.dropped, moe_sums[3] += m.assignments;
      for (size_t e = 0; e < m.routed.size(); ++e) moe_sums[4 + l * m.routed.size() + e] += m.routed[e];
    }
    attended += f.attended_pairs;
  }
  if (fault_fail_rank_ == world_.rank() && fault_fail_step_ == step)
    MSA_CHECK(false, "injected failure on rank " << fault_fail_rank_ << " at step " << step + 1
                                                 << " (MSATRAIN_INJECT_FAILURE)");
  if (fault_nan_steps_.count(step) && grid_.dp().rank() == 0) {
    sums[0] = std::numeric_limits<double>::quiet_NaN();
    Tensor nan = Tensor::empty({1}, model_->params()[0]->grad.dtype());
    nan.from_vector({std::numeric_limits<double>::quiet_NaN()});
    Tensor first_grad = model_->params()[0]->grad.view({model_->params()[0]->grad.numel()}).slice(0, 1);
    first_grad.copy_from(nan);
  }
  // Sum the already-scaled gradients and the statistics over every rank (the dp slices and, within each, the cp
  // ranks that hold different tokens of the same sequences: dp x cp = the world); an expert's gradient over the
  // ranks holding that expert (each has the gradient of the tokens its ep group routed to it).
  reducer_->finish();
  world_.allreduce_sum(sums, 7);
  if (!moe_sums.empty()) {
    world_.allreduce_sum(moe_sums.data(), int64_t(moe_sums.size()));
    set_moe_stats(s, moe_sums, cfg_.moe.n_experts, global_tokens_);
  }
  if (cp_) {  // how evenly context parallel spread the attention work (see docs/context_parallel.md)
    const double mine = double(attended), most = world_.allreduce_max(mine);
    double total = mine;
    world_.allreduce_sum(&total, 1);
    s.attn_imbalance = total > 0 ? most / (total / double(world_.size())) : 1.0;
    const ContextParallel::Traffic traffic = cp_->take_traffic();
    s.cp_comm_s = world_.allreduce_max(traffic.seconds);
    s.cp_bytes_in = double(traffic.bytes_in);
  }
  s.loss = sums[0];
  s.lm_loss = sums[1] / double(global_tokens_);
  if (sums[3] > 0) {
    s.kl_loss = sums[2] / sums[3];
    s.selected_share = sums[6] / sums[3];
  }
  if (sums[5] > 0) s.index_recall = sums[4] / sums[5];
  const std::array<double, 2> norms = grad_norms();
  s.grad_norm = norms[0];
  s.index_grad_norm = norms[1];
  if (!std::isfinite(s.loss) || !std::isfinite(s.grad_norm) || !std::isfinite(s.index_grad_norm)) {
    s.skipped = true;
    ++skipped_total_;
    ++skipped_in_a_row_;
    MSA_USER_CHECK(skipped_in_a_row_ <= cfg_.train.max_bad_steps,
                   "stopping at step " << step + 1 << ": " << skipped_in_a_row_
                                       << " steps in a row had a non-finite loss or gradient (train.max_bad_steps = "
                                       << cfg_.train.max_bad_steps << "); lower train.lr or check the data");
    return s;
  }
  skipped_in_a_row_ = 0;
  // Each group is clipped to train.grad_clip on its own (see ParamGroup).
  const double clip = cfg_.train.grad_clip;
  auto clip_scale = [&](double norm) { return (clip > 0 && norm > clip) ? clip / (norm + 1e-6) : 1.0; };
  const bool frozen = is_msa() && cfg_.attention.freeze_backbone_in_warmup && phase_at(step) == MsaPhase::warmup;
  optim_->step(s.lr, {clip_scale(s.grad_norm), clip_scale(s.index_grad_norm)}, {!frozen, true});
  return s;
}

std::array<double, 2> Trainer::grad_norms() {
  std::vector<const Tensor*> grads[4];  // backbone, index; the experts' backbone, index
  for (const Param* p : model_->params()) grads[(p->expert >= 0 ? 2 : 0) + size_t(p->group)].push_back(&p->grad);
  double sq[4];
  for (size_t i = 0; i < 4; ++i) sq[i] = ops::sum_squares(grads[i]);  // one host round trip per list on the GPU
  // The ep group holds every expert once (and after the reduction over ep_dp every group holds the same).
  grid_.ep().allreduce_sum(sq + 2, 2);
  return {std::sqrt(sq[0] + sq[2]), std::sqrt(sq[1] + sq[3])};
}

double Trainer::evaluate() {
  // Windows are split over the dp slices; the cp ranks of a slice evaluate their tokens of the same windows.
  const int64_t count = val_windows_->count(), b = cfg_.train.micro_batch, ranks = grid_.dp_size();
  const int64_t per_rank = (count + ranks - 1) / ranks, local = tokens_.dim(1);
  const int64_t begin = std::min(count, grid_.dp_index() * per_rank), end = std::min(count, begin + per_rank);
  double sums[2] = {0, 0};  // loss sum, token count
  // Every rank runs the same number of forwards (MoE layers exchange tokens over the ep group): a rank whose
  // range is shorter runs padding windows with every target ignored.
  for (int64_t w = begin; w < begin + per_rank; w += b) {
    val_windows_->load(w, tokens_, targets_, positions_);
    // Rows beyond this rank's range belong to the next rank: ignore their targets.
    for (int64_t r = 0; r < b; ++r)
      if (w + r >= end) std::fill_n(targets_.data<int32_t>() + r * local, local, -1);
    upload_batch();
    sums[0] += model_->forward(tokens_dev_, targets_dev_, LossWeights{}).lm_loss_sum;
    for (int64_t i = 0; i < targets_.numel(); ++i) sums[1] += targets_.data<int32_t>()[i] >= 0;
  }
  world_.allreduce_sum(sums, 2);
  return sums[0] / std::max(sums[1], 1.0);
}

void Trainer::log_step(int64_t step, const StepStats& s, double tokens_per_s) {
  if (!is_root()) return;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const int64_t done = step + 1, total = cfg_.train.steps;
  const double eta = elapsed / double(done - start_step_) * double(total - done);
  JsonLine j;
  j.add("step", done).add("loss", s.loss).add("lm_loss", s.lm_loss).add("lr", s.lr).add("grad_norm", s.grad_norm);
  j.add("tokens_per_s", tokens_per_s).add("phase", phase_name(step)).add("skipped_steps", skipped_total_);
  if (is_msa()) {
    j.add("kl_loss", s.kl_loss).add("index_grad_norm", s.index_grad_norm).add("selected_share", s.selected_share);
    if (s.index_recall >= 0) j.add("index_recall", s.index_recall);
  }
  double busiest = 0;  // the largest per-layer load imbalance, for the progress line
  for (double v : s.load_max_over_mean) busiest = std::max(busiest, v);
  if (is_moe()) {
    j.add("aux_loss", s.aux_loss).add("z_loss", s.z_loss).add("dropped_token_share", s.dropped_share);
    j.add("expert_load_max_over_mean", s.load_max_over_mean);
  }
  if (s.attn_imbalance >= 0) j.add("attn_imbalance", s.attn_imbalance);
  if (s.cp_comm_s >= 0) j.add("cp_comm_s", s.cp_comm_s).add("cp_bytes_in", s.cp_bytes_in);
  if (cfg_.device == "cuda") {
    j.add("gpu_mem_gib", device_memory_used_gib(Device::cuda)).add("gpu_arena_gib", device_arena_gib(Device::cuda));
    j.add("gpu_allocs", s.gpu_allocs);
  }
  j.add("elapsed_s", elapsed);
  metrics_.write(j);
  std::string msa;
  if (is_msa()) {
    char buf[96];
    std::snprintf(buf, sizeof buf, " | %s kl %.4f", phase_name(step).c_str(), s.kl_loss);
    msa = buf;
    if (s.index_recall >= 0) {
      std::snprintf(buf, sizeof buf, " recall %.3f", s.index_recall);
      msa += buf;
    }
  }
  if (is_moe()) {
    char buf[128];
    std::snprintf(buf, sizeof buf, " | aux %.3f z %.3f load %.2f", s.aux_loss, s.z_loss, busiest);
    msa += buf;
    if (s.dropped_share > 0) {
      std::snprintf(buf, sizeof buf, " dropped %.3f", s.dropped_share);
      msa += buf;
    }
  }
  std::printf("step %*lld/%lld | loss %.4f%s | lr %.2e | grad %.3f | %.1fk tok/s | elapsed %s | eta %s%s\n",
              int(std::to_string(total).size()), (long long)done, (long long)total, s.lm_loss, msa.c_str(), s.lr,
              s.grad_norm, tokens_per_s / 1000.0, format_duration(elapsed).c_str(), format_duration(eta).c_str(),
              s.skipped ? " | SKIPPED (non-finite)" : "");
  std::fflush(stdout);
}

double Trainer::run() {
  // Expert parallel holds n_experts / ep of the routed experts per rank: count each expert once.
  double params[2] = {0, 0};  // held by every rank, routed experts held here
  for (const Param* p : model_->params()) params[p->expert >= 0] += double(p->value.numel());
  grid_.ep().allreduce_sum(params + 1, 1);
  if (is_root()) {
    std::printf("msatrain: %lld parameters, %d rank(s), %lld tokens per step (%lld micro-batches of %lld x %lld per "
                "rank%s), run dir %s\n",
                (long long)(params[0] + params[1]), world_.size(), (long long)global_tokens_, (long long)micro_steps_,
                (long long)cfg_.train.micro_batch, (long long)tokens_.dim(1),
                cp_ ? (", each sequence split over cp = " + std::to_string(cp_->size()) + " ranks").c_str() : "",
                cfg_.run.dir.c_str());
    std::fflush(stdout);
  }
  start_ = std::chrono::steady_clock::now();
  auto last_log = start_;
  int64_t tokens_since_log = 0;
  double val_loss = std::numeric_limits<double>::quiet_NaN();
  StopSignals signals;  // SIGTERM/SIGINT: finish the step, save, return
  const Device device = parse_device(cfg_.device);
  for (int64_t step = start_step_; step < cfg_.train.steps; ++step) {
    const int64_t allocs_before = device_allocation_count(device);
    StepStats s = train_step(step);
    s.gpu_allocs = device_allocation_count(device) - allocs_before;
    if (step == start_step_) device_profile_reset();  // the op table covers the steady state only
    tokens_since_log += global_tokens_;
    const bool last = step + 1 == cfg_.train.steps;
    if ((step + 1) % cfg_.train.log_every == 0 || last || s.skipped || s.index_recall >= 0) {
      auto now = std::chrono::steady_clock::now();
      const double dt = std::chrono::duration<double>(now - last_log).count();
      log_step(step, s, dt > 0 ? double(tokens_since_log) / dt : 0.0);
      last_log = now;
      tokens_since_log = 0;
    }
    if ((cfg_.eval.every > 0 && (step + 1) % cfg_.eval.every == 0) || last) {
      auto t0 = std::chrono::steady_clock::now();
      val_loss = evaluate();
      if (is_root()) {
        metrics_.write(JsonLine().add("step", step + 1).add("val_loss", val_loss));
        std::printf("step %lld | val_loss %.4f\n", (long long)(step + 1), val_loss);
        std::fflush(stdout);
      }
      last_log += std::chrono::steady_clock::now() - t0;  // keep eval time out of tokens/s
    }
    if (checkpoint_after_step(step + 1, signals, last_log)) break;
  }
  const std::string profile = device_profile_report();
  if (is_root() && !profile.empty()) std::printf("%s", profile.c_str());
  return val_loss;
}

}  // namespace msa
