// The CUDA emulator's stand-in for <nccl.h>: the calls runtime/comm/nccl_communicator.cc
// makes, with NCCL 2's signatures and enum values, executed by
// tests/cuda_emulator/nccl.cc with MPI carrying the data between processes.
//
// Model. A collective is issued on a stream. The emulator first runs the work that
// stream is ordered after (its own queued work and, through events, other streams'),
// then reads the send buffer and exchanges it with the other ranks at once, blocking
// like an MPI collective, and queues the write of the result on the stream. So a
// collective reads exactly what a GPU would let it read (an input produced on a stream
// the collective is not ordered after has not been written yet: it reads the old
// bytes), and its result lands only when something waits for the stream. Grouped calls
// (ncclGroupStart/End) run in issue order at the outermost ncclGroupEnd.
//
// Communicators: one rank needs no MPI. More than one rank must be all of
// MPI_COMM_WORLD (MPI initialised by the caller), one process per rank; ncclCommInitRankConfig checks that every rank passed
// the same unique id and a distinct rank. Non-blocking communicators
// (config.blocking = 0) answer creation, splitting and finalisation with
// ncclInProgress, and ncclCommGetAsyncError reports ncclInProgress once before
// ncclSuccess, so callers must poll as NCCL asks.
//
// Checks: the communicator is live and ready; send and receive buffers lie in
// cudaMalloc'd memory with room for the counts given; type, operation and root are
// valid. A refusal prints why and leaves it for ncclGetLastError. Not emulated:
// ncclAvg, half and bf16 types, NCCL_SPLIT_NOCOLOR, anything about timing or
// transports, and counts over INT_MAX between ranks (the MPI exchange takes int
// counts: the run stops and says so).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#define NCCL_MAJOR 2
#define NCCL_UNIQUE_ID_BYTES 128

typedef struct ncclComm* ncclComm_t;
typedef struct {
  char internal[NCCL_UNIQUE_ID_BYTES];
} ncclUniqueId;

typedef enum {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
  ncclRemoteError = 6,
  ncclInProgress = 7,
  ncclNumResults = 9
} ncclResult_t;

typedef enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4 } ncclRedOp_t;
typedef enum {
  ncclInt8 = 0,
  ncclChar = 0,
  ncclUint8 = 1,
  ncclInt32 = 2,
  ncclInt = 2,
  ncclUint32 = 3,
  ncclInt64 = 4,
  ncclUint64 = 5,
  ncclFloat16 = 6,
  ncclHalf = 6,
  ncclFloat32 = 7,
  ncclFloat = 7,
  ncclFloat64 = 8,
  ncclDouble = 8,
  ncclBfloat16 = 9
} ncclDataType_t;

// The fields the emulator reads; NCCL's struct has more (CTA counts, net name, ...).
typedef struct {
  int blocking;
} ncclConfig_t;
#define NCCL_CONFIG_INITIALIZER {1}

const char* ncclGetErrorString(ncclResult_t result);
const char* ncclGetLastError(ncclComm_t comm);

ncclResult_t ncclGetUniqueId(ncclUniqueId* id);
ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank,
                                    ncclConfig_t* config);
ncclResult_t ncclCommSplit(ncclComm_t comm, int color, int key, ncclComm_t* newcomm, ncclConfig_t* config);
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* async_error);
ncclResult_t ncclCommFinalize(ncclComm_t comm);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
ncclResult_t ncclCommAbort(ncclComm_t comm);

ncclResult_t ncclGroupStart();
ncclResult_t ncclGroupEnd();

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, ncclDataType_t type, int root,
                           ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                        int root, ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclAllGather(const void* send, void* recv, size_t send_count, ncclDataType_t type,
                           ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclReduceScatter(const void* send, void* recv, size_t recv_count, ncclDataType_t type,
                               ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream);
