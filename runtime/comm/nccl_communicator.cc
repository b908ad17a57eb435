// NCCL communicator. Non-blocking NCCL communicators may answer any call with
// ncclInProgress; every such call is followed by WaitReady, which polls
// ncclCommGetAsyncError until the call is through, failed, or its deadline passed —
// so no NCCL call can block a thread past a deadline.
#include "runtime/comm/nccl_communicator.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <utility>

#include "common/check.h"
#include "common/log.h"
#include "common/process_identity.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device.h"

namespace lockstep::comm {
namespace {

using Clock = std::chrono::steady_clock;

std::string Here(const char* file, int line) {
  return std::string(file) + ":" + std::to_string(line) + ": [" + ProcessDescription() + "] ";
}

std::string NcclText(ncclResult_t r, ncclComm_t comm) {
  std::string text =
      std::string(ncclGetErrorString(r)) + " (ncclResult_t " + std::to_string(r) + ")";
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && *last != '\0') text += ": " + std::string(last);
  return text;
}

Status NcclError(const char* file, int line, const char* call, ncclResult_t r, ncclComm_t comm) {
  return InternalError(Here(file, line) + call + " failed: " + NcclText(r, comm) + " on " +
                       kernels::cuda::CurrentDeviceDescription());
}

}  // namespace

// Returns an Internal Status naming the call, file:line, rank, host and device when an
// NCCL call fails. ncclInProgress is not a failure (non-blocking communicators): the
// caller then WaitReady()s.
#define LS_NCCL_RETURN_IF_ERROR(call, comm)                             \
  do {                                                                  \
    const ncclResult_t ls_nccl_rc_ = (call);                            \
    if (ls_nccl_rc_ != ncclSuccess && ls_nccl_rc_ != ncclInProgress)    \
      return NcclError(__FILE__, __LINE__, #call, ls_nccl_rc_, (comm)); \
  } while (0)

namespace {

ncclDataType_t ToNccl(DataType dtype) {
  switch (dtype) {
    case DataType::kFloat32:
      return ncclFloat32;
    case DataType::kFloat64:
      return ncclFloat64;
    case DataType::kInt32:
      return ncclInt32;
    case DataType::kInt64:
      return ncclInt64;
    case DataType::kUint8:
      return ncclUint8;
  }
  LS_FATAL() << "unknown DataType " << static_cast<int>(dtype);
}

ncclRedOp_t ToNccl(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
  }
  LS_FATAL() << "unknown ReduceOp " << static_cast<int>(op);
}

// Polls until the communicator's pending (non-blocking) call is through.
Status WaitReady(ncclComm_t comm, Clock::time_point deadline, std::chrono::microseconds poll,
                 const std::string& what) {
  for (;;) {
    ncclResult_t async = ncclSuccess;
    LS_NCCL_RETURN_IF_ERROR(ncclCommGetAsyncError(comm, &async), comm);
    if (async == ncclSuccess) return Status::Ok();
    if (async != ncclInProgress) {
      return InternalError("[" + ProcessDescription() + "] " + what + ": NCCL reports " +
                           NcclText(async, comm));
    }
    if (Clock::now() >= deadline) {
      return DeadlineExceededError("[" + ProcessDescription() + "] " + what +
                                   ": NCCL still in progress at the deadline (a peer did not "
                                   "arrive or the network is down); abort the communicator");
    }
    std::this_thread::sleep_for(poll);
  }
}

// Creates a non-blocking communicator for `rank` of `n` and waits until it is ready.
Status InitComm(ncclComm_t* comm, int n, const ncclUniqueId& id, int rank,
                const NcclOptions& options) {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  LS_NCCL_RETURN_IF_ERROR(ncclCommInitRankConfig(comm, n, id, rank, &config), *comm);
  return WaitReady(*comm, Clock::now() + options.init_deadline, options.poll_interval,
                   "ncclCommInitRankConfig");
}

}  // namespace

struct NcclCommunicator::Shared {
  ncclComm_t comm = nullptr;
  std::atomic<bool> aborted{false};

