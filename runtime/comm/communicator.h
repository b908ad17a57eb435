// Communicator: the collective-communication interface of the runtime (Local, MPI,
// later NCCL, and a fault-injecting wrapper). It moves raw host buffers (pointer +
// count + dtype) and knows nothing of tensors. The caller owns every buffer and must
// keep it alive and untouched until the collective's handle completes. All collective
// calls of one communicator must be issued from one thread (the "issuing" thread), in
// the same order on every rank; handles may be waited on from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace lockstep::comm {

enum class DataType { kFloat32, kFloat64, kInt32, kInt64, kUint8 };
enum class ReduceOp { kSum, kMax, kMin };
// Which collective a call is; names ("allreduce", ...) are used by fault specs and logs.
enum class CollectiveKind { kAllReduce, kBroadcast, kAllGather, kAllGatherV, kReduceScatter, kBarrier };

size_t DataTypeSize(DataType dtype);
const char* DataTypeName(DataType dtype);    // "float32", ...
const char* ReduceOpName(ReduceOp op);       // "sum", "max", "min"
const char* CollectiveKindName(CollectiveKind kind);  // "allreduce", "broadcast", ...

// Names a collective in diagnostics: "grad_bucket step 12 bucket 3". step/bucket < 0
// mean "not applicable" and are not printed.
struct CollectiveTag {
  std::string name;
  int64_t step = -1;
  int64_t bucket = -1;
  // The caller keeps testing the handle while it computes (the DDP reducer between
  // layers): a communicator may progress the collective from those tests instead of
  // a thread of its own (MpiOptions::progress_all_reduce_on_issuing_thread).
  bool caller_polls = false;

  std::string ToString() const;
};

// Completion handle of one asynchronous collective. Thread-safe.
class CommHandle {
 public:
  virtual ~CommHandle() = default;
  // Blocks until the collective completes or `deadline` (a duration from now) passes.
  // Returns the collective's status; on time-out DeadlineExceeded naming the
  // collective (kind, tag, sequence number), this rank and host, the deadline, and
  // where knowable the ranks that have not arrived. A time-out leaves the collective
  // in flight: the caller is expected to Abort() the communicator.
  virtual Status Wait(std::chrono::milliseconds deadline) = 0;
  // True once the collective has completed (successfully or not); never blocks.
  virtual bool Test() = 0;
};

// A handle that is complete from birth with `status` (world size 1, argument errors).
std::shared_ptr<CommHandle> MakeReadyHandle(Status status = Status::Ok());

