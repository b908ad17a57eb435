// Preemption signals (DESIGN decision 7): SIGUSR1 (Slurm's --signal=B:USR1@lead)
// and SIGTERM only set a flag here; the training loop all-reduces the flag at the
// next step boundary, so every rank saves and exits together with kExitRequeue.
// The handler is async-signal-safe (one lock-free atomic store).
#pragma once

namespace lockstep {

// Installs the handlers for SIGUSR1 and SIGTERM (idempotent).
void InstallPreemptionHandlers();
// The number of the first preemption signal received, 0 when none.
int PreemptionSignal();
// Forgets a received signal (tests).
void ClearPreemptionSignal();

}  // namespace lockstep
