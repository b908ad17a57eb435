#include "launcher/supervisor.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <regex>
#include <thread>

#include "common/exit_codes.h"
#include "launcher/child_process.h"
#include "launcher/control_server.h"
#include "launcher/netif.h"
#include "launcher/silent_hosts.h"
#include "launcher/status_file.h"

namespace lockstep {
namespace {

std::atomic<int> g_signal{0};
extern "C" void OnSupervisorSignal(int sig) { g_signal.store(sig); }

void InstallSignalHandlers() {
  struct sigaction sa {};
  sa.sa_handler = OnSupervisorSignal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGUSR1, SIGTERM, SIGINT}) sigaction(sig, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

std::string Hostname() {
  char buf[256] = "localhost";
  gethostname(buf, sizeof(buf) - 1);
  return buf;
}

void Say(const std::string& line) {
  std::cout << "[lockstep launch] " << line << std::endl;
}

// The ranks' output: appended to RUN_DIR/launch.log, optionally echoed, and the last
// lines per rank (from mpirun's --tag-output "[job,rank]<stdout>:" prefixes) and of
// mpirun itself kept for failure reports. Lines arrive on the reader thread.
class OutputLog {
 public:
  OutputLog(const std::string& path, bool echo) : echo_(echo) {
    if (!path.empty()) file_.open(path, std::ios::app);
  }
  void Note(const std::string& line) {
    std::lock_guard<std::mutex> lock(mu_);
    if (file_) file_ << "[lockstep launch] " << line << std::endl;
  }
  void Line(const std::string& line) {
    static const std::regex tag(R"(^\[\d+,(\d+)\]<(stdout|stderr)>:(.*)$)");
    std::smatch m;
    std::lock_guard<std::mutex> lock(mu_);
    if (file_) file_ << line << "\n" << std::flush;
    if (echo_) std::cout << line << "\n" << std::flush;
    if (std::regex_match(line, m, tag)) {
      auto& q = by_rank_[std::stoi(m[1].str())];
      q.push_back(m[3].str());
      if (q.size() > 8) q.pop_front();
    } else {
      mpirun_.push_back(line);
      if (mpirun_.size() > 80) mpirun_.pop_front();
    }
  }
  std::vector<std::string> LastLines(int rank) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_rank_.find(rank);
    return it == by_rank_.end() ? std::vector<std::string>{} : std::vector<std::string>(it->second.begin(), it->second.end());
  }
  std::string MpirunText() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    for (const auto& l : mpirun_) out += l + " ";
    return out;
  }
  void ClearAttempt() {
    std::lock_guard<std::mutex> lock(mu_);
    by_rank_.clear();
    mpirun_.clear();
  }

 private:
  std::mutex mu_;
  std::ofstream file_;
  bool echo_;
  std::map<int, std::deque<std::string>> by_rank_;
  std::deque<std::string> mpirun_;
};

long long MinStep(const std::vector<RankState>& ranks) {
  long long m = -1;
  for (const auto& r : ranks) {
    if (r.rank >= 0) m = m < 0 ? r.step : std::min(m, r.step);
  }
  return m < 0 ? 0 : m;
}

// Fills rank, host, exit code or signal from mpirun's report of the first failure.
void ParseMpirunReport(const std::string& text, RestartRecord* rec) {
  static const std::regex by_signal(
      R"(process rank (\d+) with PID (\d+) on node (\S+) exited on signal (\d+) \(([^)]*)\))");
  static const std::regex by_exit(R"(Process name:\s*\[\[\d+,\d+\],(\d+)\]\s*Exit code:\s*(\d+))");
  std::smatch m;
  if (std::regex_search(text, m, by_signal)) {
    rec->rank = std::stoi(m[1].str());
    rec->host = m[3].str();
    rec->signal = std::stoi(m[4].str());
  } else if (std::regex_search(text, m, by_exit)) {
    rec->rank = std::stoi(m[1].str());
    rec->exit_code = std::stoi(m[2].str());
  }
}

class Supervisor {
 public:
  explicit Supervisor(const SupervisorOptions& o) : o_(o), c_(o.cluster.config) {}

