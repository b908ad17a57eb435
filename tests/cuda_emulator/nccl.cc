// The emulated NCCL (include/nccl.h says what it models and checks). Data moves over
// MPI at the call, in issue order, so ranks that issue the same collectives in the same
// order (as NCCL requires) cannot deadlock here either. MPI communicators are never
// freed: MPI_Comm_free is collective, and NCCL's destroy and abort are local.
#include <mpi.h>
#include <nccl.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "tests/cuda_emulator/runtime_internal.h"

struct ncclComm {
  int nranks = 1;
  int rank = 0;
  MPI_Comm mpi = MPI_COMM_NULL;  // more than one rank
  bool blocking = true;
  int pending_polls = 0;  // ncclInProgress answers of ncclCommGetAsyncError still due
  bool finalized = false;
};

namespace {

thread_local std::string last_error;

ncclResult_t Refuse(ncclResult_t result, const char* call, const std::string& why) {
  last_error = std::string(call) + ": " + why;
  std::fprintf(stderr, "lsemu NCCL: %s\n", last_error.c_str());
  return result;
}

void RequireLive(const ncclComm* comm, const char* call) { lsemu::RequireHandle(comm, call, "communicator"); }

ncclComm* Register(ncclComm* comm) {
  lsemu::RegisterHandle(comm);
  return comm;
}

void Forget(ncclComm* comm) {
  lsemu::ForgetHandle(comm);
  delete comm;
}

// A non-blocking communicator's call returns ncclInProgress and is "through" after
// one ncclInProgress answer of ncclCommGetAsyncError.
ncclResult_t Started(ncclComm* comm) {
  if (comm->blocking) return ncclSuccess;
  comm->pending_polls = 1;
  return ncclInProgress;
}

ncclResult_t RequireReady(ncclComm* comm, const char* call) {
  RequireLive(comm, call);
  if (comm->finalized) return Refuse(ncclInvalidUsage, call, "communicator already finalised");
  if (comm->pending_polls > 0) {
    return Refuse(ncclInvalidUsage, call,
                  "communicator not ready: poll ncclCommGetAsyncError until it is no longer "
                  "ncclInProgress");
  }
  return ncclSuccess;
}

size_t SizeOf(ncclDataType_t t) {
  switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: return 0;  // half types: not emulated
  }
}

MPI_Datatype MpiType(ncclDataType_t t) {
  switch (t) {
    case ncclInt8: return MPI_INT8_T;
    case ncclUint8: return MPI_UINT8_T;
    case ncclInt32: return MPI_INT32_T;
    case ncclUint32: return MPI_UINT32_T;
    case ncclInt64: return MPI_INT64_T;
    case ncclUint64: return MPI_UINT64_T;
    case ncclFloat32: return MPI_FLOAT;
    case ncclFloat64: return MPI_DOUBLE;
    default: return MPI_DATATYPE_NULL;
  }
}

MPI_Op MpiOp(ncclRedOp_t op) {
  switch (op) {
    case ncclSum: return MPI_SUM;
    case ncclProd: return MPI_PROD;
    case ncclMax: return MPI_MAX;
    case ncclMin: return MPI_MIN;
    default: return MPI_OP_NULL;  // ncclAvg: not emulated
  }
}

enum class Kind { kAllReduce, kBroadcast, kReduce, kAllGather, kReduceScatter };

struct Collective {
  const char* call;
  Kind kind;
  const void* send;
  void* recv;
  size_t count;  // the per-rank count NCCL's call takes
  ncclDataType_t type;
  ncclRedOp_t op;
  int root;
  ncclComm* comm;
  cudaStream_t stream;
};

// Elements the send and receive buffers must hold on this rank (0: not used here).
size_t SendCount(const Collective& c) {
  switch (c.kind) {
    case Kind::kBroadcast: return c.comm->rank == c.root ? c.count : 0;
    case Kind::kReduceScatter: return c.count * static_cast<size_t>(c.comm->nranks);
    default: return c.count;
  }
}
size_t RecvCount(const Collective& c) {
  switch (c.kind) {
    case Kind::kReduce: return c.comm->rank == c.root ? c.count : 0;
    case Kind::kAllGather: return c.count * static_cast<size_t>(c.comm->nranks);
    default: return c.count;
  }
}

