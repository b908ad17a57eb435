// The supervisor's control plane: a Boost.Asio TCP server on its own thread.
// Ranks connect, authenticate with the per-job token (LOCKSTEP_JOB_TOKEN) and send
// heartbeats; connections with a wrong token are rejected, logged and closed
// without touching the job's state. Line protocol (one message per line):
//   rank -> "HELLO <token> <attempt> <rank> <world> <pid> <host>"   server -> "OK" | "DENIED"
//   rank -> "HB <step> <loss> <samples_per_sec> <phase>"  (every heartbeat interval)
//   rank -> "BYE <phase>"                                 (clean exit)
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

namespace lockstep {

struct RankState {
  int rank = -1;
  std::string host;
  int pid = 0;
  long long step = 0;
  double loss = 0;
  double samples_per_sec = 0;
  std::string phase = "starting";
  double connected_at = 0;       // MonotonicSeconds(); 0 = never connected
  double last_heartbeat = 0;     // MonotonicSeconds() of the last message
  double first_step_at = 0;      // when it first reported a step done in this attempt
  long long first_step = -1;     // the first step it reported in this attempt
  bool connected = false;
  bool said_bye = false;
  double disconnected_at = 0;    // set when the connection dropped without BYE
};

// Seconds on a monotonic clock (shared by the server and the supervisor).
double MonotonicSeconds();

class ControlServer {
 public:
  // Listens on bind:port (port 0: any free port) and serves on a background thread.
  static Result<std::unique_ptr<ControlServer>> Start(const std::string& bind, int port, const std::string& token);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  int port() const;
  // A new attempt of the job: forgets rank state; heartbeats of older attempts are ignored.
  void BeginAttempt(int attempt, int world_size);
  // The ranks of the current attempt (index = rank; rank -1 = not connected yet).
  std::vector<RankState> Snapshot() const;
  int rejected_connections() const;
  // Log lines produced since the last call (rejections, connects, drops).
  std::vector<std::string> TakeEvents();

  struct Impl;

 private:
  explicit ControlServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A random token of 32 hex digits from /dev/urandom.
std::string RandomToken();

}  // namespace lockstep
