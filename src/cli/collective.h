// Running a phase on every rank and agreeing on failure, so that a bad config or a missing file on one rank
// stops all of them with one message instead of leaving the others blocked in a collective.
#pragma once
#include <functional>
#include <string>

#include "comm/comm.h"

namespace msa {

struct CollectiveFailure {
  int exit_code;  // 2 for bad input, 1 otherwise
};

// Runs body on every rank. If any rank throws, the lowest failing rank prints its message to stderr and every
// rank throws CollectiveFailure.
void run_collectively(Comm& comm, const std::function<void()>& body);

// For the phase after setup, where ranks may fail alone: prints the error with the rank and aborts the job
// (MPI_Abort) when there is more than one rank. Returns the exit code for a single rank.
int fail_fast(Comm& comm, const std::exception& e);

}  // namespace msa
