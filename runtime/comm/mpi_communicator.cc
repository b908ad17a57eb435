#include "runtime/comm/mpi_communicator.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "common/check.h"
#include "common/log.h"
#include "common/process_identity.h"

namespace lockstep::comm {
namespace {

constexpr int kArrivalTag = 7;
// Collectives between two drains of the arrival channel by the comm thread: at most this
// many 8-byte announcements per peer wait unmatched in MPI.
constexpr int64_t kArrivalDrainInterval = 64;

// Both sides of the hand-off to the comm thread yield for up to kHandOffSpin until
// `ready()` before sleeping on a condition variable: a small collective ends, and the
// buckets of one backward arrive, within microseconds, and a futex sleep plus wake-up
// on each side cost about 10 us per collective at 8 B.
constexpr std::chrono::microseconds kHandOffSpin{50};
template <typename Ready>
void SpinBriefly(Ready ready) {
  const auto until = std::chrono::steady_clock::now() + kHandOffSpin;
  while (!ready() && std::chrono::steady_clock::now() < until) std::this_thread::yield();
}

MPI_Datatype ToMpi(DataType dtype) {
  switch (dtype) {
    case DataType::kFloat32: return MPI_FLOAT;
    case DataType::kFloat64: return MPI_DOUBLE;
    case DataType::kInt32: return MPI_INT32_T;
    case DataType::kInt64: return MPI_INT64_T;
    case DataType::kUint8: return MPI_UINT8_T;
  }
  LS_FATAL() << "unknown DataType " << static_cast<int>(dtype);
}

MPI_Op ToMpi(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return MPI_SUM;
    case ReduceOp::kMax: return MPI_MAX;
    case ReduceOp::kMin: return MPI_MIN;
  }
  LS_FATAL() << "unknown ReduceOp " << static_cast<int>(op);
}

bool FitsInt(const std::vector<int64_t>& offsets, int64_t limit) { return offsets.back() <= limit; }

}  // namespace

bool EnvFlag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && std::string(v) != "0";
}

struct MpiCommunicator::OpState {
  CollectiveKind kind;
  CollectiveTag tag;
  int64_t seq = 0;
  bool issued_here = false;  // issued on the issuing thread (IssueAllReduce), not the comm thread
  std::mutex mu;
  std::condition_variable cv;
  Status status;                  // guarded by mu
  std::atomic<bool> done{false};  // set under mu once status is; read without it by spins and Test

  std::string Describe(const std::string& comm_name) const {
    return std::string(CollectiveKindName(kind)) + " " + tag.ToString() + " (collective #" + std::to_string(seq) +
           " on communicator '" + comm_name + "')";
  }
};

// The communicator outlives its handles' pending Waits: its destructor completes every
// queued collective first, and a Wait after that finds the handle done.
class MpiCommunicator::Handle : public CommHandle {
 public:
  Handle(std::shared_ptr<OpState> state, MpiCommunicator* comm) : state_(std::move(state)), comm_(comm) {}

  Status Wait(std::chrono::milliseconds deadline) override {
    SpinBriefly([this] { return state_->done.load(); });
    {
      std::unique_lock<std::mutex> lock(state_->mu);
      if (state_->cv.wait_for(lock, deadline, [&] { return state_->done.load(); })) return state_->status;
    }
    return DeadlineExceededError(comm_->DescribeStall(*state_, deadline));
  }

  bool Test() override { return state_->done.load(); }

 private:
  std::shared_ptr<OpState> state_;
  MpiCommunicator* comm_;
};

// An all-reduce in flight on MPI requests the issuing thread started: every Test or
// Wait progresses it (and, through MPI's progress engine, the others in flight).
class MpiCommunicator::IssuedHandle : public CommHandle {
 public:
  IssuedHandle(std::shared_ptr<OpState> state, MpiCommunicator* comm, std::vector<MPI_Request> requests)
      : state_(std::move(state)), comm_(comm), requests_(std::move(requests)) {}

