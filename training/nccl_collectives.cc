#include "training/nccl_collectives.h"

#if LOCKSTEP_HAVE_NCCL
#include "runtime/comm/nccl_communicator.h"
#endif

namespace lockstep {

Result<std::unique_ptr<comm::Communicator>> CreateNcclDeviceCommunicator(comm::Communicator* bootstrap,
                                                                          Backend& backend) {
  if (backend.device().kind != DeviceKind::kCuda) {
    return UnavailableError("distributed.device_collectives: NCCL needs training.device: CUDA");
  }
#if LOCKSTEP_HAVE_NCCL
  LS_ASSIGN_OR_RETURN(std::unique_ptr<comm::NcclCommunicator> nccl,
                      comm::NcclCommunicator::Create(bootstrap, backend.device().index, "gradients"));
  nccl->set_compute_stream(static_cast<cudaStream_t>(backend.native_stream()));
  return std::unique_ptr<comm::Communicator>(std::move(nccl));
#else
  (void)bootstrap;
  return UnavailableError("distributed.device_collectives: NCCL: this lockstep was built without NCCL");
#endif
}

}  // namespace lockstep