  int Run() {
    run_dir_ = o_.request.train.run_dir;
    if (!run_dir_.empty()) {
      std::string cmd = "mkdir -p '" + run_dir_ + "'";
      if (std::system(cmd.c_str()) != 0) {
        std::cerr << "lockstep launch: cannot create the run directory " << run_dir_ << "\n";
        return kExitUsage;
      }
    } else {
      Say("warning: no --run-dir in the training command: no status.json, and a restart starts from scratch");
    }
    const bool local = EffectiveMode(c_) == cluster::LOCAL;
    const std::string bind = !c_.control().bind().empty() ? c_.control().bind() : (local ? "127.0.0.1" : "0.0.0.0");
    const std::string advertise = AdvertisedAddress(local);
    token_ = RandomToken();
    auto server = ControlServer::Start(bind, c_.control().port(), token_);
    if (!server.ok()) {
      std::cerr << "lockstep launch: " << server.status().message() << "\n";
      return kExitFailure;
    }
    server_ = std::move(server).value();
    status_.supervisor = advertise + ":" + std::to_string(server_->port());
    status_.supervisor_pid = static_cast<int>(getpid());
    status_.cluster = o_.cluster.path;
    status_.run_dir = run_dir_;
    status_.max_restarts = MaxRestarts(c_);
    status_.started_at = NowIso8601();
    status_.supervisor_started_mono = MonotonicSeconds();
    if (const char* j = std::getenv("SLURM_JOB_ID")) status_.slurm_job_id = j;
    if (!status_.slurm_job_id.empty()) {
      const char* rc = std::getenv("SLURM_RESTART_COUNT");
      status_.slurm_restart_count = rc ? std::atoi(rc) : 0;
    }
    log_ = std::make_unique<OutputLog>(run_dir_.empty() ? "" : run_dir_ + "/launch.log", o_.echo_output);
    InstallSignalHandlers();
    if (!status_.slurm_job_id.empty()) {
      Say("Slurm job " + status_.slurm_job_id + ", SLURM_RESTART_COUNT " + std::to_string(status_.slurm_restart_count));
    }

    for (int attempt = 0;; ++attempt) {
      Outcome out = RunAttempt(attempt);
      if (out.done) return Finish(out.exit_code, out.error);
      if (attempt >= MaxRestarts(c_)) {
        status_.restarts.back().restarted = false;
        std::string msg = "giving up: the job failed " + std::to_string(attempt + 1) + " time(s) and max_restarts is " +
                          std::to_string(MaxRestarts(c_)) + "; last failure: " + out.record.reason;
        return Finish(kExitRestartsExhausted, msg);
      }
      double wait = BackoffSeconds(c_, attempt + 1);
      status_.state = "restarting";
      Say("restarting (" + std::to_string(attempt + 1) + "/" + std::to_string(MaxRestarts(c_)) + ") with --resume auto in " +
          Fixed(wait) + " s");
      WriteStatus();
      for (double t = 0; t < wait; t += 0.05) {
        if (g_signal.load() != 0) return Finish(kExitRequeue, "preempted while waiting to restart; resume from the last checkpoint");
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  }

 private:
  struct Outcome {
    bool done = false;  // false: a failure worth a restart
    int exit_code = 0;
    std::string error;
    RestartRecord record;
  };

  // Where the ranks reach the control plane: the configured address; on one host the
  // loopback; else this host's address on the MPI network (host names may resolve to
  // another network, or not at all, on the compute nodes); else the host name.
  std::string AdvertisedAddress(bool local) {
    if (!c_.control().advertise().empty()) return c_.control().advertise();
    if (local) return "127.0.0.1";
    if (!c_.mpi().if_include().empty()) {
      std::string ip = PickAddress(LocalInterfaces(), c_.mpi().if_include());
      if (!ip.empty()) return ip;
      Say("warning: no address of this host is on mpi.if_include \"" + c_.mpi().if_include() +
          "\"; the ranks will reach the supervisor at " + Hostname() + " (set control.advertise)");
    }
    return Hostname();
  }

  // Ranks of the attempt that reached the control plane but have not said goodbye,
  // after waiting up to 2 s for goodbyes still in flight (mpirun just exited).
  std::vector<RankState> AwaitGoodbyes() {
    std::vector<RankState> missing;
    const double until = MonotonicSeconds() + 2.0;
    for (;;) {
      missing.clear();
      bool in_flight = false;
      for (const auto& r : server_->Snapshot()) {
        if (r.rank < 0 || r.said_bye) continue;
        missing.push_back(r);
        in_flight |= r.connected;
      }
      if (!in_flight || MonotonicSeconds() > until) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    Events();
    return missing;
  }

  static std::string Unfinished(const std::vector<RankState>& missing) {
    std::string list;
    for (const auto& r : missing) list += (list.empty() ? "" : ", ") + std::to_string(r.rank) + " (" + r.host + ")";
    return std::string(missing.size() == 1 ? "rank " : "ranks ") + list + " did not finish (no goodbye on the control plane)";
  }

  // Silence on the control plane worth reporting: a few heartbeats missed.
  double QuietSeconds() const {
    return std::min(HeartbeatTimeoutSeconds(c_) / 2, std::max(3 * HeartbeatIntervalSeconds(c_), 1.0));
  }

  // Every rank of one host silent while the job failed: that node was lost or cut off,
  // and it is the root cause, whatever symptom (a peer's collective deadline, a peer
  // leaving, mpirun's report) the supervisor saw first.
  static void NameLostHost(const SilentHost& lost, RestartRecord* rec) {
    const std::string evidence = DescribeSilentHost(lost) + ": node " + lost.host + " lost or cut off";
    if (rec->host == lost.host) {
      rec->reason += "; " + evidence;
      return;
    }
    rec->reason = evidence + "; seen first as: " + rec->reason;
    rec->rank = lost.ranks.front();
    rec->host = lost.host;
    rec->exit_code = -1;
    rec->signal = 0;
  }

  static std::string Fixed(double v) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.1f", v);
    return buf;
  }

  int Finish(int code, const std::string& error) {
    status_.exit_code = code;
    status_.error = error;
    if (code == kExitOk) status_.state = "succeeded";
    else if (code == kExitRequeue) status_.state = "preempted";
    else status_.state = "failed";
    WriteStatus();
    if (!error.empty()) {
      Say(error);
      log_->Note(error);
    }
    Say("exit code " + std::to_string(code) +
        (code == kExitOk ? " (success)" : code == kExitRequeue ? " (preempted: checkpoint saved, run again to resume)" : ""));
    return code;
  }

  void WriteStatus() {
    status_.now = MonotonicSeconds();
    status_.updated_at = NowIso8601();
    if (server_) {
      status_.ranks = server_->Snapshot();
      status_.rejected_connections = server_->rejected_connections();
      status_.step = MinStep(status_.ranks);
    }
    Status s = WriteStatusFile(run_dir_, status_);
    if (!s.ok() && !status_write_warned_) {
      Say("warning: " + s.message());
      status_write_warned_ = true;
    }
  }

  void Events() {
    for (const auto& e : server_->TakeEvents()) {
      Say(e);
      log_->Note(e);
    }
  }

  void ProgressLine(int attempt, const std::vector<RankState>& ranks) {
    int up = 0;
    long long lo = -1, hi = 0;
    double loss = 0, sps = 0;
    for (const auto& r : ranks) {
      if (r.rank < 0) continue;
      ++up;
      lo = lo < 0 ? r.step : std::min(lo, r.step);
      hi = std::max(hi, r.step);
      if (r.rank == 0) loss = r.loss;
      if (r.rank == 0) sps = r.samples_per_sec;  // every rank reports the global rate
    }
    char buf[256];
    std::snprintf(buf, sizeof(buf), "attempt %d | %d/%zu ranks up | step %lld (max %lld) | loss %.4f | %.0f samples/s",
                  attempt + 1, up, ranks.size(), lo < 0 ? 0 : lo, hi, loss, sps);
    Say(buf);
  }

  // Local ranks whose pids we know (from their HELLO).
  void SignalLocalRanks(int sig) {
    const std::string me = Hostname();
    for (const auto& r : server_->Snapshot()) {
      if (r.rank >= 0 && r.pid > 0 && r.host == me) kill(r.pid, sig);
    }
  }

  // SIGTERM to mpirun's group (and SIGCONT+SIGTERM to stopped local ranks), SIGKILL after the grace period.
  void StopJob(ChildProcess* child) {
    SignalLocalRanks(SIGCONT);
    child->SignalGroup(SIGTERM);
    const double until = MonotonicSeconds() + StopGraceSeconds(c_);
    while (!child->Poll(nullptr) && MonotonicSeconds() < until) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    SignalLocalRanks(SIGKILL);
    if (!child->Poll(nullptr)) child->SignalGroup(SIGKILL);
    while (!child->Poll(nullptr)) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  Outcome RunAttempt(int attempt) {
    Outcome out;
    LaunchRequest req = o_.request;
    if (attempt > 0) req.train.args = WithResumeAuto(req.train.args);
    char interval[32];
    std::snprintf(interval, sizeof(interval), "%d", static_cast<int>(std::lround(HeartbeatIntervalSeconds(c_) * 1000)));
    req.control_env = {{"LOCKSTEP_SUPERVISOR", status_.supervisor},
                       {"LOCKSTEP_JOB_TOKEN", token_},
                       {"LOCKSTEP_HEARTBEAT_INTERVAL_MS", interval},
                       {"LOCKSTEP_LAUNCH_ATTEMPT", std::to_string(attempt)}};
    auto plan = RenderLaunch(o_.cluster, req);
    if (!plan.ok()) {
      out.done = true;
      out.exit_code = kExitUsage;
      out.error = plan.status().message();
      return out;
    }
    status_.attempt = attempt;
    status_.world_size = plan->nprocs;
    status_.command = CommandLine(plan->argv);
    status_.state = "starting";
    server_->BeginAttempt(attempt, plan->nprocs);
    log_->ClearAttempt();
    Say("attempt " + std::to_string(attempt + 1) + ": " + status_.command);
    log_->Note("attempt " + std::to_string(attempt + 1) + " at " + NowIso8601() + ": " + status_.command);
    if (Status written = WriteHostfile(*plan); !written.ok()) {
      out.done = true;
      out.exit_code = kExitFailure;
      out.error = written.message();
      return out;
    }
    OutputLog* log = log_.get();
    auto child = ChildProcess::Spawn(plan->argv, plan->env, [log](const std::string& l) { log->Line(l); });
    if (!child.ok()) {
      out.done = true;
      out.exit_code = kExitUsage;
      out.error = child.status().message();
      return out;
    }
    const double start = MonotonicSeconds();
    status_.attempt_started_mono = start;
    double next_status = 0, next_progress = start + std::max(0.0, ProgressIntervalSeconds(c_));
    double preempt_deadline = 0;
    std::string hang;  // why the job is being stopped (a missed heartbeat or start-up)
    std::vector<SilentHost> silent;  // hosts silent on the control plane when the failure was seen
    RestartRecord rec;
    int wait_status = 0;
    while (!(*child)->Poll(&wait_status)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const double now = MonotonicSeconds();
      Events();
      std::vector<RankState> ranks = server_->Snapshot();
      bool all_up = true;
      for (const auto& r : ranks) all_up &= r.rank >= 0;
      if (all_up && status_.state == "starting") status_.state = "running";
      if (int sig = g_signal.exchange(0); sig != 0) {
        Say(std::string("received ") + strsignal(sig) + ": asking the ranks to checkpoint and exit (SIGUSR1)");
        status_.state = "preempting";
        (*child)->SignalGroup(SIGUSR1);
        SignalLocalRanks(SIGUSR1);
        if (preempt_deadline == 0) preempt_deadline = now + PreemptGraceSeconds(c_);
      }
      if (preempt_deadline > 0 && now > preempt_deadline) {
        Say("the ranks did not exit within " + Fixed(PreemptGraceSeconds(c_)) + " s of the preemption signal; stopping them");
        StopJob(child->get());
        break;
      }
      if (preempt_deadline == 0) {
        for (const auto& r : ranks) {
          if (r.rank >= 0 && !r.said_bye && r.connected && now - r.last_heartbeat > HeartbeatTimeoutSeconds(c_)) {
            rec.rank = r.rank;
            rec.host = r.host;
            rec.detect_seconds = now - r.last_heartbeat;
            rec.detected_mono = now;
            hang = "rank " + std::to_string(r.rank) + " (" + r.host + ", pid " + std::to_string(r.pid) +
                   ") sent no heartbeat for " + Fixed(now - r.last_heartbeat) + " s (timeout " +
                   Fixed(HeartbeatTimeoutSeconds(c_)) + " s) at step " + std::to_string(r.step) + ": hung or stopped";
            break;
          }
        }
        if (hang.empty()) {
          // A rank gone without a goodbye normally makes mpirun end the job at once; when
          // it does not (its abort cannot reach a node that was cut off), stop it here.
          for (const auto& r : ranks) {
            if (r.rank >= 0 && !r.said_bye && !r.connected && r.disconnected_at > 0 &&
                now - r.disconnected_at > ExitGraceSeconds(c_)) {
              rec.rank = r.rank;
              rec.host = r.host;
              rec.detected_mono = now;
              hang = "rank " + std::to_string(r.rank) + " (" + r.host + ", pid " + std::to_string(r.pid) +
                     ") left without a goodbye " + Fixed(now - r.disconnected_at) +
                     " s ago and mpirun has not ended the job (fault.exit_grace_seconds " +
                     Fixed(ExitGraceSeconds(c_)) + " s)";
              break;
            }
          }
        }
        if (hang.empty() && !all_up && now - start > StartupTimeoutSeconds(c_)) {
          std::string missing;
          for (size_t i = 0; i < ranks.size(); ++i) {
            if (ranks[i].rank < 0) missing += (missing.empty() ? "" : ",") + std::to_string(i);
          }
          hang = "rank(s) " + missing + " did not connect within " + Fixed(StartupTimeoutSeconds(c_)) +
                 " s (fault.startup_timeout_seconds)";
        }
        if (!hang.empty()) {
          rec.step = MinStep(ranks);
          silent = FindSilentHosts(ranks, now, QuietSeconds());
          Say("failure: " + hang + "; stopping the job");
          StopJob(child->get());
          break;
        }
      }
      if (now >= next_status) {
        WriteStatus();
        next_status = now + 1.0;
      }
      if (ProgressIntervalSeconds(c_) > 0 && now >= next_progress) {
        ProgressLine(attempt, ranks);
        next_progress = now + ProgressIntervalSeconds(c_);
      }
    }
    const double ended = MonotonicSeconds();
    (*child)->Poll(&wait_status);
    (*child)->DrainOutput(2.0);
    Events();
    WriteStatus();
    const std::vector<RankState> ranks = server_->Snapshot();
    double first_drop = 0;  // a rank's control connection dropping is the earliest sign of its death
    for (const auto& r : ranks) {
      if (r.rank >= 0 && r.disconnected_at > 0 && (first_drop == 0 || r.disconnected_at < first_drop)) first_drop = r.disconnected_at;
    }
    if (hang.empty() && WIFEXITED(wait_status)) {
      int code = WEXITSTATUS(wait_status);
      // mpirun's 0 is a success only when every rank that reached the control plane left
      // with a goodbye: one killed (e.g. by Slurm on a node failure) or cut off never says it.
      const std::vector<RankState> missing = code == kExitOk ? AwaitGoodbyes() : std::vector<RankState>{};
      if (code == kExitOk && missing.empty()) {
        out.done = true;
        return out;
      }
      if (code == kExitRequeue || (preempt_deadline > 0 && code != kExitOk)) {
        out.done = true;
        out.exit_code = code == kExitRequeue ? kExitRequeue : code;
        out.error = code == kExitRequeue ? "" : "the job ended with " + DescribeWaitStatus(wait_status) + " after a preemption signal";
        return out;
      }
      if (code == kExitOk) {
        rec.rank = missing.front().rank;
        rec.host = missing.front().host;
        hang = "mpirun exited with code 0, but " + Unfinished(missing);
      }
    }
    // A failure: find its root cause.
    rec.attempt = attempt;
    rec.at = NowIso8601();
    if (rec.detected_mono == 0) rec.detected_mono = first_drop > 0 ? std::min(first_drop, ended) : ended;
    if (rec.step < 0) rec.step = MinStep(ranks);
    if (hang.empty()) {
      ParseMpirunReport(log_->MpirunText(), &rec);
      if (rec.rank < 0) {  // the first rank that dropped its control connection without a goodbye
        double first = 0;
        for (const auto& r : ranks) {
          if (r.rank >= 0 && r.disconnected_at > 0 && (first == 0 || r.disconnected_at < first)) {
            first = r.disconnected_at;
            rec.rank = r.rank;
          }
        }
      }
      if (rec.rank >= 0 && rec.rank < static_cast<int>(ranks.size()) && rec.host.empty()) rec.host = ranks[rec.rank].host;
      if (rec.exit_code < 0 && rec.signal == 0 && WIFEXITED(wait_status)) rec.exit_code = WEXITSTATUS(wait_status);
      std::string how = rec.signal ? "was killed by signal " + std::to_string(rec.signal) + " (" + strsignal(rec.signal) + ")"
                                   : "exited with code " + std::to_string(rec.exit_code);
      rec.reason = (rec.rank >= 0 ? "rank " + std::to_string(rec.rank) + " on " + (rec.host.empty() ? "?" : rec.host) + " "
                                  : "mpirun ") + how + " at step " + std::to_string(rec.step);
    } else {
      rec.reason = hang;
    }
    const int symptom_rank = rec.rank;  // its last lines tell what it saw (e.g. a collective deadline)
    if (rec.rank >= 0) rec.last_lines = log_->LastLines(rec.rank);
    if (silent.empty()) silent = FindSilentHosts(ranks, ended, QuietSeconds());
    if (!silent.empty() && silent.front().whole_host) NameLostHost(silent.front(), &rec);
    Say("failure (attempt " + std::to_string(attempt + 1) + "): " + rec.reason);
    for (const auto& l : rec.last_lines) Say("  rank " + std::to_string(symptom_rank) + "> " + l);
    log_->Note("failure: " + rec.reason);
    // Told to stop (a preemption signal): whatever went wrong since, no restart.
    if (preempt_deadline > 0) {
      out.done = true;
      out.exit_code = kExitFailure;
      out.error = "not restarting after a preemption signal (no checkpoint confirmed): " + rec.reason;
      rec.restarted = false;
      status_.restarts.push_back(rec);
      return out;
    }
    // A bad recipe, dataset or checkpoint fails the same way again: no restart.
    if (hang.empty() && rec.signal == 0 &&
        (rec.exit_code == kExitUsage || rec.exit_code == kExitDataError || rec.exit_code == kExitCheckpointError)) {
      out.done = true;
      out.exit_code = rec.exit_code;
      out.error = "not restarting: exit code " + std::to_string(rec.exit_code) +
                  " (bad configuration, dataset or checkpoint) would fail again; " + rec.reason;
      rec.restarted = false;
      status_.restarts.push_back(rec);
      return out;
    }
    status_.restarts.push_back(rec);
    out.record = rec;
    return out;
  }

  const SupervisorOptions& o_;
  const cluster::ClusterConfig& c_;
  std::string run_dir_;
  std::string token_;
  std::unique_ptr<ControlServer> server_;
  std::unique_ptr<OutputLog> log_;
  JobStatus status_;
  bool status_write_warned_ = false;
};

}  // namespace

int RunSupervisor(const SupervisorOptions& options) {
  Supervisor s(options);
  return s.Run();
}

}  // namespace lockstep
