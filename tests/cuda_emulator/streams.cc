// lsemu's streams and events. Work is queued per stream and runs only when the host
// has to see it: a synchronising call (cudaStreamSynchronize, cudaEventSynchronize,
// cudaDeviceSynchronize, a copy into pageable host memory, cudaFree, ...) runs the
// queued work it waits for and nothing more. Another stream's work runs when an event
// wait (cudaStreamWaitEvent) or the legacy default stream's implicit synchronisation
// requires it. So a missing synchronisation leaves the work undone when the host or
// another stream reads its result: the reader sees stale memory, as it may on a GPU.
//
// The legacy default stream (nullptr, cudaStreamLegacy) waits for all work queued
// earlier on blocking streams, and blocking streams wait for work queued earlier on
// it; streams created with cudaStreamNonBlocking do neither. cudaStreamQuery and
// cudaEventQuery return cudaErrorNotReady while work is outstanding (a repeated query
// runs it, so that a polling loop ends). A destroyed stream's work still runs.
#include <algorithm>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "tests/cuda_emulator/runtime_internal.h"

namespace lsemu {
namespace {

struct Queue;

// One queued operation: work to run, or a wait for another queue's work up to a ticket.
struct Operation {
  std::function<void()> work;
  std::shared_ptr<Queue> waits_for;
  uint64_t wait_ticket = 0;
};

struct Queue {
  bool legacy = false;
  bool blocking = true;    // synchronises with the legacy default stream
  bool destroyed = false;  // its handle is gone; dropped once its work is done
  uint64_t queried = 0;    // the ticket cudaStreamQuery last found not done
  std::deque<Operation> pending;
  uint64_t enqueued = 0;   // tickets handed out; an operation's ticket is the count after it
  uint64_t completed = 0;  // operations done, in order
};

// Held while queueing and while running queued work: work runs on whichever host
// thread has to wait for it, one operation at a time in the process.
std::recursive_mutex& Mutex() {
  static auto* mutex = new std::recursive_mutex();
  return *mutex;
}

std::shared_ptr<Queue>& LegacyQueue() {
  static auto* legacy = new std::shared_ptr<Queue>([] {
    auto q = std::make_shared<Queue>();
    q->legacy = true;
    return q;
  }());
  return *legacy;
}

// Every live queue, the legacy one first, in creation order.
std::vector<std::shared_ptr<Queue>>& LiveQueues() {
  static auto* live = new std::vector<std::shared_ptr<Queue>>{LegacyQueue()};
  return *live;
}

}  // namespace
}  // namespace lsemu

struct CUstream_st {
  std::shared_ptr<lsemu::Queue> queue;
};
struct CUevent_st {
  std::shared_ptr<lsemu::Queue> queue;  // of the latest record; null before the first
  uint64_t ticket = 0;
  bool queried = false;  // cudaEventQuery found the latest record not done
};

namespace lsemu {
namespace {

std::shared_ptr<Queue> QueueOf(cudaStream_t stream) {
  if (stream == nullptr || stream == cudaStreamLegacy) return LegacyQueue();
  if (stream == cudaStreamPerThread) Die("cudaStreamPerThread is not emulated");
  return stream->queue;
}

bool Done(const Queue& q, uint64_t ticket) { return q.completed >= ticket; }

void Push(Queue& q, Operation op) {
  q.pending.push_back(std::move(op));
  ++q.enqueued;
}

void RunLeftoverWork();

// Queues op behind the implicit synchronisation of the legacy default stream.
uint64_t Submit(const std::shared_ptr<Queue>& q, Operation op) {
  // A GPU runs queued work whether or not the host waits for it: so does the emulator,
  // at the latest when the process exits (a kernel nobody waited for is still checked).
  static const bool run_at_exit = std::atexit(RunLeftoverWork) == 0;
  (void)run_at_exit;
  if (q->legacy) {
    for (const auto& other : LiveQueues()) {
      if (other != q && other->blocking && !Done(*other, other->enqueued)) {
        Push(*q, Operation{{}, other, other->enqueued});
      }
    }
  } else if (q->blocking) {
    const auto& legacy = LegacyQueue();
    if (!Done(*legacy, legacy->enqueued)) Push(*q, Operation{{}, legacy, legacy->enqueued});
  }
  Push(*q, std::move(op));
  return q->enqueued;
}

// A wait never reaches back into work queued after the operation that waits (an event
// names work already queued), so this recursion ends and keeps every queue in order.
void RunUpTo(Queue& q, uint64_t ticket) {
  if (ticket > q.enqueued) Die("a wait for work that was never queued");
  while (!Done(q, ticket)) {
    Operation op = std::move(q.pending.front());
    q.pending.pop_front();
    if (op.waits_for != nullptr) {
      RunUpTo(*op.waits_for, op.wait_ticket);
    } else if (op.work) {
      op.work();
    }
    ++q.completed;
  }
}

}  // namespace

uint64_t Enqueue(cudaStream_t stream, std::function<void()> work) {
  std::lock_guard<std::recursive_mutex> lock(Mutex());
  return Submit(QueueOf(stream), Operation{std::move(work), nullptr, 0});
}

void CompleteUpTo(cudaStream_t stream, uint64_t ticket) {
  std::lock_guard<std::recursive_mutex> lock(Mutex());
  RunUpTo(*QueueOf(stream), ticket);
}

void CompleteAll() {
  std::lock_guard<std::recursive_mutex> lock(Mutex());
  std::vector<std::shared_ptr<Queue>> queues = LiveQueues();
  if (ReverseOrder()) std::reverse(queues.begin(), queues.end());
  for (const auto& q : queues) RunUpTo(*q, q->enqueued);
  auto& live = LiveQueues();
  live.erase(std::remove_if(live.begin(), live.end(), [](const auto& q) { return q->destroyed; }), live.end());
}

namespace {
// Skipped if another thread is inside the emulator as the process exits.
void RunLeftoverWork() {
  std::unique_lock<std::recursive_mutex> lock(Mutex(), std::try_to_lock);
  if (lock.owns_lock()) CompleteAll();
}
}  // namespace

}  // namespace lsemu

