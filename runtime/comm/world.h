// DiscoverWorld: who this process is in the job (rank, world size, local rank/size),
// read from the launcher's environment variables: MPI (Open MPI / PMIx), then Slurm
// srun, then torchrun, else a world of 1. Pure function of the environment; thread-safe.
#pragma once

#include <cstdlib>
#include <functional>
#include <string>

#include "common/status.h"

namespace lockstep::comm {

struct WorldInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;   // rank among the processes on this node
  int local_size = 1;   // processes on this node
  std::string source = "single";  // "mpi", "slurm", "torchrun" or "single"
  std::string master_addr;        // torchrun MASTER_ADDR when set (NCCL bootstrap later)
  int master_port = 0;            // torchrun MASTER_PORT when set
};

// Rules (first match decides the source):
//  * mpi: OMPI_COMM_WORLD_RANK/SIZE (+ _LOCAL_RANK/_LOCAL_SIZE), or PMIX_RANK with the
//    size from PMIX_SIZE (else SLURM_NTASKS under `srun --mpi=pmix`). Slurm variables
//    are then ignored: under mpirun inside an sbatch allocation every rank sees
//    SLURM_PROCID=0, which is the batch step's, not an error.
//  * slurm: SLURM_PROCID + SLURM_NTASKS inside an srun step (SLURM_STEP_ID or
//    SLURM_STEPID set; a batch script alone is not a multi-rank launch). Local rank
//    SLURM_LOCALID; local size SLURM_NTASKS_PER_NODE, else derived from
//    SLURM_STEP_TASKS_PER_NODE / SLURM_TASKS_PER_NODE ("2(x3),1") and SLURM_NODEID.
//  * torchrun: RANK + WORLD_SIZE (+ LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT).
// When torchrun's RANK/WORLD_SIZE are also set next to an mpi or slurm source and
// disagree with it, that is InvalidArgument naming both sources and values. A malformed
// number is InvalidArgument naming the variable. Ranks out of range are InvalidArgument.
Result<WorldInfo> DiscoverWorld(
    const std::function<const char*(const char*)>& getenv_fn = [](const char* name) -> const char* {
      return ::getenv(name);
    });

// Parses Slurm's compressed tasks-per-node list ("2(x3),1") and returns the entry of
// node `node_id`; InvalidArgument naming `variable` when malformed or too short.
Result<int> SlurmTasksOnNode(const std::string& variable, const std::string& value, int node_id);

}  // namespace lockstep::comm