ncclResult_t Check(const Collective& c) {
  if (const ncclResult_t r = RequireReady(c.comm, c.call); r != ncclSuccess) return r;
  if (SizeOf(c.type) == 0) return Refuse(ncclInvalidArgument, c.call, "data type not emulated");
  const bool reduces = c.kind == Kind::kAllReduce || c.kind == Kind::kReduce || c.kind == Kind::kReduceScatter;
  if (reduces && MpiOp(c.op) == MPI_OP_NULL) return Refuse(ncclInvalidArgument, c.call, "reduction not emulated");
  if ((c.kind == Kind::kBroadcast || c.kind == Kind::kReduce) && (c.root < 0 || c.root >= c.comm->nranks)) {
    return Refuse(ncclInvalidArgument, c.call, "root " + std::to_string(c.root) + " out of range");
  }
  const size_t elem = SizeOf(c.type);
  const struct {
    const char* name;
    const void* ptr;
    size_t count;
  } buffers[] = {{"send buffer", c.send, SendCount(c)}, {"receive buffer", c.recv, RecvCount(c)}};
  for (const auto& b : buffers) {
    if (b.count == 0) continue;
    if (b.ptr == nullptr) return Refuse(ncclInvalidArgument, c.call, std::string("null ") + b.name);
    if (!lsemu::InOneAllocation(b.ptr, b.count * elem)) {
      return Refuse(ncclInvalidArgument, c.call,
                    std::string(b.name) + " (" + std::to_string(b.count * elem) +
                        " bytes) is not inside one block from cudaMalloc (" +
                        lsemu::Name(lsemu::Locate(b.ptr)) + ")");
    }
  }
  return ncclSuccess;
}

// Reads the inputs as the stream may see them, exchanges them, queues the result. An
// empty operation queued on the stream, not cudaStreamSynchronize, marks where the
// collective stands: a new operation on a blocking stream also waits for the legacy
// stream's earlier work, which the stream's queued work alone may not.
void Run(const Collective& c) {
  lsemu::CompleteUpTo(c.stream, lsemu::Enqueue(c.stream, [] {}));
  const size_t elem = SizeOf(c.type);
  std::vector<char> in(SendCount(c) * elem), out(RecvCount(c) * elem);
  if (!in.empty()) std::memcpy(in.data(), c.send, in.size());
  // MPI takes int counts; NCCL's are size_t. Past INT_MAX the emulator cannot
  // exchange the buffer in one call: it says so rather than send a truncated count.
  if (c.comm->nranks > 1 && c.count > static_cast<size_t>(std::numeric_limits<int>::max())) {
    lsemu::Die(std::string(c.call) + ": " + std::to_string(c.count) +
               " elements per rank; the emulator's MPI exchange takes at most INT_MAX");
  }
  const int n = static_cast<int>(c.count);
  const MPI_Datatype type = MpiType(c.type);
  if (c.comm->nranks == 1) {
    if (!out.empty()) std::memcpy(out.data(), in.data(), out.size());
  } else {
    switch (c.kind) {
      case Kind::kAllReduce:
        MPI_Allreduce(in.data(), out.data(), n, type, MpiOp(c.op), c.comm->mpi);
        break;
      case Kind::kBroadcast:
        if (c.comm->rank == c.root) out = in;
        MPI_Bcast(out.data(), n, type, c.root, c.comm->mpi);
        break;
      case Kind::kReduce:
        MPI_Reduce(in.data(), out.empty() ? nullptr : out.data(), n, type, MpiOp(c.op), c.root, c.comm->mpi);
        break;
      case Kind::kAllGather:
        MPI_Allgather(in.data(), n, type, out.data(), n, type, c.comm->mpi);
        break;
      case Kind::kReduceScatter:
        MPI_Reduce_scatter_block(in.data(), out.data(), n, type, MpiOp(c.op), c.comm->mpi);
        break;
    }
  }
  if (out.empty()) return;
  void* recv = c.recv;
  lsemu::Enqueue(c.stream, [recv, out = std::move(out)] { std::memcpy(recv, out.data(), out.size()); });
}

