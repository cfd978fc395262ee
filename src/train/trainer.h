// The training loop: gradient accumulation over micro-batches, data-parallel gradient averaging, non-finite
// step skipping, global-norm clipping, AdamW, periodic validation, metrics and the progress line.
#pragma once
#include <chrono>
#include <memory>
#include <set>

#include "comm/comm.h"
#include "config/config.h"
#include "data/loader.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "train/metrics.h"

namespace msa {

struct StepStats {
  double loss = 0;       // mean token loss over the global batch
  double grad_norm = 0;  // before clipping
  double lr = 0;
  bool skipped = false;  // non-finite loss or gradient
};

class Trainer {
 public:
  // Validates the layout against the world, opens the data, builds the model and writes run.dir/config.yaml.
  // Throws UserError on bad input (collective callers agree on failure; see cli).
  Trainer(const RunConfig& cfg, Comm& world);
  // Runs train.steps steps; returns the last validation loss.
  double run();

  // Pieces, public for tests.
  StepStats train_step(int64_t step);
  double evaluate();
  Transformer& model() { return *model_; }

 private:
  RunConfig cfg_;
  Comm& world_;
  Comm& dp_;  // the data-parallel group (the world while cp = 1)
  int64_t seqs_per_rank_ = 0, micro_steps_ = 0, global_tokens_ = 0;
  std::unique_ptr<TokenDataset> train_data_, val_data_;
  std::unique_ptr<WindowSampler> sampler_;
  std::unique_ptr<ValidationWindows> val_windows_;
  std::unique_ptr<Transformer> model_;
  std::unique_ptr<AdamW> optim_;
  Tensor tokens_, targets_;
  MetricsWriter metrics_;
  int64_t skipped_total_ = 0, skipped_in_a_row_ = 0;
  // Fault injection for the tests (environment, never config): MSATRAIN_INJECT_NAN_STEPS="3,4" makes those
  // 0-based steps' loss and one gradient NaN; MSATRAIN_INJECT_FAILURE="RANK:STEP" throws on one rank.
  std::set<int64_t> fault_nan_steps_;
  int fault_fail_rank_ = -1;
  long long fault_fail_step_ = -1;
  std::chrono::steady_clock::time_point start_;

  void log_step(int64_t step, const StepStats& s, double tokens_per_s);
  bool is_root() const { return world_.rank() == 0; }
};

}  // namespace msa
