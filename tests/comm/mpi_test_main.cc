// gtest main for tests run under mpirun: owns MPI (MpiRuntime), prints the normal
// report on rank 0 only, prints failed assertions of every other rank prefixed with
// its rank, and makes every rank return the same exit status (any rank failing fails all).
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

#include "common/check.h"
#include "runtime/comm/mpi_runtime.h"

namespace {

class FailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_, result.file_name() ? result.file_name() : "?",
                 result.line_number(), result.summary());
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  auto runtime = lockstep::comm::MpiRuntime::Acquire();
  LS_CHECK(runtime.ok()) << runtime.status().ToString();
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter(rank));
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0 && any_failed && !failed) std::fprintf(stderr, "FAILED on another rank (see [rank N] lines)\n");
  runtime->reset();  // the last holder: MPI_Finalize happens here
  return any_failed;
}
