// Process and machine facts used by metrics and thread defaults.
// All functions are thread-safe.
#pragma once

#include <cstdint>

namespace lockstep {

// Peak resident set size of this process in MiB (getrusage ru_maxrss).
double PeakRssMiB();
// Online CPU cores of this machine (at least 1).
int OnlineCores();
// Monotonic wall clock in seconds.
double NowSeconds();

}  // namespace lockstep
