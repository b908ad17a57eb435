#include "launcher/control_server.h"

#include <boost/asio.hpp>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace lockstep {

namespace asio = boost::asio;
using asio::ip::tcp;

double MonotonicSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string RandomToken() {
  unsigned char bytes[16] = {};
  std::ifstream urandom("/dev/urandom", std::ios::binary);
  urandom.read(reinterpret_cast<char*>(bytes), sizeof(bytes));
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

namespace {
// Constant-time comparison, so a wrong token's timing reveals nothing of the right one.
bool SameToken(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}
constexpr size_t kMaxLine = 1024;
constexpr int kHelloTimeoutMs = 5000;
}  // namespace

struct ControlServer::Impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::thread thread;
  std::string token;
  mutable std::mutex mu;
  int attempt = 0;
  std::vector<RankState> ranks;
  std::vector<std::string> events;
  int rejected = 0;

  void Event(const std::string& line) {
    std::lock_guard<std::mutex> lock(mu);
    events.push_back(line);
  }
  void Accept();
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, ControlServer::Impl* server)
      : socket_(std::move(socket)), timer_(socket_.get_executor()), server_(server), buffer_(kMaxLine) {
    boost::system::error_code ec;
    auto ep = socket_.remote_endpoint(ec);
    peer_ = ec ? std::string("?") : ep.address().to_string() + ":" + std::to_string(ep.port());
  }

  void Start() {
    timer_.expires_after(std::chrono::milliseconds(kHelloTimeoutMs));
    auto self = shared_from_this();
    timer_.async_wait([self](const boost::system::error_code& ec) {
      if (!ec && !self->authenticated_) self->Reject("no HELLO within 5 s");
    });
    ReadLine();
  }

 private:
  void ReadLine() {
    auto self = shared_from_this();
    asio::async_read_until(socket_, buffer_, '\n', [self](const boost::system::error_code& ec, size_t) {
      if (ec) {
        self->Closed(ec == asio::error::not_found ? "line too long" : ec.message());
        return;
      }
      std::istream in(&self->buffer_);
      std::string line;
      std::getline(in, line);
      if (self->Handle(line)) self->ReadLine();
    });
  }

  // Returns whether to keep reading.
  bool Handle(const std::string& line) {
    std::istringstream in(line);
    std::string verb;
    in >> verb;
    if (!authenticated_) {
      std::string token, host;
      int attempt = -1, rank = -1, world = 0, pid = 0;
      if (verb != "HELLO" || !(in >> token >> attempt >> rank >> world >> pid >> host)) {
        Reject("expected HELLO, got \"" + line.substr(0, 80) + "\"");
        return false;
      }
      if (!SameToken(token, server_->token)) {
        Reject("wrong job token (rank " + std::to_string(rank) + ")");
        return false;
      }
      authenticated_ = true;
      timer_.cancel();
      rank_ = rank;
      attempt_ = attempt;
      Write("OK\n");
      std::lock_guard<std::mutex> lock(server_->mu);
      if (attempt != server_->attempt || rank < 0 || rank >= static_cast<int>(server_->ranks.size())) {
        server_->events.push_back("ignoring rank " + std::to_string(rank) + " of attempt " + std::to_string(attempt) +
                                  " (current attempt " + std::to_string(server_->attempt) + ")");
        rank_ = -1;
        return true;
      }
      RankState& r = server_->ranks[static_cast<size_t>(rank)];
      r = RankState{};
      r.rank = rank;
      r.host = host;
      r.pid = pid;
      r.connected = true;
      r.connected_at = r.last_heartbeat = MonotonicSeconds();
      return true;
    }
    std::lock_guard<std::mutex> lock(server_->mu);
    if (rank_ < 0 || attempt_ != server_->attempt || rank_ >= static_cast<int>(server_->ranks.size())) return true;
    RankState& r = server_->ranks[static_cast<size_t>(rank_)];
    r.last_heartbeat = MonotonicSeconds();
    if (verb == "HB" || verb == "BYE") {
      long long step = 0;
      double loss = 0, sps = 0;
      std::string phase;
      if (in >> step >> loss >> sps >> phase) {
        if (r.first_step < 0 && phase == "train") {
          r.first_step = step;
          r.first_step_at = r.last_heartbeat;
        }
        r.step = step;
        r.loss = loss;
        r.samples_per_sec = sps;
        r.phase = phase;
      }
      if (verb == "BYE") r.said_bye = true;
    }
    return true;
  }

  void Write(const std::string& text) {
    auto self = shared_from_this();
    auto data = std::make_shared<std::string>(text);
    asio::async_write(socket_, asio::buffer(*data), [self, data](const boost::system::error_code&, size_t) {});
  }

  void Reject(const std::string& why) {
    {
      std::lock_guard<std::mutex> lock(server_->mu);
      ++server_->rejected;
      server_->events.push_back("rejected a control connection from " + peer_ + ": " + why);
    }
    auto self = shared_from_this();
    auto data = std::make_shared<std::string>("DENIED\n");
    asio::async_write(socket_, asio::buffer(*data), [self, data](const boost::system::error_code&, size_t) {
      boost::system::error_code ignored;
      self->socket_.close(ignored);
    });
    timer_.cancel();
  }

  void Closed(const std::string& why) {
    timer_.cancel();
    boost::system::error_code ignored;
    socket_.close(ignored);
    if (!authenticated_ || rank_ < 0) return;
    std::lock_guard<std::mutex> lock(server_->mu);
    if (attempt_ != server_->attempt || rank_ >= static_cast<int>(server_->ranks.size())) return;
    RankState& r = server_->ranks[static_cast<size_t>(rank_)];
    r.connected = false;
    if (!r.said_bye) {
      r.disconnected_at = MonotonicSeconds();
      server_->events.push_back("rank " + std::to_string(rank_) + " (" + r.host + ", pid " + std::to_string(r.pid) +
                                ") dropped its control connection without saying goodbye (" + why + ")");
    }
  }

  tcp::socket socket_;
  asio::steady_timer timer_;
  ControlServer::Impl* server_;
  asio::streambuf buffer_;
  std::string peer_;
  bool authenticated_ = false;
  int rank_ = -1;
  int attempt_ = -1;
};

}  // namespace

void ControlServer::Impl::Accept() {
  acceptor.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) std::make_shared<Session>(std::move(socket), this)->Start();
    Accept();
  });
}

ControlServer::ControlServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<ControlServer>> ControlServer::Start(const std::string& bind, int port,
                                                             const std::string& token) {
  auto impl = std::make_unique<Impl>();
  impl->token = token;
  boost::system::error_code ec;
  auto address = asio::ip::make_address(bind, ec);
  if (ec) return InvalidArgumentError("control.bind: \"" + bind + "\" is not an IP address");
  tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return UnavailableError("cannot listen on " + bind + ":" + std::to_string(port) + " for the control plane: " +
                            ec.message());
  }
  impl->Accept();
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->io.run(); });
  return std::unique_ptr<ControlServer>(new ControlServer(std::move(impl)));
}

ControlServer::~ControlServer() {
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int ControlServer::port() const { return impl_->acceptor.local_endpoint().port(); }

void ControlServer::BeginAttempt(int attempt, int world_size) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->attempt = attempt;
  impl_->ranks.assign(static_cast<size_t>(world_size), RankState{});
}

std::vector<RankState> ControlServer::Snapshot() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->ranks;
}

int ControlServer::rejected_connections() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->rejected;
}

std::vector<std::string> ControlServer::TakeEvents() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<std::string> out;
  out.swap(impl_->events);
  return out;
}

}  // namespace lockstep
