// Optional per-op GPU time accounting: with MSATRAIN_PROFILE_OPS=1 in the environment every GPU op records a pair
// of CUDA events on the compute stream under a name (GEMMs by shape), and profile_report() sums them into a
// table: where one run's GPU time went (after the first step). Off by default (no events, no cost beyond one
// branch).
#pragma once
#include <string>

namespace msa::cuda {

class OpScope {
 public:
  explicit OpScope(const char* name);
  OpScope(const std::string& name);
  ~OpScope();
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  int slot_ = -1;  // -1: profiling off
};

bool profiling_enabled();
// Forgets what was recorded so far (the trainer calls it after the first step: plan building and GEMM tuning).
void profile_reset();
// Waits for the stream, then the table: op, calls, total ms, share; sorted by total time. "" when off.
std::string profile_report();

}  // namespace msa::cuda