  // Last owner (communicator or handle) gone: finalise and destroy, or abort when
  // finalising fails or takes longer than a few seconds (a broken peer).
  ~Shared() {
    if (comm == nullptr || aborted.load()) return;
    ncclResult_t r = ncclCommFinalize(comm);
    if (r == ncclSuccess || r == ncclInProgress) {
      const Status s = WaitReady(comm, Clock::now() + std::chrono::seconds(10),
                                 std::chrono::microseconds(200), "ncclCommFinalize");
      if (s.ok()) {
        ncclCommDestroy(comm);
        return;
      }
      LS_LOG(WARNING) << s.message() << "; aborting the NCCL communicator instead";
    }
    ncclCommAbort(comm);
  }
};

class NcclCommunicator::Handle : public CommHandle {
 public:
  Handle(std::shared_ptr<Shared> shared, cudaEvent_t done, std::string what,
         std::chrono::microseconds poll)
      : shared_(std::move(shared)), done_(done), what_(std::move(what)), poll_(poll) {}
  ~Handle() override { cudaEventDestroy(done_); }

  Status Wait(std::chrono::milliseconds deadline) override {
    const Clock::time_point until = Clock::now() + deadline;
    for (;;) {
      const cudaError_t q = cudaEventQuery(done_);
      if (q == cudaSuccess) return Status::Ok();
      if (q != cudaErrorNotReady) {
        return InternalError("[" + ProcessDescription() + "] " + what_ + ": " +
                             kernels::cuda::CudaErrorMessage("cudaEventQuery(done)", q));
      }
      if (shared_->aborted.load()) {
        return AbortedError("[" + ProcessDescription() + "] " + what_ + ": communicator aborted");
      }
      ncclResult_t async = ncclSuccess;
      const ncclResult_t r = ncclCommGetAsyncError(shared_->comm, &async);
      if (r != ncclSuccess)
        return NcclError(__FILE__, __LINE__, "ncclCommGetAsyncError", r, shared_->comm);
      if (async != ncclSuccess && async != ncclInProgress) {
        return InternalError("[" + ProcessDescription() + "] " + what_ + ": NCCL reports " +
                             NcclText(async, shared_->comm));
      }
      if (Clock::now() >= until) {
        return DeadlineExceededError(
            "[" + ProcessDescription() + "] " + what_ + " did not complete within " +
            std::to_string(deadline.count()) + " ms on " +
            kernels::cuda::CurrentDeviceDescription() +
            " (NCCL cannot tell which ranks did not arrive; abort the communicator)");
      }
      std::this_thread::sleep_for(poll_);
    }
  }

  bool Test() override { return cudaEventQuery(done_) != cudaErrorNotReady; }

 private:
  std::shared_ptr<Shared> shared_;
  cudaEvent_t done_;
  std::string what_;
  std::chrono::microseconds poll_;
};