  Status Wait(std::chrono::milliseconds deadline) override {
    const auto give_up = std::chrono::steady_clock::now() + deadline;
    while (!Test()) {
      if (std::chrono::steady_clock::now() >= give_up) {
        return DeadlineExceededError(comm_->DescribeStall(*state_, deadline));
      }
      // Ranks may share cores: let a peer that still computes have this one.
      std::this_thread::yield();
    }
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->status;
  }

  bool Test() override {
    if (state_->done.load()) return true;
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->done.load()) return true;
    int flag = 0;
    const int rc = MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &flag, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) {
      state_->status = InternalError("MPI_Testall failed (code " + std::to_string(rc) + ") in " +
                                     state_->Describe(comm_->name_) + " on " + ProcessDescription());
      flag = 1;
    }
    if (flag) state_->done = true;
    return flag != 0;
  }

 private:
  std::shared_ptr<OpState> state_;
  MpiCommunicator* comm_;
  std::vector<MPI_Request> requests_;  // guarded by state_->mu
};

Result<std::unique_ptr<MpiCommunicator>> MpiCommunicator::Create(std::string name, MpiOptions options) {
  if (options.max_elements_per_call < 1) {
    return InvalidArgumentError("MpiOptions.max_elements_per_call = " + std::to_string(options.max_elements_per_call) +
                                ", expected >= 1");
  }
  options.max_elements_per_call = std::min<int64_t>(options.max_elements_per_call, INT_MAX);
  LS_ASSIGN_OR_RETURN(std::shared_ptr<MpiRuntime> runtime, MpiRuntime::Acquire());
  MPI_Comm comm = MPI_COMM_NULL, arrival = MPI_COMM_NULL;
  LS_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm));
  LS_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &arrival));
  return std::unique_ptr<MpiCommunicator>(
      new MpiCommunicator(std::move(runtime), comm, arrival, std::move(name), options));
}

MpiCommunicator::MpiCommunicator(std::shared_ptr<MpiRuntime> runtime, MPI_Comm comm, MPI_Comm arrival_comm,
                                 std::string name, MpiOptions options)
    : runtime_(std::move(runtime)), comm_(comm), arrival_comm_(arrival_comm), name_(std::move(name)),
      options_(options) {
  // Errors come back as codes so LS_MPI_CHECK can report them as Status.
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(arrival_comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &world_size_);
  latest_arrival_.assign(world_size_, 0);
  announce_buf_.assign(world_size_, 0);
  announce_req_.assign(world_size_, MPI_REQUEST_NULL);
  arrival_buf_.assign(world_size_, 0);
  arrival_req_.assign(world_size_, MPI_REQUEST_NULL);
  thread_ = std::thread([this] { ThreadMain(); });
}

MpiCommunicator::~MpiCommunicator() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  // Announcements are eager-sized; completing them does not need the peer's help.
  MPI_Waitall(world_size_, announce_req_.data(), MPI_STATUSES_IGNORE);
  (void)DrainArrivals();  // leave no unmatched message behind on the arrival channel
  for (MPI_Request& request : arrival_req_) {  // the receives posted for announcements to come
    if (request == MPI_REQUEST_NULL) continue;
    MPI_Cancel(&request);
    MPI_Wait(&request, MPI_STATUS_IGNORE);
  }
  MPI_Comm_free(&arrival_comm_);
  MPI_Comm_free(&comm_);
}

void MpiCommunicator::Abort(const std::string& reason, int exit_code) {
  LS_LOG(ERROR) << "aborting communicator '" << name_ << "' (MPI_Abort, exit code " << exit_code << "): " << reason;
  MPI_Abort(comm_, exit_code);
  std::_Exit(exit_code);  // MPI_Abort should not return; make sure this process ends anyway
}

