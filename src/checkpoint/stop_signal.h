// Preemption: SIGTERM (Slurm, Kubernetes), SIGINT (Ctrl-C) and SIGUSR1 ask the run to stop cleanly. While a
// StopSignals object lives, these signals only record their number; the training loop polls pending() at the
// end of every step, the ranks agree (allreduce max, so one signalled rank is enough), save a checkpoint and
// return normally. A second signal ends the process at once: the handler is installed with SA_RESETHAND, so
// the default action is back after the first one.
//
// Under mpirun, send SIGUSR1 to mpirun: Open MPI forwards it to every rank and waits. A SIGTERM or SIGINT that
// mpirun receives is forwarded as SIGTERM too, but followed by SIGKILL after odls_base_sigkill_timeout seconds
// (1 by default), which may cut the save short (the previous checkpoint then stays the latest).
#pragma once
#include <signal.h>

namespace msa {

class StopSignals {
 public:
  StopSignals();   // installs the handlers and clears any earlier request
  ~StopSignals();  // restores the handlers that were there before
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // The number of the first signal received (SIGTERM, SIGINT or SIGUSR1), or 0.
  int pending() const;
  static const char* name(int signal);  // "SIGTERM"

 private:
  struct sigaction saved_term_ {}, saved_interrupt_ {}, saved_usr1_ {};  // the handlers before ours
};

}  // namespace msa
