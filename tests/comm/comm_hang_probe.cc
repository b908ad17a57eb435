// comm_hang_probe: runs tagged all-reduces on an MPI communicator wrapped by
// MaybeWrapWithFaults (LOCKSTEP_FAULT_INJECT) and waits on each with a deadline. On a
// time-out it prints the diagnostic and aborts the job (exit non-zero on every rank).
// A rank whose own collective was hung by fault injection behaves like a truly stuck
// rank: it waits to be killed by a peer's abort (bounded, in case none comes).
// Usage: mpirun -np 3 comm_hang_probe DEADLINE_MS [STEPS]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "runtime/comm/fault_injecting_communicator.h"
#include "runtime/comm/mpi_communicator.h"

using namespace lockstep::comm;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: comm_hang_probe DEADLINE_MS [STEPS [polled]]\n");
    return 2;
  }
  const int deadline_ms = std::atoi(argv[1]);
  const int steps = argc > 2 ? std::atoi(argv[2]) : 5;
  // "polled": tag the all-reduces caller_polls, as the overlapping DDP reducer does (they
  // are then issued and progressed on this thread instead of the comm thread).
  const bool polled = argc > 3 && std::string(argv[3]) == "polled";
  auto mpi = MpiCommunicator::Create("world");
  if (!mpi.ok()) {
    std::fprintf(stderr, "comm_hang_probe: %s\n", mpi.status().ToString().c_str());
    return 3;
  }
  auto comm = MaybeWrapWithFaults(std::move(mpi).value());
  if (!comm.ok()) {
    std::fprintf(stderr, "comm_hang_probe: %s\n", comm.status().ToString().c_str());
    return 3;
  }
  auto* faults = dynamic_cast<FaultInjectingCommunicator*>(comm->get());
  std::vector<float> grad(1024, 1.0f);
  for (int step = 1; step <= steps; ++step) {
    CollectiveTag tag{"grad_bucket", step, 0};
    tag.caller_polls = polled;
    auto handle = (*comm)->AllReduce(grad.data(), grad.size(), DataType::kFloat32, ReduceOp::kSum, tag);
    lockstep::Status status = handle->Wait(std::chrono::milliseconds(deadline_ms));
    if (status.ok()) continue;
    std::fprintf(stderr, "comm_hang_probe: rank %d: %s\n", (*comm)->rank(), status.ToString().c_str());
    std::fflush(stderr);
    if (faults != nullptr && faults->spec().rank == (*comm)->rank() &&
        faults->spec().action == FaultSpec::Action::kHang) {
      std::this_thread::sleep_for(std::chrono::seconds(20));  // a stuck rank: peers' abort ends it
    }
    (*comm)->Abort(status.message());
  }
  std::printf("comm_hang_probe: rank %d completed %d steps\n", (*comm)->rank(), steps);
  return 0;
}
