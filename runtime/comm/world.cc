#include "runtime/comm/world.h"

#include <cerrno>
#include <cstdio>
#include <climits>
#include <cstdlib>
#include <optional>

namespace lockstep::comm {
namespace {

using Getenv = std::function<const char*(const char*)>;

Result<int> ParseInt(const std::string& variable, const std::string& value) {
  if (value.empty()) return InvalidArgumentError("environment variable " + variable + " is empty, expected an integer");
  errno = 0;
  char* end = nullptr;
  long parsed = std::strtol(value.c_str(), &end, 10);
  if (*end != '\0' || errno == ERANGE || parsed < INT_MIN || parsed > INT_MAX) {
    return InvalidArgumentError("environment variable " + variable + "='" + value + "' is not an integer");
  }
  return static_cast<int>(parsed);
}

// The variable's integer value, nullopt when unset, or the parse error.
Result<std::optional<int>> OptionalInt(const Getenv& getenv_fn, const char* variable) {
  const char* value = getenv_fn(variable);
  if (value == nullptr) return std::optional<int>();
  LS_ASSIGN_OR_RETURN(int parsed, ParseInt(variable, value));
  return std::optional<int>(parsed);
}

Result<int> RequiredInt(const Getenv& getenv_fn, const char* variable, const std::string& because) {
  LS_ASSIGN_OR_RETURN(std::optional<int> value, OptionalInt(getenv_fn, variable));
  if (!value) return InvalidArgumentError("environment variable " + std::string(variable) + " is not set but " + because);
  return *value;
}

Status Validate(const WorldInfo& w, const std::string& variables) {
  if (w.world_size < 1) return InvalidArgumentError(w.source + " world size " + std::to_string(w.world_size) + " < 1 (" + variables + ")");
  if (w.rank < 0 || w.rank >= w.world_size) {
    return InvalidArgumentError(w.source + " rank " + std::to_string(w.rank) + " is outside [0, " +
                                std::to_string(w.world_size) + ") (" + variables + ")");
  }
  if (w.local_size < 1 || w.local_size > w.world_size) {
    return InvalidArgumentError(w.source + " local size " + std::to_string(w.local_size) + " is outside [1, " +
                                std::to_string(w.world_size) + "] (" + variables + ")");
  }
  if (w.local_rank < 0 || w.local_rank >= w.local_size) {
    return InvalidArgumentError(w.source + " local rank " + std::to_string(w.local_rank) + " is outside [0, " +
                                std::to_string(w.local_size) + ") (" + variables + ")");
  }
  return Status::Ok();
}

// Open MPI's own variables, or PMIx ones. nullopt when neither is present.
Result<std::optional<WorldInfo>> FromMpi(const Getenv& getenv_fn) {
  WorldInfo w;
  w.source = "mpi";
  if (getenv_fn("OMPI_COMM_WORLD_RANK") != nullptr) {
    LS_ASSIGN_OR_RETURN(w.rank, RequiredInt(getenv_fn, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_RANK is"));
    LS_ASSIGN_OR_RETURN(w.world_size, RequiredInt(getenv_fn, "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK is"));
    LS_ASSIGN_OR_RETURN(std::optional<int> local_rank, OptionalInt(getenv_fn, "OMPI_COMM_WORLD_LOCAL_RANK"));
    LS_ASSIGN_OR_RETURN(std::optional<int> local_size, OptionalInt(getenv_fn, "OMPI_COMM_WORLD_LOCAL_SIZE"));
    w.local_rank = local_rank.value_or(0);
    w.local_size = local_size.value_or(local_rank ? w.world_size : 1);
    LS_RETURN_IF_ERROR(Validate(w, "OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK/LOCAL_SIZE"));
    return std::optional<WorldInfo>(w);
  }
  if (getenv_fn("PMIX_RANK") == nullptr) return std::optional<WorldInfo>();
  LS_ASSIGN_OR_RETURN(w.rank, RequiredInt(getenv_fn, "PMIX_RANK", "PMIX_RANK is"));
  LS_ASSIGN_OR_RETURN(std::optional<int> size, OptionalInt(getenv_fn, "PMIX_SIZE"));
  if (!size) {
    LS_ASSIGN_OR_RETURN(size, OptionalInt(getenv_fn, "SLURM_NTASKS"));
  }
  if (!size) {
    return InvalidArgumentError("PMIX_RANK=" + std::to_string(w.rank) +
                                " is set but no world size was found (PMIX_SIZE, SLURM_NTASKS)");
  }
  w.world_size = *size;
  LS_ASSIGN_OR_RETURN(std::optional<int> local_rank, OptionalInt(getenv_fn, "PMIX_LOCAL_RANK"));
  LS_ASSIGN_OR_RETURN(std::optional<int> local_size, OptionalInt(getenv_fn, "PMIX_LOCAL_SIZE"));
  if (!local_rank) {
    LS_ASSIGN_OR_RETURN(local_rank, OptionalInt(getenv_fn, "SLURM_LOCALID"));
  }
  w.local_rank = local_rank.value_or(0);
  w.local_size = local_size.value_or(local_rank ? w.world_size : 1);
  LS_RETURN_IF_ERROR(Validate(w, "PMIX_RANK/PMIX_SIZE/PMIX_LOCAL_RANK/PMIX_LOCAL_SIZE"));
  return std::optional<WorldInfo>(w);
}

// An srun step. nullopt outside one (including a bare sbatch batch script).
Result<std::optional<WorldInfo>> FromSlurm(const Getenv& getenv_fn) {
  bool in_step = getenv_fn("SLURM_STEP_ID") != nullptr || getenv_fn("SLURM_STEPID") != nullptr;
  if (!in_step || getenv_fn("SLURM_PROCID") == nullptr) return std::optional<WorldInfo>();
  WorldInfo w;
  w.source = "slurm";
  LS_ASSIGN_OR_RETURN(w.rank, RequiredInt(getenv_fn, "SLURM_PROCID", "SLURM_PROCID is"));
  LS_ASSIGN_OR_RETURN(w.world_size, RequiredInt(getenv_fn, "SLURM_NTASKS", "SLURM_PROCID is"));
  LS_ASSIGN_OR_RETURN(std::optional<int> local_rank, OptionalInt(getenv_fn, "SLURM_LOCALID"));
  w.local_rank = local_rank.value_or(0);
  LS_ASSIGN_OR_RETURN(std::optional<int> per_node, OptionalInt(getenv_fn, "SLURM_NTASKS_PER_NODE"));
  if (per_node) {
    w.local_size = *per_node;
  } else {
    const char* list_var = getenv_fn("SLURM_STEP_TASKS_PER_NODE") ? "SLURM_STEP_TASKS_PER_NODE" : "SLURM_TASKS_PER_NODE";
    const char* list = getenv_fn(list_var);
    if (list != nullptr) {
      LS_ASSIGN_OR_RETURN(std::optional<int> node_id, OptionalInt(getenv_fn, "SLURM_NODEID"));
      LS_ASSIGN_OR_RETURN(w.local_size, SlurmTasksOnNode(list_var, list, node_id.value_or(0)));
    } else {
      w.local_size = local_rank ? w.world_size : 1;  // nothing to go on: assume one node
    }
  }
  LS_RETURN_IF_ERROR(Validate(w, "SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID/tasks per node"));
  return std::optional<WorldInfo>(w);
}

struct Torchrun {
  std::optional<int> rank, world_size, local_rank, local_size, port;
  const char* addr = nullptr;
};

Result<Torchrun> ReadTorchrun(const Getenv& getenv_fn) {
  Torchrun t;
  LS_ASSIGN_OR_RETURN(t.rank, OptionalInt(getenv_fn, "RANK"));
  LS_ASSIGN_OR_RETURN(t.world_size, OptionalInt(getenv_fn, "WORLD_SIZE"));
  LS_ASSIGN_OR_RETURN(t.local_rank, OptionalInt(getenv_fn, "LOCAL_RANK"));
  LS_ASSIGN_OR_RETURN(t.local_size, OptionalInt(getenv_fn, "LOCAL_WORLD_SIZE"));
  LS_ASSIGN_OR_RETURN(t.port, OptionalInt(getenv_fn, "MASTER_PORT"));
  t.addr = getenv_fn("MASTER_ADDR");
  if (t.port && (*t.port < 1 || *t.port > 65535)) {
    return InvalidArgumentError("environment variable MASTER_PORT=" + std::to_string(*t.port) + " is outside [1, 65535]");
  }
  if (t.rank.has_value() != t.world_size.has_value()) {
    return InvalidArgumentError(std::string("torchrun environment is incomplete: ") +
                                (t.rank ? "RANK is set but WORLD_SIZE is not" : "WORLD_SIZE is set but RANK is not"));
  }
  return t;
}

}  // namespace

Result<int> SlurmTasksOnNode(const std::string& variable, const std::string& value, int node_id) {
  auto bad = [&](const std::string& why) {
    return InvalidArgumentError("environment variable " + variable + "='" + value + "' " + why);
  };
  if (node_id < 0) return bad("cannot be indexed by node id " + std::to_string(node_id));
  int node = 0;
  size_t pos = 0;
  while (pos <= value.size()) {
    size_t comma = value.find(',', pos);
    std::string item = value.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    int tasks = 0, repeat = 1;
    char tail = 0;
    if (std::sscanf(item.c_str(), "%d(x%d)%c", &tasks, &repeat, &tail) == 2 ||
        (item.find('(') == std::string::npos && std::sscanf(item.c_str(), "%d%c", &tasks, &tail) == 1)) {
      if (tasks < 1 || repeat < 1) return bad("has a non-positive entry '" + item + "'");
    } else {
      return bad("has a malformed entry '" + item + "', expected N or N(xK)");
    }
    if (node_id < node + repeat) return tasks;
    node += repeat;
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return bad("lists " + std::to_string(node) + " nodes, but SLURM_NODEID is " + std::to_string(node_id));
}

Result<WorldInfo> DiscoverWorld(const std::function<const char*(const char*)>& getenv_fn) {
  LS_ASSIGN_OR_RETURN(Torchrun torchrun, ReadTorchrun(getenv_fn));
  LS_ASSIGN_OR_RETURN(std::optional<WorldInfo> world, FromMpi(getenv_fn));
  if (!world) {
    LS_ASSIGN_OR_RETURN(world, FromSlurm(getenv_fn));
  }
  if (world) {
    // torchrun variables next to a real launcher must agree with it.
    const std::string prefix = world->source == "mpi" ? "MPI" : "Slurm";
    if (torchrun.world_size && *torchrun.world_size != world->world_size) {
      return InvalidArgumentError("contradictory launchers: torchrun WORLD_SIZE=" + std::to_string(*torchrun.world_size) +
                                  " but " + prefix + " world size=" + std::to_string(world->world_size) +
                                  (world->source == "mpi" ? " (OMPI_COMM_WORLD_SIZE/PMIX)" : " (SLURM_NTASKS)") +
                                  "; unset one of them");
    }
    if (torchrun.rank && *torchrun.rank != world->rank) {
      return InvalidArgumentError("contradictory launchers: torchrun RANK=" + std::to_string(*torchrun.rank) + " but " +
                                  prefix + " rank=" + std::to_string(world->rank) + "; unset one of them");
    }
  } else if (torchrun.rank) {
    world = WorldInfo();
    world->source = "torchrun";
    world->rank = *torchrun.rank;
    world->world_size = *torchrun.world_size;
    world->local_rank = torchrun.local_rank.value_or(0);
    world->local_size = torchrun.local_size.value_or(torchrun.local_rank ? world->world_size : 1);
    LS_RETURN_IF_ERROR(Validate(*world, "RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE"));
  } else {
    world = WorldInfo();
  }
  if (torchrun.addr != nullptr) world->master_addr = torchrun.addr;
  if (torchrun.port) world->master_port = *torchrun.port;
  return *world;
}

}  // namespace lockstep::comm