Result<std::unique_ptr<Communicator>> MpiCommunicator::Duplicate(std::string name) {
  auto comms = std::make_shared<std::pair<MPI_Comm, MPI_Comm>>(MPI_COMM_NULL, MPI_COMM_NULL);
  auto handle = Enqueue(CollectiveKind::kBarrier, CollectiveTag{"duplicate:" + name}, [this, comms]() -> Status {
    LS_MPI_CHECK(MPI_Comm_dup(comm_, &comms->first));
    LS_MPI_CHECK(MPI_Comm_dup(comm_, &comms->second));
    return Status::Ok();
  });
  LS_RETURN_IF_ERROR(handle->Wait(default_deadline()));
  std::unique_ptr<Communicator> dup(
      new MpiCommunicator(runtime_, comms->first, comms->second, std::move(name), options_));
  dup->set_default_deadline(default_deadline());
  return dup;
}

std::shared_ptr<CommHandle> MpiCommunicator::Enqueue(CollectiveKind kind, CollectiveTag tag,
                                                     std::function<Status()> body) {
  auto state = std::make_shared<OpState>();
  state->kind = kind;
  state->tag = std::move(tag);
  state->seq = next_seq_++;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(Op{state, std::move(body)});
  }
  cv_.notify_one();
  return std::make_shared<Handle>(std::move(state), this);
}

void MpiCommunicator::ThreadMain() {
  for (;;) {
    Op op;
    Status broken;
    SpinBriefly([this] {
      std::lock_guard<std::mutex> lock(mu_);
      return stop_ || !queue_.empty();
    });
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop requested and nothing left to run
      op = std::move(queue_.front());
      queue_.pop_front();
      running_ = op.state;
      broken = broken_;
    }
    Status status;
    if (!broken.ok()) {
      status = FailedPreconditionError(op.state->Describe(name_) + " not run: communicator '" + name_ +
                                       "' is broken since an earlier collective failed: " + broken.message());
    } else {
      if (options_.track_arrivals) status = Announce(op.state->seq);
      if (status.ok()) status = op.body();
      if (!status.ok()) status = status.WithContext(op.state->Describe(name_));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      running_.reset();
      if (!status.ok() && broken_.ok()) broken_ = status;
    }
    idle_cv_.notify_all();
    {
      std::lock_guard<std::mutex> lock(op.state->mu);
      op.state->status = std::move(status);
      op.state->done = true;
    }
    op.state->cv.notify_all();
  }
}

Status MpiCommunicator::Announce(int64_t seq) {
  for (int peer = 0; peer < world_size_; ++peer) {
    if (peer == rank_) continue;
    LS_MPI_CHECK(MPI_Wait(&announce_req_[peer], MPI_STATUS_IGNORE));
    announce_buf_[peer] = seq;
    LS_MPI_CHECK(MPI_Isend(&announce_buf_[peer], 1, MPI_INT64_T, peer, kArrivalTag, arrival_comm_,
                           &announce_req_[peer]));
  }
  {
    std::lock_guard<std::mutex> lock(arrival_mu_);
    latest_arrival_[rank_] = seq;
  }
  // A drain per collective made every all-reduce ~25% slower (measured with
  // bench_allreduce, OpenMPI 4.1), and a stalled Wait drains for itself under
  // THREAD_MULTIPLE, so the comm thread drains only often enough to bound the queue of
  // unmatched announcements. Without THREAD_MULTIPLE its drain is all a report has.
  if (runtime_->thread_multiple() && seq % kArrivalDrainInterval != 0) return Status::Ok();
  return DrainArrivals();
}

Status MpiCommunicator::DrainArrivals() {
  std::lock_guard<std::mutex> lock(arrival_mu_);
  for (int peer = 0; peer < world_size_; ++peer) {
    if (peer == rank_) continue;
    for (;;) {  // several announcements from one peer may be queued behind the posted receive
      if (arrival_req_[peer] == MPI_REQUEST_NULL) {  // first drain, or the last one completed
        LS_MPI_CHECK(MPI_Irecv(&arrival_buf_[peer], 1, MPI_INT64_T, peer, kArrivalTag, arrival_comm_,
                               &arrival_req_[peer]));
      }
      int flag = 0;
      LS_MPI_CHECK(MPI_Test(&arrival_req_[peer], &flag, MPI_STATUS_IGNORE));  // completed: request -> NULL
      if (!flag) break;
      latest_arrival_[peer] = std::max(latest_arrival_[peer], arrival_buf_[peer]);
    }
  }
  return Status::Ok();
}