thread_local int group_depth = 0;
thread_local std::vector<Collective> grouped;

ncclResult_t Issue(const Collective& c) {
  if (c.count == 0) return RequireReady(c.comm, c.call);
  if (const ncclResult_t r = Check(c); r != ncclSuccess) return r;
  if (group_depth > 0) {
    grouped.push_back(c);
    return ncclSuccess;
  }
  Run(c);
  return Started(c.comm);
}

ncclResult_t JoinWorld(ncclComm* comm, const ncclUniqueId& id, const char* call) {
  int initialised = 0, finalised = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  if (!initialised || finalised) {
    return Refuse(ncclSystemError, call, "the emulated NCCL carries data over MPI, which is not initialised");
  }
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world != comm->nranks) {
    return Refuse(ncclInvalidUsage, call,
                  "the emulated NCCL needs all of MPI_COMM_WORLD (" + std::to_string(world) +
                      " processes) in one communicator, not " + std::to_string(comm->nranks));
  }
  MPI_Comm_split(MPI_COMM_WORLD, 0, comm->rank, &comm->mpi);
  std::vector<char> ids(static_cast<size_t>(world) * NCCL_UNIQUE_ID_BYTES);
  MPI_Allgather(id.internal, NCCL_UNIQUE_ID_BYTES, MPI_BYTE, ids.data(), NCCL_UNIQUE_ID_BYTES, MPI_BYTE, comm->mpi);
  std::vector<int> ranks(static_cast<size_t>(world));
  MPI_Allgather(&comm->rank, 1, MPI_INT, ranks.data(), 1, MPI_INT, comm->mpi);
  for (int r = 0; r < world; ++r) {
    if (std::memcmp(ids.data() + static_cast<size_t>(r) * NCCL_UNIQUE_ID_BYTES, ids.data(), NCCL_UNIQUE_ID_BYTES) != 0) {
      return Refuse(ncclInvalidUsage, call, "the ranks passed different unique ids");
    }
    if (ranks[static_cast<size_t>(r)] != r) {
      return Refuse(ncclInvalidUsage, call, "the ranks passed are not 0.." + std::to_string(world - 1) + " once each");
    }
  }
  return ncclSuccess;
}

}  // namespace

const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError: return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
  }
}

const char* ncclGetLastError(ncclComm_t) { return last_error.c_str(); }

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  if (id == nullptr) return Refuse(ncclInvalidArgument, "ncclGetUniqueId", "null id");
  static std::mutex mutex;
  static std::mt19937_64 rng(std::random_device{}() ^ static_cast<uint64_t>(getpid()));
  std::lock_guard<std::mutex> lock(mutex);
  for (size_t i = 0; i < NCCL_UNIQUE_ID_BYTES; i += 8) {
    const uint64_t bits = rng();
    std::memcpy(id->internal + i, &bits, 8);
  }
  return ncclSuccess;
}

ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank,
                                    ncclConfig_t* config) {
  const char* call = "ncclCommInitRankConfig";
  if (comm == nullptr) return Refuse(ncclInvalidArgument, call, "null comm");
  *comm = nullptr;
  if (nranks < 1 || rank < 0 || rank >= nranks) {
    return Refuse(ncclInvalidArgument, call,
                  "rank " + std::to_string(rank) + " of " + std::to_string(nranks));
  }
  auto* c = new ncclComm();
  c->nranks = nranks;
  c->rank = rank;
  c->blocking = config == nullptr || config->blocking != 0;
  if (nranks > 1) {
    if (const ncclResult_t r = JoinWorld(c, id, call); r != ncclSuccess) {
      delete c;
      return r;
    }
  }
  *comm = Register(c);
  return Started(c);
}