Result<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(Communicator* bootstrap,
                                                                   int device, std::string name,
                                                                   NcclOptions options) {
  if (bootstrap == nullptr) return InvalidArgumentError("NcclCommunicator::Create: null bootstrap");
  const int rank = bootstrap->rank(), n = bootstrap->world_size();
  // Rank 0 draws the id; the broadcast carries whether that worked, so no rank waits
  // for an id that will never come.
  struct IdMessage {
    int32_t ok;
    ncclUniqueId id;
  } msg;
  std::memset(&msg, 0, sizeof(msg));
  Status id_status;
  if (rank == 0) {
    const ncclResult_t r = ncclGetUniqueId(&msg.id);
    if (r != ncclSuccess) id_status = NcclError(__FILE__, __LINE__, "ncclGetUniqueId", r, nullptr);
    msg.ok = r == ncclSuccess ? 1 : 0;
  }
  const Status bs = bootstrap->BroadcastSync(&msg, sizeof(msg), DataType::kUint8, 0,
                                             CollectiveTag{"nccl_unique_id:" + name});
  if (!bs.ok())
    return bs.WithContext("NCCL communicator '" + name + "': broadcasting the unique id");
  if (!id_status.ok()) return id_status;
  if (msg.ok != 1) {
    return UnavailableError("[" + ProcessDescription() + "] NCCL communicator '" + name +
                            "': rank 0 could not create the NCCL unique id (see its log)");
  }

  std::string why;
  const int devices = kernels::cuda::UsableDeviceCount(&why);
  if (device < 0 || device >= devices) {
    return UnavailableError("[" + ProcessDescription() + "] NCCL communicator '" + name +
                            "': no CUDA device " + std::to_string(device) + " (" +
                            (devices == 0 ? why : std::to_string(devices) + " devices") + ")");
  }
  LS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  cudaStream_t stream = nullptr;
  LS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  void* barrier_buf = nullptr;
  cudaError_t err = cudaMalloc(&barrier_buf, sizeof(float));
  if (err != cudaSuccess) {
    cudaStreamDestroy(stream);
    return kernels::cuda::CudaStatus("cudaMalloc(&barrier_buf, 4)", __FILE__, __LINE__, err);
  }
  auto shared = std::make_shared<Shared>();
  const Status init = InitComm(&shared->comm, n, msg.id, rank, options);
  if (!init.ok()) {
    if (shared->comm != nullptr) ncclCommAbort(shared->comm);
    shared->aborted = true;
    cudaFree(barrier_buf);
    cudaStreamDestroy(stream);
    return init.WithContext("NCCL communicator '" + name + "'");
  }
  LS_LOG(DEBUG) << "NCCL communicator '" << name << "' ready: rank " << rank << "/" << n << " on "
                << kernels::cuda::CurrentDeviceDescription();
  return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(std::move(shared), bootstrap,
                                                                device, rank, n, std::move(name),
                                                                options, stream, barrier_buf));
}

NcclCommunicator::NcclCommunicator(std::shared_ptr<Shared> shared, Communicator* bootstrap,
                                   int device, int rank, int world_size, std::string name,
                                   NcclOptions options, cudaStream_t stream, void* barrier_buf)
    : shared_(std::move(shared)),
      bootstrap_(bootstrap),
      device_(device),
      rank_(rank),
      world_size_(world_size),
      name_(std::move(name)),
      options_(options),
      stream_(stream),
      barrier_buf_(barrier_buf) {}

NcclCommunicator::~NcclCommunicator() {
  cudaSetDevice(device_);
  if (!shared_->aborted.load()) {
    const cudaError_t err = cudaStreamSynchronize(stream_);
    if (err != cudaSuccess) {
      LS_LOG(WARNING) << "NCCL communicator '" << name_
                      << "': " << kernels::cuda::CudaErrorMessage("cudaStreamSynchronize", err);
    }
  }
  cudaFree(barrier_buf_);
  cudaStreamDestroy(stream_);
  // shared_ (the ncclComm_t) goes when the last handle does.
}

void NcclCommunicator::Abort(const std::string& reason, int exit_code) {
  LS_LOG(ERROR) << "aborting NCCL communicator '" << name_ << "': " << reason;
  if (!shared_->aborted.exchange(true)) ncclCommAbort(shared_->comm);
  if (bootstrap_ != nullptr) bootstrap_->Abort(reason, exit_code);
  std::exit(exit_code);
}

Result<std::unique_ptr<Communicator>> NcclCommunicator::Duplicate(std::string name) {
  LS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  auto shared = std::make_shared<Shared>();
  LS_NCCL_RETURN_IF_ERROR(ncclCommSplit(shared_->comm, 0, rank_, &shared->comm, &config),
                          shared_->comm);
  Status s = WaitReady(shared_->comm, Clock::now() + options_.init_deadline, options_.poll_interval,
                       "ncclCommSplit");
  if (s.ok() && shared->comm != nullptr) {
    s = WaitReady(shared->comm, Clock::now() + options_.init_deadline, options_.poll_interval,
                  "ncclCommSplit (new communicator)");
  }
  if (!s.ok()) {
    if (shared->comm != nullptr) ncclCommAbort(shared->comm);
    shared->aborted = true;
    return s.WithContext("duplicating NCCL communicator '" + name_ + "' as '" + name + "'");
  }
  cudaStream_t stream = nullptr;
  LS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  void* barrier_buf = nullptr;
  const cudaError_t err = cudaMalloc(&barrier_buf, sizeof(float));
  if (err != cudaSuccess) {
    cudaStreamDestroy(stream);
    return kernels::cuda::CudaStatus("cudaMalloc(&barrier_buf, 4)", __FILE__, __LINE__, err);
  }
  auto dup = std::unique_ptr<NcclCommunicator>(
      new NcclCommunicator(std::move(shared), bootstrap_, device_, rank_, world_size_,
                           std::move(name), options_, stream, barrier_buf));
  dup->set_compute_stream(compute_stream_);
  return std::unique_ptr<Communicator>(std::move(dup));
}