using lsemu::Fail;

cudaError_t cudaDeviceSynchronize() {
  lsemu::CompleteAll();
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, 0); }

// A stream handle is a distinct heap object, so handles differ and a leaked stream
// shows in LeakSanitizer.
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  if (flags & ~cudaStreamNonBlocking) return Fail(cudaErrorInvalidValue);
  std::lock_guard<std::recursive_mutex> lock(lsemu::Mutex());
  auto q = std::make_shared<lsemu::Queue>();
  q->blocking = (flags & cudaStreamNonBlocking) == 0;
  lsemu::LiveQueues().push_back(q);
  *stream = new CUstream_st{q};
  return cudaSuccess;
}

// Queued work still runs after the handle is gone, when something waits for it.
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread) {
    return Fail(cudaErrorInvalidValue);
  }
  std::lock_guard<std::recursive_mutex> lock(lsemu::Mutex());
  stream->queue->destroyed = true;
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(lsemu::Mutex());
  const auto q = lsemu::QueueOf(stream);
  lsemu::RunUpTo(*q, q->enqueued);
  return cudaSuccess;
}

// The first query that finds work outstanding runs none of it; a second one (a polling
// loop) runs it and reports it done. So one query is no substitute for a wait.
cudaError_t cudaStreamQuery(cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(lsemu::Mutex());
  const auto q = lsemu::QueueOf(stream);
  if (lsemu::Done(*q, q->enqueued)) return cudaSuccess;
  if (q->queried != q->enqueued) {
    q->queried = q->enqueued;
    return cudaErrorNotReady;
  }
  lsemu::RunUpTo(*q, q->enqueued);
  return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  if (event == nullptr || flags != 0) return Fail(cudaErrorInvalidValue);
  std::lock_guard<std::recursive_mutex> lock(lsemu::Mutex());
  // An event never recorded has nothing to wait for.
  if (event->queue != nullptr) {
    lsemu::Submit(lsemu::QueueOf(stream), lsemu::Operation{{}, event->queue, event->ticket});
  }
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, 0); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  if (flags & ~(cudaEventBlockingSync | cudaEventDisableTiming)) return Fail(cudaErrorInvalidValue);
  *event = new CUevent_st{};
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (event == nullptr) return Fail(cudaErrorInvalidValue);
  std::lock_guard<std::recursive_mutex> lock(lsemu::Mutex());
  delete event;
  return cudaSuccess;
}

// The event stands for all work queued on the stream so far (for the legacy stream:
// with what that stream implicitly waits for).
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (event == nullptr) return Fail(cudaErrorInvalidValue);
  std::lock_guard<std::recursive_mutex> lock(lsemu::Mutex());
  event->queue = lsemu::QueueOf(stream);
  event->ticket = lsemu::Submit(event->queue, lsemu::Operation{});
  event->queried = false;
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (event == nullptr) return Fail(cudaErrorInvalidValue);
  std::lock_guard<std::recursive_mutex> lock(lsemu::Mutex());
  if (event->queue != nullptr) lsemu::RunUpTo(*event->queue, event->ticket);
  return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  if (event == nullptr) return Fail(cudaErrorInvalidValue);
  std::lock_guard<std::recursive_mutex> lock(lsemu::Mutex());
  if (event->queue == nullptr || lsemu::Done(*event->queue, event->ticket)) return cudaSuccess;
  if (!event->queried) {
    event->queried = true;
    return cudaErrorNotReady;
  }
  lsemu::RunUpTo(*event->queue, event->ticket);
  return cudaSuccess;
}