std::string MpiCommunicator::DescribeStall(const OpState& waited, std::chrono::milliseconds deadline) {
  std::ostringstream out;
  out << waited.Describe(name_) << " did not complete within " << deadline.count() << " ms on "
      << ProcessDescription() << ". ";
  int64_t stalled_seq = waited.seq;
  if (waited.issued_here) {
    out << "This rank started it (MPI_Iallreduce on the issuing thread). ";
  } else {
    std::lock_guard<std::mutex> lock(mu_);
    if (running_ && running_.get() != &waited) {
      stalled_seq = running_->seq;
      out << "This rank's communication thread is still in the earlier " << running_->Describe(name_) << ". ";
    } else if (!running_) {
      out << "This rank's communication thread has not started it yet. ";
    }
  }
  if (!options_.track_arrivals) {
    out << "Arrival tracking is off (MpiOptions::track_arrivals), so the missing ranks are unknown.";
    return out.str();
  }
  if (runtime_->thread_multiple()) {
    (void)DrainArrivals();
    // Announcements still in flight: one short second look before naming anyone.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    (void)DrainArrivals();
  } else {
    out << "(MPI is not MPI_THREAD_MULTIPLE: arrivals as last seen by the communication thread) ";
  }
  std::vector<int> missing;
  {
    std::lock_guard<std::mutex> lock(arrival_mu_);
    for (int r = 0; r < world_size_; ++r) {
      if (latest_arrival_[r] < stalled_seq) missing.push_back(r);
    }
  }
  if (missing.empty()) {
    out << "Every rank has started collective #" << stalled_seq
        << "; one of them is stuck or failed inside it (look for its error).";
  } else {
    out << "Ranks that did not arrive at collective #" << stalled_seq << ": [";
    for (size_t i = 0; i < missing.size(); ++i) out << (i ? ", " : "") << missing[i];
    out << "] of " << world_size_ << ".";
  }
  return out.str();
}

// ---- Collectives (bodies run on the comm thread).

Status MpiCommunicator::ForEachCallChunk(int64_t count, const std::function<Status(int64_t, int)>& call) const {
  for (int64_t off = 0; off < count; off += options_.max_elements_per_call) {
    LS_RETURN_IF_ERROR(call(off, static_cast<int>(std::min(options_.max_elements_per_call, count - off))));
  }
  return Status::Ok();
}

Status MpiCommunicator::BroadcastChunked(char* buf, int64_t count, MPI_Datatype type, size_t elem, int root) {
  return ForEachCallChunk(count, [&](int64_t off, int n) -> Status {
    LS_MPI_CHECK(MPI_Bcast(buf + off * elem, n, type, root, comm_));
    return Status::Ok();
  });
}

Status MpiCommunicator::AllGatherVByBroadcast(const char* send, char* recv, const std::vector<int64_t>& counts,
                                              size_t elem, MPI_Datatype type) {
  std::vector<int64_t> offsets = BlockOffsets(counts);
  char* mine = recv + offsets[rank_] * elem;
  if (counts[rank_] > 0 && send != mine) std::memmove(mine, send, counts[rank_] * elem);
  for (int root = 0; root < world_size_; ++root) {
    LS_RETURN_IF_ERROR(BroadcastChunked(recv + offsets[root] * elem, counts[root], type, elem, root));
  }
  return Status::Ok();
}

void MpiCommunicator::WaitForCommThreadIdle() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [&] { return queue_.empty() && !running_; });
}