template <typename Fn>
std::shared_ptr<CommHandle> NcclCommunicator::Issue(CollectiveKind kind, CollectiveTag tag,
                                                    Fn enqueue) {
  const int64_t seq = next_seq_++;
  const std::string what = std::string(CollectiveKindName(kind)) + " " + tag.ToString() +
                           " (collective #" + std::to_string(seq) + " on NCCL communicator '" +
                           name_ + "')";
  auto run = [&]() -> Status {
    if (shared_->aborted.load()) return AbortedError("communicator aborted");
    LS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    // The collective reads what the compute stream has produced so far.
    cudaEvent_t inputs_ready = nullptr;
    LS_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&inputs_ready, cudaEventDisableTiming));
    cudaError_t err = cudaEventRecord(inputs_ready, compute_stream_);
    if (err == cudaSuccess) err = cudaStreamWaitEvent(stream_, inputs_ready, 0);
    cudaEventDestroy(inputs_ready);  // safe: destruction is deferred until the event completes
    if (err != cudaSuccess)
      return kernels::cuda::CudaStatus("ordering after the compute stream", __FILE__, __LINE__,
                                       err);
    Status s = enqueue();
    if (!s.ok()) return s;
    return WaitReady(shared_->comm, Clock::now() + default_deadline(), options_.poll_interval,
                     what);
  };
  const Status s = run();
  if (!s.ok()) return MakeReadyHandle(s.WithContext(what));
  cudaEvent_t done = nullptr;
  cudaError_t err = cudaEventCreateWithFlags(&done, cudaEventDisableTiming);
  if (err == cudaSuccess) err = cudaEventRecord(done, stream_);
  if (err != cudaSuccess) {
    if (done != nullptr) cudaEventDestroy(done);
    return MakeReadyHandle(
        kernels::cuda::CudaStatus("recording the completion event", __FILE__, __LINE__, err)
            .WithContext(what));
  }
  return std::make_shared<Handle>(shared_, done, what, options_.poll_interval);
}

std::shared_ptr<CommHandle> NcclCommunicator::DoAllReduce(void* buf, int64_t count, DataType dtype,
                                                          ReduceOp op, CollectiveTag tag) {
  if (count == 0) return MakeReadyHandle();
  return Issue(CollectiveKind::kAllReduce, std::move(tag), [&]() -> Status {
    LS_NCCL_RETURN_IF_ERROR(ncclAllReduce(buf, buf, static_cast<size_t>(count), ToNccl(dtype),
                                          ToNccl(op), shared_->comm, stream_),
                            shared_->comm);
    return Status::Ok();
  });
}

std::shared_ptr<CommHandle> NcclCommunicator::DoBroadcast(void* buf, int64_t count, DataType dtype,
                                                          int root, CollectiveTag tag) {
  if (count == 0) return MakeReadyHandle();
  return Issue(CollectiveKind::kBroadcast, std::move(tag), [&]() -> Status {
    LS_NCCL_RETURN_IF_ERROR(ncclBroadcast(buf, buf, static_cast<size_t>(count), ToNccl(dtype), root,
                                          shared_->comm, stream_),
                            shared_->comm);
    return Status::Ok();
  });
}

std::shared_ptr<CommHandle> NcclCommunicator::DoAllGather(const void* send, void* recv,
                                                          int64_t count_per_rank, DataType dtype,
                                                          CollectiveTag tag) {
  if (count_per_rank == 0) return MakeReadyHandle();
  return Issue(CollectiveKind::kAllGather, std::move(tag), [&]() -> Status {
    LS_NCCL_RETURN_IF_ERROR(ncclAllGather(send, recv, static_cast<size_t>(count_per_rank),
                                          ToNccl(dtype), shared_->comm, stream_),
                            shared_->comm);
    return Status::Ok();
  });
}

