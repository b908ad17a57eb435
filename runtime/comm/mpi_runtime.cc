#include "runtime/comm/mpi_runtime.h"

#include <mutex>

#include "common/log.h"
#include "common/process_identity.h"

namespace lockstep::comm {
namespace {
std::mutex g_mu;
std::weak_ptr<MpiRuntime> g_runtime;
}  // namespace

Result<std::shared_ptr<MpiRuntime>> MpiRuntime::Acquire() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (auto existing = g_runtime.lock()) return existing;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return FailedPreconditionError("MPI was already finalised in this process; it cannot be re-initialised");
  int initialized = 0;
  MPI_Initialized(&initialized);
  int provided = MPI_THREAD_SINGLE;
  bool owns = false;
  if (!initialized) {
    int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
    if (rc != MPI_SUCCESS) return InternalError(MpiErrorMessage("MPI_Init_thread", rc));
    owns = true;
  } else {
    MPI_Query_thread(&provided);
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    return FailedPreconditionError("MPI provides thread level " + std::to_string(provided) +
                                   ", lockstep needs at least MPI_THREAD_SERIALIZED (its collectives run on a "
                                   "communication thread); initialise MPI with MPI_Init_thread");
  }
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  SetProcessRank(rank, size);
  std::shared_ptr<MpiRuntime> runtime(new MpiRuntime(provided, owns));
  g_runtime = runtime;
  return runtime;
}

MpiRuntime::~MpiRuntime() {
  if (!owns_) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

std::string MpiErrorMessage(const char* call, int code) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
  std::string call_name(call);
  size_t paren = call_name.find('(');
  if (paren != std::string::npos) call_name.resize(paren);
  return call_name + " failed: " + std::string(text, length) + " (error code " + std::to_string(code) + ") [" +
         ProcessDescription() + "]";
}

}  // namespace lockstep::comm