class Communicator {
 public:
  static constexpr std::chrono::milliseconds kDefaultDeadline{300'000};

  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // The name given at creation ("world", "grad", "checkpoint"); used in diagnostics.
  virtual const std::string& name() const = 0;

  // --- Asynchronous collectives. Arguments are validated first; a bad argument
  // (negative count, root out of range, counts_per_rank.size() != world_size, null
  // buffer with a non-zero count) yields a ready handle holding InvalidArgument and
  // issues nothing. Count 0 is valid everywhere and still synchronises nothing.

  // In place: buf (count elements) is reduced over all ranks.
  std::shared_ptr<CommHandle> AllReduce(void* buf, int64_t count, DataType dtype, ReduceOp op,
                                        CollectiveTag tag);
  // In place: root's buf is copied to every other rank's buf.
  std::shared_ptr<CommHandle> Broadcast(void* buf, int64_t count, DataType dtype, int root,
                                        CollectiveTag tag);
  // recv (world_size * count_per_rank elements) receives every rank's send block in rank
  // order. In place when send == recv + rank * count_per_rank elements.
  std::shared_ptr<CommHandle> AllGather(const void* send, void* recv, int64_t count_per_rank,
                                        DataType dtype, CollectiveTag tag);
  // As AllGather with uneven blocks: rank r contributes counts_per_rank[r] elements,
  // recv holds their sum, block r at offset sum(counts_per_rank[0..r)). In place when
  // send == recv + that offset for this rank.
  std::shared_ptr<CommHandle> AllGatherV(const void* send, void* recv,
                                         const std::vector<int64_t>& counts_per_rank,
                                         DataType dtype, CollectiveTag tag);
  // send holds sum(counts_per_rank) elements on every rank; the element-wise reduction
  // of block r (offset as in AllGatherV) lands in rank r's recv (counts_per_rank[r]
  // elements). Uneven counts are allowed (ZeRO-1 splits arbitrary arena lengths). In
  // place when recv == send + offset of this rank's block; the other blocks of send are
  // then clobbered.
  std::shared_ptr<CommHandle> ReduceScatter(const void* send, void* recv,
                                            const std::vector<int64_t>& counts_per_rank,
                                            DataType dtype, ReduceOp op, CollectiveTag tag);
  std::shared_ptr<CommHandle> Barrier(CollectiveTag tag);

  // Tears the job down so that no rank hangs (MPI: logs `reason`, then MPI_Abort with
  // a non-zero code, which ends every rank). Callable from any thread; does not return
  // for MPI. Local: logs and exits the process with code 1.
  // `exit_code` is what every rank's process (and so mpirun) exits with.
  [[noreturn]] virtual void Abort(const std::string& reason, int exit_code = 1) = 0;

  // A new communicator over the same ranks whose traffic can never interleave with this
  // one's (MPI: its own MPI_Comm_dup and comm thread). Collective: every rank must call
  // it in the same order relative to other collectives on this communicator.
  virtual Result<std::unique_ptr<Communicator>> Duplicate(std::string name) = 0;

  // --- Blocking conveniences: issue, then Wait(default_deadline()).
  Status AllReduceSync(void* buf, int64_t count, DataType dtype, ReduceOp op, CollectiveTag tag);
  Status BroadcastSync(void* buf, int64_t count, DataType dtype, int root, CollectiveTag tag);
  Status AllGatherSync(const void* send, void* recv, int64_t count_per_rank, DataType dtype,
                       CollectiveTag tag);
  Status AllGatherVSync(const void* send, void* recv, const std::vector<int64_t>& counts_per_rank,
                        DataType dtype, CollectiveTag tag);
  Status ReduceScatterSync(const void* send, void* recv, const std::vector<int64_t>& counts_per_rank,
                           DataType dtype, ReduceOp op, CollectiveTag tag);
  Status BarrierSync(CollectiveTag tag);

  std::chrono::milliseconds default_deadline() const { return default_deadline_; }
  void set_default_deadline(std::chrono::milliseconds deadline) { default_deadline_ = deadline; }

 protected:
  Communicator() = default;

  // Implementations see validated arguments only (counts >= 0, root in range,
  // counts_per_rank.size() == world_size(), non-null buffers where count > 0).
  virtual std::shared_ptr<CommHandle> DoAllReduce(void* buf, int64_t count, DataType dtype,
                                                  ReduceOp op, CollectiveTag tag) = 0;
  virtual std::shared_ptr<CommHandle> DoBroadcast(void* buf, int64_t count, DataType dtype, int root,
                                                  CollectiveTag tag) = 0;
  virtual std::shared_ptr<CommHandle> DoAllGather(const void* send, void* recv, int64_t count_per_rank,
                                                  DataType dtype, CollectiveTag tag) = 0;
  virtual std::shared_ptr<CommHandle> DoAllGatherV(const void* send, void* recv,
                                                   const std::vector<int64_t>& counts_per_rank,
                                                   DataType dtype, CollectiveTag tag) = 0;
  virtual std::shared_ptr<CommHandle> DoReduceScatter(const void* send, void* recv,
                                                      const std::vector<int64_t>& counts_per_rank,
                                                      DataType dtype, ReduceOp op,
                                                      CollectiveTag tag) = 0;
  virtual std::shared_ptr<CommHandle> DoBarrier(CollectiveTag tag) = 0;

 private:
  std::chrono::milliseconds default_deadline_ = kDefaultDeadline;
};

// Offsets (in elements) of each rank's block: result[r] = sum(counts[0..r)); size n+1.
std::vector<int64_t> BlockOffsets(const std::vector<int64_t>& counts_per_rank);

}  // namespace lockstep::comm
