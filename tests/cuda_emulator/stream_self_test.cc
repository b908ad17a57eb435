// The emulator's stream rules (streams.cc, memory.cc): queued work runs only when the
// host or another stream waits for it, so each test shows what a reader sees with and
// without the synchronisation CUDA asks for. Runs in both orders like the rest.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "tests/cuda_emulator/self_test_kernels.h"

namespace lsemu::self_test {
namespace {

constexpr int kN = 300;  // three blocks of AddKernel

// A device buffer of kN ints, every one `value` once the constructor returns.
struct Ints {
  explicit Ints(int value) {
    EXPECT_EQ(cudaMalloc(&ptr, kN * sizeof(int)), cudaSuccess);
    Set(value);
  }
  ~Ints() { cudaFree(ptr); }
  void Set(int value) {
    const std::vector<int> host(kN, value);
    EXPECT_EQ(cudaMemcpy(ptr, host.data(), kN * sizeof(int), cudaMemcpyHostToDevice), cudaSuccess);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  // What the host reads now with a plain cudaMemcpy (legacy default stream).
  std::vector<int> Read() const {
    std::vector<int> host(kN);
    EXPECT_EQ(cudaMemcpy(host.data(), ptr, kN * sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }
  int* ptr = nullptr;
};

std::vector<int> All(int value) { return std::vector<int>(kN, value); }

struct Stream {
  explicit Stream(unsigned int flags) { EXPECT_EQ(cudaStreamCreateWithFlags(&s, flags), cudaSuccess); }
  ~Stream() { cudaStreamDestroy(s); }
  cudaStream_t s = nullptr;
};

struct Event {
  Event() { EXPECT_EQ(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), cudaSuccess); }
  ~Event() { cudaEventDestroy(e); }
  cudaEvent_t e = nullptr;
};

TEST(EmulatorStreamTest, ANonBlockingStreamsWorkIsDoneOnlyWhenTheHostWaitsForIt) {
  Stream stream(cudaStreamNonBlocking);
  Ints x(0);
  AddOnStream(nullptr, x.ptr, kN, 7, stream.s);
  // cudaMemcpy runs on the legacy default stream, which does not wait for this one.
  EXPECT_EQ(x.Read(), All(0));
  ASSERT_EQ(cudaStreamSynchronize(stream.s), cudaSuccess);
  EXPECT_EQ(x.Read(), All(7));
}

TEST(EmulatorStreamTest, ABlockingStreamAndTheLegacyStreamWaitForEachOther) {
  Stream blocking(cudaStreamDefault), non_blocking(cudaStreamNonBlocking);
  Ints x(0), y(0), z(0);
  AddOnStream(nullptr, x.ptr, kN, 7, blocking.s);
  EXPECT_EQ(x.Read(), All(7));  // the legacy stream's copy waited for the launch
  // A memset queued on the legacy stream, then a launch reading its target.
  ASSERT_EQ(cudaMemset(x.ptr, 0, kN * sizeof(int)), cudaSuccess);
  AddOnStream(x.ptr, y.ptr, kN, 1, blocking.s);
  AddOnStream(x.ptr, z.ptr, kN, 1, non_blocking.s);
  ASSERT_EQ(cudaStreamSynchronize(non_blocking.s), cudaSuccess);  // first: the memset is still queued
  ASSERT_EQ(cudaStreamSynchronize(blocking.s), cudaSuccess);
  EXPECT_EQ(y.Read(), All(1));  // after the memset
  EXPECT_EQ(z.Read(), All(8));  // the non-blocking stream did not wait for it
}

TEST(EmulatorStreamTest, AnEventWaitOrdersTwoStreamsAndItsAbsenceShows) {
  Stream producer(cudaStreamNonBlocking), consumer(cudaStreamNonBlocking);
  Event produced;
  for (bool wait : {true, false}) {
    SCOPED_TRACE(wait ? "with the event wait" : "without it");
    Ints x(0), y(0);
    AddOnStream(nullptr, x.ptr, kN, 5, producer.s);
    ASSERT_EQ(cudaEventRecord(produced.e, producer.s), cudaSuccess);
    if (wait) {
      ASSERT_EQ(cudaStreamWaitEvent(consumer.s, produced.e, 0), cudaSuccess);
    }
    AddOnStream(x.ptr, y.ptr, kN, 1, consumer.s);
    ASSERT_EQ(cudaStreamSynchronize(consumer.s), cudaSuccess);
    EXPECT_EQ(y.Read(), All(wait ? 6 : 1));
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(x.Read(), All(5));
  }
}

TEST(EmulatorStreamTest, QueriesAreNotReadyWhileWorkIsQueued) {
  Stream stream(cudaStreamNonBlocking);
  Event never_recorded, done;
  EXPECT_EQ(cudaEventQuery(never_recorded.e), cudaSuccess);
  EXPECT_EQ(cudaStreamQuery(stream.s), cudaSuccess);
  Ints x(0);
  AddOnStream(nullptr, x.ptr, kN, 3, stream.s);
  ASSERT_EQ(cudaEventRecord(done.e, stream.s), cudaSuccess);
  // Not ready, and one query does not finish the work; a polling loop does.
  EXPECT_EQ(cudaEventQuery(done.e), cudaErrorNotReady);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // not ready is not an error
  EXPECT_EQ(x.Read(), All(0));
  EXPECT_EQ(cudaEventQuery(done.e), cudaSuccess);
  EXPECT_EQ(x.Read(), All(3));
  AddOnStream(x.ptr, x.ptr, kN, 1, stream.s);
  EXPECT_EQ(cudaStreamQuery(stream.s), cudaErrorNotReady);
  EXPECT_EQ(x.Read(), All(3));
  EXPECT_EQ(cudaStreamQuery(stream.s), cudaSuccess);
  EXPECT_EQ(x.Read(), All(4));
}

TEST(EmulatorStreamTest, AnUploadReadsPageableMemoryAtOnceAndPinnedMemoryWhenItRuns) {
  Stream stream(cudaStreamNonBlocking);
  Ints x(0);
  std::vector<int> pageable = All(3);
  ASSERT_EQ(cudaMemcpyAsync(x.ptr, pageable.data(), kN * sizeof(int), cudaMemcpyHostToDevice, stream.s),
            cudaSuccess);
  pageable = All(9);  // CUDA staged the source before returning
  ASSERT_EQ(cudaStreamSynchronize(stream.s), cudaSuccess);
  EXPECT_EQ(x.Read(), All(3));

  int* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&pinned), kN * sizeof(int)), cudaSuccess);
  std::fill(pinned, pinned + kN, 3);
  ASSERT_EQ(cudaMemcpyAsync(x.ptr, pinned, kN * sizeof(int), cudaMemcpyHostToDevice, stream.s),
            cudaSuccess);
  std::fill(pinned, pinned + kN, 9);  // a bug: the copy has not read it yet
  ASSERT_EQ(cudaStreamSynchronize(stream.s), cudaSuccess);
  EXPECT_EQ(x.Read(), All(9));
  // A download into pinned memory is there only after a wait.
  AddOnStream(nullptr, x.ptr, kN, 4, stream.s);
  ASSERT_EQ(cudaMemcpyAsync(pinned, x.ptr, kN * sizeof(int), cudaMemcpyDeviceToHost, stream.s),
            cudaSuccess);
  EXPECT_EQ(std::vector<int>(pinned, pinned + kN), All(9));
  ASSERT_EQ(cudaStreamSynchronize(stream.s), cudaSuccess);
  EXPECT_EQ(std::vector<int>(pinned, pinned + kN), All(4));
  ASSERT_EQ(cudaFreeHost(pinned), cudaSuccess);
}

TEST(EmulatorStreamTest, ADownloadIntoPageableMemoryReturnsWithTheData) {
  Stream stream(cudaStreamNonBlocking);
  Ints x(0);
  AddOnStream(nullptr, x.ptr, kN, 2, stream.s);
  std::vector<int> host(kN, -1);
  ASSERT_EQ(cudaMemcpyAsync(host.data(), x.ptr, kN * sizeof(int), cudaMemcpyDeviceToHost, stream.s),
            cudaSuccess);
  EXPECT_EQ(host, All(2));
}

TEST(EmulatorStreamTest, ADestroyedStreamsWorkRunsWhenWaitedFor) {
  Ints x(0);
  {
    Stream stream(cudaStreamNonBlocking);
    AddOnStream(nullptr, x.ptr, kN, 6, stream.s);
  }
  EXPECT_EQ(x.Read(), All(0));  // not done: nothing waited for it
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(x.Read(), All(6));
}

TEST(EmulatorStreamTest, FreeingWaitsForQueuedWork) {
  Stream stream(cudaStreamNonBlocking);
  int* scratch = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&scratch), kN * sizeof(int)), cudaSuccess);
  Ints y(0);
  AddOnStream(nullptr, scratch, kN, 1, stream.s);
  AddOnStream(scratch, y.ptr, kN, 1, stream.s);
  ASSERT_EQ(cudaFree(scratch), cudaSuccess);  // AddressSanitizer: no use after free
  EXPECT_EQ(y.Read(), All(2));
}

}  // namespace
}  // namespace lsemu::self_test