// NCCL has no all-gather-v: one broadcast per rank's block, fused in a group.
std::shared_ptr<CommHandle> NcclCommunicator::DoAllGatherV(const void* send, void* recv,
                                                           const std::vector<int64_t>& counts,
                                                           DataType dtype, CollectiveTag tag) {
  const std::vector<int64_t> offsets = BlockOffsets(counts);
  if (offsets.back() == 0) return MakeReadyHandle();
  const size_t elem = DataTypeSize(dtype);
  return Issue(CollectiveKind::kAllGatherV, std::move(tag), [&]() -> Status {
    LS_NCCL_RETURN_IF_ERROR(ncclGroupStart(), shared_->comm);
    for (int r = 0; r < world_size_; ++r) {
      if (counts[r] == 0) continue;
      char* block = static_cast<char*>(recv) + offsets[r] * elem;
      const void* src = r == rank_ ? send : block;
      const ncclResult_t rc = ncclBroadcast(src, block, static_cast<size_t>(counts[r]),
                                            ToNccl(dtype), r, shared_->comm, stream_);
      if (rc != ncclSuccess && rc != ncclInProgress) {
        ncclGroupEnd();
        return NcclError(__FILE__, __LINE__, "ncclBroadcast (all-gather-v block)", rc,
                         shared_->comm);
      }
    }
    LS_NCCL_RETURN_IF_ERROR(ncclGroupEnd(), shared_->comm);
    return Status::Ok();
  });
}

// Even blocks: ncclReduceScatter. Uneven (ZeRO-1 ranges): one ncclReduce per block,
// rooted at its owner, fused in a group.
std::shared_ptr<CommHandle> NcclCommunicator::DoReduceScatter(const void* send, void* recv,
                                                              const std::vector<int64_t>& counts,
                                                              DataType dtype, ReduceOp op,
                                                              CollectiveTag tag) {
  const std::vector<int64_t> offsets = BlockOffsets(counts);
  if (offsets.back() == 0) return MakeReadyHandle();
  bool even = true;
  for (int64_t c : counts) even = even && c == counts[0];
  const size_t elem = DataTypeSize(dtype);
  return Issue(CollectiveKind::kReduceScatter, std::move(tag), [&]() -> Status {
    if (even) {
      LS_NCCL_RETURN_IF_ERROR(ncclReduceScatter(send, recv, static_cast<size_t>(counts[0]),
                                                ToNccl(dtype), ToNccl(op), shared_->comm, stream_),
                              shared_->comm);
      return Status::Ok();
    }
    LS_NCCL_RETURN_IF_ERROR(ncclGroupStart(), shared_->comm);
    for (int r = 0; r < world_size_; ++r) {
      if (counts[r] == 0) continue;
      const char* block = static_cast<const char*>(send) + offsets[r] * elem;
      const ncclResult_t rc =
          ncclReduce(block, r == rank_ ? recv : nullptr, static_cast<size_t>(counts[r]),
                     ToNccl(dtype), ToNccl(op), r, shared_->comm, stream_);
      if (rc != ncclSuccess && rc != ncclInProgress) {
        ncclGroupEnd();
        return NcclError(__FILE__, __LINE__, "ncclReduce (reduce-scatter block)", rc,
                         shared_->comm);
      }
    }
    LS_NCCL_RETURN_IF_ERROR(ncclGroupEnd(), shared_->comm);
    return Status::Ok();
  });
}

// NCCL has no barrier: an all-reduce of one float that every rank must join.
std::shared_ptr<CommHandle> NcclCommunicator::DoBarrier(CollectiveTag tag) {
  return Issue(CollectiveKind::kBarrier, std::move(tag), [&]() -> Status {
    LS_NCCL_RETURN_IF_ERROR(
        ncclAllReduce(barrier_buf_, barrier_buf_, 1, ncclFloat32, ncclSum, shared_->comm, stream_),
        shared_->comm);
    return Status::Ok();
  });
}

}  // namespace lockstep::comm
