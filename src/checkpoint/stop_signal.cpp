#include "checkpoint/stop_signal.h"

#include <csignal>

namespace msa {
namespace {

// The one piece of global state: a signal handler can reach nothing else. It is written only by the handler
// (an async-signal-safe store of a sig_atomic_t) and read by StopSignals::pending().
volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void record_stop_signal(int signal) { g_stop_signal = signal; }

}  // namespace

StopSignals::StopSignals() {
  g_stop_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = record_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;  // a second signal takes the default action: stop now
  sigaction(SIGTERM, &sa, &saved_term_);
  sigaction(SIGINT, &sa, &saved_interrupt_);
  sigaction(SIGUSR1, &sa, &saved_usr1_);
}

StopSignals::~StopSignals() {
  sigaction(SIGTERM, &saved_term_, nullptr);
  sigaction(SIGINT, &saved_interrupt_, nullptr);
  sigaction(SIGUSR1, &saved_usr1_, nullptr);
}

int StopSignals::pending() const { return g_stop_signal; }

const char* StopSignals::name(int signal) {
  switch (signal) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
    default: return "a signal";
  }
}

}  // namespace msa