std::shared_ptr<CommHandle> MpiCommunicator::IssueAllReduce(void* buf, int64_t count, DataType dtype, ReduceOp op,
                                                            CollectiveTag tag) {
  auto state = std::make_shared<OpState>();
  state->kind = CollectiveKind::kAllReduce;
  state->tag = std::move(tag);
  state->seq = next_seq_++;
  state->issued_here = true;
  WaitForCommThreadIdle();  // in steady training nothing is queued: no wait
  Status broken;
  {
    std::lock_guard<std::mutex> lock(mu_);
    broken = broken_;
  }
  Status status;
  std::vector<MPI_Request> requests;
  if (!broken.ok()) {
    status = FailedPreconditionError(state->Describe(name_) + " not run: communicator '" + name_ +
                                     "' is broken since an earlier collective failed: " + broken.message());
  } else {
    // The comm thread is idle, so this thread may use its announcement buffers.
    if (options_.track_arrivals) status = Announce(state->seq);
    char* p = static_cast<char*>(buf);
    const size_t elem = DataTypeSize(dtype);
    if (status.ok()) {
      status = ForEachCallChunk(count, [&](int64_t off, int n) -> Status {
        requests.emplace_back(MPI_REQUEST_NULL);
        LS_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, p + off * elem, n, ToMpi(dtype), ToMpi(op), comm_, &requests.back()));
        return Status::Ok();
      });
    }
  }
  if (!status.ok()) {
    status = status.WithContext(state->Describe(name_));
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_.ok()) broken_ = status;
    return MakeReadyHandle(status);
  }
  return std::make_shared<IssuedHandle>(std::move(state), this, std::move(requests));
}

std::shared_ptr<CommHandle> MpiCommunicator::DoAllReduce(void* buf, int64_t count, DataType dtype, ReduceOp op,
                                                         CollectiveTag tag) {
  if (tag.caller_polls && options_.progress_all_reduce_on_issuing_thread && runtime_->thread_multiple() &&
      count * static_cast<int64_t>(DataTypeSize(dtype)) <= options_.issue_all_reduce_max_bytes) {
    return IssueAllReduce(buf, count, dtype, op, std::move(tag));
  }
  return Enqueue(CollectiveKind::kAllReduce, std::move(tag), [this, buf, count, dtype, op]() -> Status {
    char* p = static_cast<char*>(buf);
    const size_t elem = DataTypeSize(dtype);
    return ForEachCallChunk(count, [&](int64_t off, int n) -> Status {
      LS_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, p + off * elem, n, ToMpi(dtype), ToMpi(op), comm_));
      return Status::Ok();
    });
  });
}

std::shared_ptr<CommHandle> MpiCommunicator::DoBroadcast(void* buf, int64_t count, DataType dtype, int root,
                                                         CollectiveTag tag) {
  return Enqueue(CollectiveKind::kBroadcast, std::move(tag), [this, buf, count, dtype, root]() -> Status {
    return BroadcastChunked(static_cast<char*>(buf), count, ToMpi(dtype), DataTypeSize(dtype), root);
  });
}

std::shared_ptr<CommHandle> MpiCommunicator::DoAllGather(const void* send, void* recv, int64_t count_per_rank,
                                                         DataType dtype, CollectiveTag tag) {
  return Enqueue(CollectiveKind::kAllGather, std::move(tag), [this, send, recv, count_per_rank, dtype]() -> Status {
    size_t elem = DataTypeSize(dtype);
    if (count_per_rank == 0) return Status::Ok();
    if (count_per_rank * world_size_ <= options_.max_elements_per_call) {
      bool in_place = send == static_cast<char*>(recv) + rank_ * count_per_rank * elem;
      int n = static_cast<int>(count_per_rank);
      LS_MPI_CHECK(MPI_Allgather(in_place ? MPI_IN_PLACE : send, n, ToMpi(dtype), recv, n, ToMpi(dtype), comm_));
      return Status::Ok();
    }
    std::vector<int64_t> counts(world_size_, count_per_rank);
    return AllGatherVByBroadcast(static_cast<const char*>(send), static_cast<char*>(recv), counts, elem, ToMpi(dtype));
  });
}

