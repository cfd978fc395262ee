// Preemption: SIGTERM (Slurm, Kubernetes, mpirun) and SIGINT (Ctrl-C) ask the run to stop cleanly. While a
// StopSignals object lives, both signals only record their number; the training loop polls pending() at the
// end of every step, the ranks agree (allreduce max, so one signalled rank is enough), save a checkpoint and
// return normally. A second signal ends the process at once: the handler is installed with SA_RESETHAND, so
// the default action is back after the first one.
#pragma once
#include <signal.h>

namespace msa {

class StopSignals {
 public:
  StopSignals();   // installs the handlers and clears any earlier request
  ~StopSignals();  // restores the handlers that were there before
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // The number of the first signal received (SIGTERM or SIGINT), or 0.
  int pending() const;
  static const char* name(int signal);  // "SIGTERM"

 private:
  struct sigaction saved_term_ {}, saved_interrupt_ {};  // the handlers before ours
};

}  // namespace msa
