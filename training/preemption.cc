#include "training/preemption.h"

#include <atomic>
#include <csignal>

namespace lockstep {
namespace {

std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs a lock-free flag");

extern "C" void OnPreemptionSignal(int signo) {
  int expected = 0;
  g_signal.compare_exchange_strong(expected, signo);
}

}  // namespace

void InstallPreemptionHandlers() {
  struct sigaction action {};
  action.sa_handler = OnPreemptionSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // a signal must not fail a read() or an MPI wait
  sigaction(SIGUSR1, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

int PreemptionSignal() { return g_signal.load(); }

void ClearPreemptionSignal() { g_signal.store(0); }

}  // namespace lockstep
