// The trainer's side of checkpoints (checkpoint/checkpointer.h): what state it saves, how it resumes or starts
// from model.init_from, and the end-of-step hook that saves periodically, at the end, and on SIGTERM/SIGINT.
#include <algorithm>
#include <cstdio>

#include "train/trainer.h"

namespace msa {

std::vector<StateTensor> Trainer::model_state() {
  ParamList& ps = model_->params();
  std::vector<Tensor>& m = optim_->first_moments();
  std::vector<Tensor>& v = optim_->second_moments();
  std::vector<StateTensor> ts;
  for (Param* p : ps) ts.push_back({"params/" + p->name, &p->master});
  for (size_t i = 0; i < ps.size(); ++i) ts.push_back({"optim/m/" + ps[i]->name, &m[i]});
  for (size_t i = 0; i < ps.size(); ++i) ts.push_back({"optim/v/" + ps[i]->name, &v[i]});
  return ts;
}

// Checkpoints read and write host memory. On the CPU that is the model's own state; on the GPU, host mirrors
// (allocated on first use) that state_to_host() / state_from_host() copy through.
std::vector<StateTensor> Trainer::state_tensors() {
  std::vector<StateTensor> ts = model_state();
  if (cfg_.device == "cpu") return ts;
  if (host_state_.empty())
    for (const StateTensor& t : ts) host_state_.push_back(Tensor::empty(t.local->shape(), t.local->dtype()));
  for (size_t i = 0; i < ts.size(); ++i) ts[i].local = &host_state_[i];
  return ts;
}

void Trainer::state_to_host() {
  if (cfg_.device == "cpu") return;
  std::vector<StateTensor> dev = model_state(), host = state_tensors();
  for (size_t i = 0; i < dev.size(); ++i) host[i].local->copy_from(*dev[i].local);
}

void Trainer::state_from_host() {
  if (cfg_.device == "cpu") return;
  std::vector<StateTensor> dev = model_state(), host = state_tensors();
  for (size_t i = 0; i < dev.size(); ++i) dev[i].local->copy_from(*host[i].local);
  for (Param* p : model_->params()) p->sync_value();
}

TrainProgress Trainer::progress_after(int64_t steps_done) const {
  TrainProgress p;
  p.step = steps_done;
  p.samples_consumed = steps_done * seqs_per_rank_ * cfg_.parallel.dp;  // the sampler's next global index
  p.tokens_consumed = steps_done * global_tokens_;
  p.optimizer_steps = optim_->steps_taken();
  p.skipped_steps = skipped_total_;
  p.skipped_in_a_row = skipped_in_a_row_;
  return p;
}

void Trainer::restore(const std::string& resume) {
  ckpt_ = std::make_unique<Checkpointer>(cfg_, world_);
  if (!resume.empty()) {
    if (std::optional<Resumed> r = ckpt_->resume(resume, state_tensors())) {
      // The data order and the LR schedule are functions of the step; the rest of the state is restored here.
      const TrainProgress& p = r->progress;
      state_from_host();
      start_step_ = p.step;
      optim_->set_steps_taken(p.optimizer_steps);
      skipped_total_ = p.skipped_steps;
      skipped_in_a_row_ = p.skipped_in_a_row;
      if (is_root()) {
        trim_metrics(cfg_.run.dir + "/metrics.jsonl", p.step);
        if (!cfg_.model.init_from.empty())
          std::printf("msatrain: model.init_from (%s) is not used: the run resumes from its own checkpoint\n",
                      cfg_.model.init_from.c_str());
        if (p.step >= cfg_.train.steps)
          std::printf("msatrain: the checkpoint is at step %lld, train.steps is %lld: nothing left to train (raise "
                      "train.steps to go on)\n",
                      (long long)p.step, (long long)cfg_.train.steps);
        std::fflush(stdout);
      }
      return;
    }
  }
  if (cfg_.model.init_from.empty()) return;
  if (cfg_.device == "cpu") {
    init_params_from(cfg_.model.init_from, model_->params(), world_);
    return;
  }
  // On the GPU: load into host parameters of the same names and shapes, then copy the loaded ones over.
  std::vector<Param> host;
  ParamList host_list;
  for (const Param* p : model_->params()) host.emplace_back(p->name, p->master.shape(), p->master.dtype(), Device::cpu, p->kind);
  for (Param& p : host) host_list.push_back(&p);
  const std::vector<std::string> loaded = init_params_from(cfg_.model.init_from, host_list, world_);
  for (size_t i = 0; i < host.size(); ++i)
    if (std::find(loaded.begin(), loaded.end(), host[i].name) != loaded.end()) {
      model_->params()[i]->master.copy_from(host[i].master);
      model_->params()[i]->sync_value();
    }
}

bool Trainer::checkpoint_after_step(int64_t steps_done, const StopSignals& signals,
                                    std::chrono::steady_clock::time_point& last_log) {
  // One rank signalled is enough: every rank must stop after the same step.
  const int signal = int(world_.allreduce_max(double(signals.pending())));
  const bool last = steps_done == cfg_.train.steps;
  const bool periodic = cfg_.checkpoint.every > 0 && steps_done % cfg_.checkpoint.every == 0;
  if (!periodic && !last && signal == 0) return false;
  const auto t0 = std::chrono::steady_clock::now();
  state_to_host();
  const std::string path = ckpt_->save(progress_after(steps_done), state_tensors());
  last_log += std::chrono::steady_clock::now() - t0;  // keep save time out of tokens/s
  if (signal == 0 || last) return false;
  stop_signal_ = signal;
  if (is_root()) {
    std::printf("msatrain: stopped by %s after step %lld of %lld; saved %s. Run the same command with --resume auto "
                "to continue.\n",
                StopSignals::name(signal), (long long)steps_done, (long long)cfg_.train.steps, path.c_str());
    std::fflush(stdout);
  }
  return true;
}

}  // namespace msa
