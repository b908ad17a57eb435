// MpiRuntime: process-wide ownership of MPI_Init_thread / MPI_Finalize, plus the
// LS_MPI_CHECK macro that turns a failed MPI call into a Status naming the call, MPI's
// error string, the rank and the host. Acquire() is thread-safe.
//
// Where MPI_Finalize happens: every MpiCommunicator holds a shared_ptr<MpiRuntime>;
// when the last holder is destroyed, MPI_Finalize runs in that destructor (only if
// lockstep initialised MPI; if someone else did, they finalise it). Keep communicators
// in main()'s scope (not in static storage) so this happens before exit(). MPI cannot
// be re-initialised once finalised: a later Acquire() returns FailedPrecondition.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>

#include "common/status.h"

namespace lockstep::comm {

class MpiRuntime {
 public:
  // Initialises MPI on first use asking for MPI_THREAD_MULTIPLE; accepts
  // MPI_THREAD_SERIALIZED or better (the comm thread is then the only MPI caller while
  // a collective runs; deadline diagnostics cannot name missing ranks).
  static Result<std::shared_ptr<MpiRuntime>> Acquire();
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  int thread_level() const { return thread_level_; }
  bool thread_multiple() const { return thread_level_ >= MPI_THREAD_MULTIPLE; }

 private:
  MpiRuntime(int thread_level, bool owns) : thread_level_(thread_level), owns_(owns) {}
  int thread_level_;
  bool owns_;  // lockstep called MPI_Init_thread, so it calls MPI_Finalize
};

// "MPI_Allreduce failed: <MPI error string> (error code 15) [rank 1/4 on host-a]".
std::string MpiErrorMessage(const char* call, int code);

}  // namespace lockstep::comm

// Returns an Internal Status from the enclosing function when the MPI call fails.
// The communicator must use MPI_ERRORS_RETURN (MpiCommunicator sets it) or MPI aborts
// before the check sees the code.
#define LS_MPI_CHECK(call)                                                                    \
  do {                                                                                        \
    int ls_mpi_rc_ = (call);                                                                  \
    if (ls_mpi_rc_ != MPI_SUCCESS) {                                                          \
      return ::lockstep::InternalError(std::string(__FILE__) + ":" + std::to_string(__LINE__) + \
                                       ": " + ::lockstep::comm::MpiErrorMessage(#call, ls_mpi_rc_)); \
    }                                                                                         \
  } while (0)
