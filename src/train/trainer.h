// The training loop: gradient accumulation over micro-batches, data-parallel gradient averaging, non-finite
// step skipping, global-norm clipping, AdamW, periodic validation, metrics and the progress line.
#pragma once
#include <array>
#include <chrono>
#include <memory>
#include <set>

#include "checkpoint/checkpointer.h"
#include "checkpoint/stop_signal.h"
#include "comm/comm.h"
#include "comm/process_grid.h"
#include "config/config.h"
#include "data/loader.h"
#include "model/context_parallel.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "train/gradient_reducer.h"
#include "train/metrics.h"

namespace msa {

struct StepStats {
  double loss = 0;        // the trained objective: lm_loss + kl_coef * (sum over MSA layers of their mean KL)
  double lm_loss = 0;     // mean token LM loss over the global batch
  double kl_loss = 0;     // mean KL per (token, group, MSA layer), before kl_coef (spec §4)
  double index_recall = -1;    // measured on this step (attention.recall_every), else -1
  double selected_share = -1;  // share of the causal keys inside the selected blocks
  double grad_norm = 0;        // backbone gradient norm before clipping
  double index_grad_norm = 0;  // Index Branch gradient norm before clipping
  double attn_imbalance = -1;  // context parallel: max / mean over ranks of the attended (query, group, key) triples
  double cp_comm_s = -1;       // context parallel: seconds this step in the key gather / gradient scatter (max over ranks)
  double cp_bytes_in = 0;      // context parallel: bytes one rank received for them this step
  double lr = 0;
  int64_t gpu_allocs = 0;  // device buffers allocated during the step (0 in the steady state)
  bool skipped = false;   // non-finite loss or gradient
  // MoE (model.ffn = moe), over the global batch and the MoE layers:
  double aux_loss = 0;        // mean over MoE layers of n_experts x sum_e f_e P_e, before moe.aux_loss_coef
  double z_loss = 0;          // mean over tokens and MoE layers of logsumexp(router logits)^2, before moe.z_loss_coef
  double dropped_share = 0;   // share of (token, expert) assignments dropped by the capacity limit
  std::vector<double> load_max_over_mean;  // per MoE layer: tokens of the busiest expert / mean tokens per expert
};

class Trainer {
 public:
  // Validates the layout against the world, opens the data, builds the model and writes run.dir/config.yaml.
  // Throws UserError on bad input (collective callers agree on failure; see cli). resume: "" (fresh start),
  // "auto" (the latest checkpoint of run.dir, fresh when there is none) or a checkpoint file.
  Trainer(const RunConfig& cfg, Comm& world, const std::string& resume = "");
  // Runs train.steps steps; returns the last validation loss.
  double run();

  // Pieces, public for tests.
  StepStats train_step(int64_t step);
  double evaluate();
  Transformer& model() { return *model_; }
  // The signal (SIGTERM, SIGINT) that stopped run() early after saving a checkpoint; 0 when it ran to the end.
  int stop_signal() const { return stop_signal_; }

 private:
  RunConfig cfg_;
  Comm& world_;
  ProcessGrid grid_;  // dp, cp, ep groups (see process_grid.h)
  std::unique_ptr<ContextParallel> cp_;  // when parallel.cp > 1: this rank's chunks of each sequence
  int64_t seqs_per_rank_ = 0, micro_steps_ = 0, global_tokens_ = 0;
  std::unique_ptr<TokenDataset> train_data_, val_data_;
  std::unique_ptr<WindowSampler> sampler_;
  std::unique_ptr<ValidationWindows> val_windows_;
  std::unique_ptr<Transformer> model_;
  std::unique_ptr<AdamW> optim_;
  std::unique_ptr<GradientReducer> reducer_;  // sums gradients over the ranks (gradient_reducer.h)
  Tensor tokens_, targets_;          // (micro_batch, tokens of a sequence this rank holds) int32 host batch
  Tensor tokens_dev_, targets_dev_;  // the same on the model's device (the host tensors themselves on the CPU)
  std::vector<int32_t> positions_;   // their global positions in the sequence (all of them without cp)
  void upload_batch();
  MetricsWriter metrics_;
  int64_t skipped_total_ = 0, skipped_in_a_row_ = 0;
  // Fault injection for the tests (environment, never config): MSATRAIN_INJECT_NAN_STEPS="3,4" makes those
  // 0-based steps' loss and one gradient NaN; MSATRAIN_INJECT_FAILURE="RANK:STEP" throws on one rank.
  std::set<int64_t> fault_nan_steps_;
  int fault_fail_rank_ = -1;
  long long fault_fail_step_ = -1;
  std::chrono::steady_clock::time_point start_;
  // Checkpoints (trainer_checkpoint.cpp).
  std::unique_ptr<Checkpointer> ckpt_;
  int64_t start_step_ = 0;  // the first step run() runs: 0, or the step of the checkpoint resumed from
  int stop_signal_ = 0;
  std::vector<Tensor> host_state_;  // GPU runs: host mirrors of model_state() for the checkpointer
  std::vector<StateTensor> model_state();    // masters and moments where they live
  std::vector<StateTensor> state_tensors();  // the same in host memory (what the checkpointer reads and writes)
  void state_to_host();
  void state_from_host();
  TrainProgress progress_after(int64_t steps_done) const;
  void restore(const std::string& resume);  // resume or model.init_from; sets start_step_
  // Saves when the step is periodic, the last one, or a stop signal arrived; true when run() must stop.
  bool checkpoint_after_step(int64_t steps_done, const StopSignals& signals,
                             std::chrono::steady_clock::time_point& last_log);

  void log_step(int64_t step, const StepStats& s, double tokens_per_s);
  bool is_msa() const { return cfg_.attention.type == "msa"; }
  bool is_moe() const { return cfg_.model.ffn == "moe"; }
  // Gradient norms of the backbone and index groups; experts' squares are summed over the ep group.
  std::array<double, 2> grad_norms();
  MsaPhase phase_at(int64_t step) const {
    return step < cfg_.attention.warmup_steps ? MsaPhase::warmup : MsaPhase::sparse;
  }
  std::string phase_name(int64_t step) const;
  bool is_root() const { return world_.rank() == 0; }
};

}  // namespace msa
