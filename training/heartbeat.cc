#include "training/heartbeat.h"

#include <unistd.h>

#include <boost/asio.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>

namespace lockstep {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

class HeartbeatClient {
 public:
  HeartbeatClient(std::string host, std::string port, std::string token, int rank, int world, int attempt,
                  int interval_ms)
      : host_(std::move(host)), port_(std::move(port)), token_(std::move(token)), rank_(rank), world_(world),
        attempt_(attempt), interval_ms_(interval_ms) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~HeartbeatClient() { Stop("done"); }

  void Report(int64_t step, double loss, double sps, const char* phase) {
    std::lock_guard<std::mutex> lock(mu_);
    step_ = step;
    loss_ = loss;
    sps_ = sps;
    phase_ = phase;
    if (!reported_) {  // the first step goes out at once (launch latency, liveness)
      reported_ = true;
      first_report_pending_ = true;
      cv_.notify_all();
    }
  }

  void Stop(const char* phase) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      stop_ = true;
      bye_phase_ = phase;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  // Best effort: failures to reach the supervisor never disturb training.
  void Loop() {
    asio::io_context io;
    tcp::socket socket(io);
    bool connected = false;
    char hostname[256] = "?";
    gethostname(hostname, sizeof(hostname) - 1);
    for (;;) {
      std::string line;
      bool stopping;
      {
        std::unique_lock<std::mutex> lock(mu_);
        stopping = stop_;
        char buf[256];
        std::snprintf(buf, sizeof(buf), "%s %lld %.6g %.6g %s\n", stopping ? "BYE" : "HB",
                      static_cast<long long>(step_), loss_, sps_, (stopping ? bye_phase_ : phase_).c_str());
        line = buf;
        first_report_pending_ = false;
      }
      boost::system::error_code ec;
      if (!connected && !stopping) {
        tcp::resolver resolver(io);
        auto endpoints = resolver.resolve(host_, port_, ec);
        if (!ec) asio::connect(socket, endpoints, ec);
        if (!ec) {
          std::string hello = "HELLO " + token_ + " " + std::to_string(attempt_) + " " + std::to_string(rank_) + " " +
                              std::to_string(world_) + " " + std::to_string(getpid()) + " " + hostname + "\n";
          asio::write(socket, asio::buffer(hello), ec);
          asio::streambuf reply;
          if (!ec) asio::read_until(socket, reply, '\n', ec);
          std::string answer;
          if (!ec) std::getline(std::istream(&reply) >> std::ws, answer);
          if (!ec && answer == "OK") {
            connected = true;
          } else {
            if (!warned_) std::fprintf(stderr, "lockstep: rank %d: the supervisor at %s:%s refused heartbeats\n", rank_,
                                       host_.c_str(), port_.c_str());
            warned_ = true;
            socket.close(ec);
          }
        }
      }
      if (connected) {
        asio::write(socket, asio::buffer(line), ec);
        if (ec) {
          connected = false;
          socket.close(ec);
        }
      }
      if (stopping) {
        if (connected) socket.shutdown(tcp::socket::shutdown_both, ec);
        return;
      }
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(interval_ms_), [this] { return stop_ || first_report_pending_; });
    }
  }

  const std::string host_, port_, token_;
  const int rank_, world_, attempt_, interval_ms_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool warned_ = false;
  bool reported_ = false;
  bool first_report_pending_ = false;
  std::string bye_phase_ = "done";
  int64_t step_ = 0;
  double loss_ = 0, sps_ = 0;
  std::string phase_ = "setup";
  std::thread thread_;
};

std::mutex g_mu;
std::unique_ptr<HeartbeatClient> g_client;  // destroyed at exit: sends BYE
bool g_started = false;

}  // namespace

void StartHeartbeat(int rank, int world_size) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_started) return;
  g_started = true;
  const char* address = std::getenv("LOCKSTEP_SUPERVISOR");
  const char* token = std::getenv("LOCKSTEP_JOB_TOKEN");
  if (address == nullptr || token == nullptr || *address == '\0') return;
  std::string a = address;
  size_t colon = a.rfind(':');
  if (colon == std::string::npos) return;
  const char* interval = std::getenv("LOCKSTEP_HEARTBEAT_INTERVAL_MS");
  const char* attempt = std::getenv("LOCKSTEP_LAUNCH_ATTEMPT");
  int ms = interval ? std::atoi(interval) : 1000;
  g_client = std::make_unique<HeartbeatClient>(a.substr(0, colon), a.substr(colon + 1), token, rank, world_size,
                                               attempt ? std::atoi(attempt) : 0, ms > 0 ? ms : 1000);
}

void ReportHeartbeat(int64_t step, double loss, double samples_per_sec, const char* phase) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_client) g_client->Report(step, loss, samples_per_sec, phase);
}

void StopHeartbeat(const char* phase) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_client) g_client->Stop(phase);
}

}  // namespace lockstep