std::shared_ptr<CommHandle> MpiCommunicator::DoAllGatherV(const void* send, void* recv,
                                                          const std::vector<int64_t>& counts_per_rank,
                                                          DataType dtype, CollectiveTag tag) {
  return Enqueue(CollectiveKind::kAllGatherV, std::move(tag), [this, send, recv, counts_per_rank, dtype]() -> Status {
    size_t elem = DataTypeSize(dtype);
    std::vector<int64_t> offsets = BlockOffsets(counts_per_rank);
    if (offsets.back() == 0) return Status::Ok();
    if (!FitsInt(offsets, options_.max_elements_per_call)) {
      return AllGatherVByBroadcast(static_cast<const char*>(send), static_cast<char*>(recv), counts_per_rank, elem,
                                   ToMpi(dtype));
    }
    std::vector<int> counts(world_size_), displs(world_size_);
    for (int r = 0; r < world_size_; ++r) {
      counts[r] = static_cast<int>(counts_per_rank[r]);
      displs[r] = static_cast<int>(offsets[r]);
    }
    bool in_place = send == static_cast<char*>(recv) + offsets[rank_] * elem;
    LS_MPI_CHECK(MPI_Allgatherv(in_place ? MPI_IN_PLACE : send, counts[rank_], ToMpi(dtype), recv, counts.data(),
                                displs.data(), ToMpi(dtype), comm_));
    return Status::Ok();
  });
}

std::shared_ptr<CommHandle> MpiCommunicator::DoReduceScatter(const void* send, void* recv,
                                                             const std::vector<int64_t>& counts_per_rank,
                                                             DataType dtype, ReduceOp op, CollectiveTag tag) {
  return Enqueue(CollectiveKind::kReduceScatter, std::move(tag),
                 [this, send, recv, counts_per_rank, dtype, op]() -> Status {
    size_t elem = DataTypeSize(dtype);
    MPI_Datatype type = ToMpi(dtype);
    std::vector<int64_t> offsets = BlockOffsets(counts_per_rank);
    if (offsets.back() == 0) return Status::Ok();
    char* out = static_cast<char*>(recv);
    // In place: recv is this rank's block inside send, so send is writable.
    bool in_place = static_cast<const char*>(send) + offsets[rank_] * elem == out;
    if (FitsInt(offsets, options_.max_elements_per_call)) {
      std::vector<int> counts(counts_per_rank.begin(), counts_per_rank.end());
      if (in_place) {
        char* whole = const_cast<char*>(static_cast<const char*>(send));
        LS_MPI_CHECK(MPI_Reduce_scatter(MPI_IN_PLACE, whole, counts.data(), type, ToMpi(op), comm_));
        // MPI leaves the result at the start of the buffer; move it to this rank's block.
        if (counts[rank_] > 0 && whole != out) std::memmove(out, whole, counts[rank_] * elem);
      } else {
        LS_MPI_CHECK(MPI_Reduce_scatter(send, recv, counts.data(), type, ToMpi(op), comm_));
      }
      return Status::Ok();
    }
    // Too large for one call: reduce each block to its owner, in chunks.
    for (int root = 0; root < world_size_; ++root) {
      const char* block = static_cast<const char*>(send) + offsets[root] * elem;
      LS_RETURN_IF_ERROR(ForEachCallChunk(counts_per_rank[root], [&](int64_t off, int n) -> Status {
        const void* source = block + off * elem;
        if (root == rank_ && in_place) source = MPI_IN_PLACE;
        void* target = root == rank_ ? out + off * elem : nullptr;
        LS_MPI_CHECK(MPI_Reduce(source, target, n, type, ToMpi(op), root, comm_));
        return Status::Ok();
      }));
    }
    return Status::Ok();
  });
}

std::shared_ptr<CommHandle> MpiCommunicator::DoBarrier(CollectiveTag tag) {
  return Enqueue(CollectiveKind::kBarrier, std::move(tag), [this]() -> Status {
    LS_MPI_CHECK(MPI_Barrier(comm_));
    return Status::Ok();
  });
}

}  // namespace lockstep::comm