ncclResult_t ncclCommSplit(ncclComm_t comm, int color, int key, ncclComm_t* newcomm, ncclConfig_t* config) {
  const char* call = "ncclCommSplit";
  if (const ncclResult_t r = RequireReady(comm, call); r != ncclSuccess) return r;
  if (newcomm == nullptr) return Refuse(ncclInvalidArgument, call, "null newcomm");
  if (color < 0) return Refuse(ncclInvalidArgument, call, "NCCL_SPLIT_NOCOLOR is not emulated");
  auto* c = new ncclComm();
  c->blocking = config == nullptr ? comm->blocking : config->blocking != 0;
  if (comm->nranks > 1) {
    MPI_Comm_split(comm->mpi, color, key, &c->mpi);
    MPI_Comm_rank(c->mpi, &c->rank);
    MPI_Comm_size(c->mpi, &c->nranks);
  }
  *newcomm = Register(c);
  Started(c);
  return Started(comm);
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* async_error) {
  RequireLive(comm, "ncclCommGetAsyncError");
  if (async_error == nullptr) return Refuse(ncclInvalidArgument, "ncclCommGetAsyncError", "null output");
  if (comm->pending_polls > 0) {
    --comm->pending_polls;
    *async_error = ncclInProgress;
  } else {
    *async_error = ncclSuccess;
  }
  return ncclSuccess;
}

ncclResult_t ncclCommFinalize(ncclComm_t comm) {
  if (const ncclResult_t r = RequireReady(comm, "ncclCommFinalize"); r != ncclSuccess) return r;
  comm->finalized = true;
  return Started(comm);
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (comm == nullptr) return ncclSuccess;
  RequireLive(comm, "ncclCommDestroy");
  if (comm->pending_polls > 0) {
    return Refuse(ncclInvalidUsage, "ncclCommDestroy", "finalisation still in progress: poll first");
  }
  Forget(comm);
  return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
  if (comm == nullptr) return ncclSuccess;
  RequireLive(comm, "ncclCommAbort");
  Forget(comm);
  return ncclSuccess;
}

ncclResult_t ncclGroupStart() {
  ++group_depth;
  return ncclSuccess;
}

ncclResult_t ncclGroupEnd() {
  if (group_depth == 0) return Refuse(ncclInvalidUsage, "ncclGroupEnd", "without ncclGroupStart");
  if (--group_depth > 0) return ncclSuccess;
  std::vector<Collective> calls;
  calls.swap(grouped);
  ncclResult_t result = ncclSuccess;
  for (const Collective& c : calls) Run(c);
  for (const Collective& c : calls) {
    if (Started(c.comm) == ncclInProgress) result = ncclInProgress;
  }
  return result;
}

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
  return Issue({"ncclAllReduce", Kind::kAllReduce, send, recv, count, type, op, 0, comm, stream});
}
ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, ncclDataType_t type, int root,
                           ncclComm_t comm, cudaStream_t stream) {
  return Issue({"ncclBroadcast", Kind::kBroadcast, send, recv, count, type, ncclSum, root, comm, stream});
}
ncclResult_t ncclReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                        int root, ncclComm_t comm, cudaStream_t stream) {
  return Issue({"ncclReduce", Kind::kReduce, send, recv, count, type, op, root, comm, stream});
}
ncclResult_t ncclAllGather(const void* send, void* recv, size_t send_count, ncclDataType_t type,
                           ncclComm_t comm, cudaStream_t stream) {
  return Issue({"ncclAllGather", Kind::kAllGather, send, recv, send_count, type, ncclSum, 0, comm, stream});
}
ncclResult_t ncclReduceScatter(const void* send, void* recv, size_t recv_count, ncclDataType_t type,
                               ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
  return Issue({"ncclReduceScatter", Kind::kReduceScatter, send, recv, recv_count, type, op, 0, comm, stream});
}
