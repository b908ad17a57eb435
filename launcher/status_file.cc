#include "launcher/status_file.h"

// Boost 1.74's property_tree trips g++ 12's -Wdangling-pointer (a false positive in
// ptree_implementation.hpp); silence it for this file only.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif

#include <boost/property_tree/json_parser.hpp>
#include <boost/property_tree/ptree.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <sstream>

namespace lockstep {
namespace {

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string Num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.10g", v);
  return buf;
}

}  // namespace

std::string NowIso8601() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S%z", &tm);
  return buf;
}

std::string StatusJson(const JobStatus& s) {
  std::ostringstream o;
  o << "{\n";
  o << "  \"state\": " << Quote(s.state) << ",\n";
  o << "  \"attempt\": " << s.attempt << ",\n";
  int restarted = 0;
  for (const auto& r : s.restarts) restarted += r.restarted ? 1 : 0;
  o << "  \"restarts_done\": " << restarted << ",\n";
  o << "  \"max_restarts\": " << s.max_restarts << ",\n";
  o << "  \"world_size\": " << s.world_size << ",\n";
  o << "  \"step\": " << s.step << ",\n";
  o << "  \"cluster\": " << Quote(s.cluster) << ",\n";
  o << "  \"command\": " << Quote(s.command) << ",\n";
  o << "  \"run_dir\": " << Quote(s.run_dir) << ",\n";
  o << "  \"supervisor\": " << Quote(s.supervisor) << ",\n";
  o << "  \"supervisor_pid\": " << s.supervisor_pid << ",\n";
  o << "  \"started_at\": " << Quote(s.started_at) << ",\n";
  o << "  \"updated_at\": " << Quote(s.updated_at) << ",\n";
  o << "  \"slurm_job_id\": " << Quote(s.slurm_job_id) << ",\n";
  o << "  \"slurm_restart_count\": " << s.slurm_restart_count << ",\n";
  o << "  \"rejected_connections\": " << s.rejected_connections << ",\n";
  o << "  \"exit_code\": " << s.exit_code << ",\n";
  // CLOCK_MONOTONIC seconds (comparable between processes of this host): benchmarks.
  double all_first_step = 0;
  bool all_stepped = !s.ranks.empty();
  for (const auto& r : s.ranks) {
    all_stepped &= r.first_step_at > 0;
    all_first_step = std::max(all_first_step, r.first_step_at);
  }
  o << "  \"supervisor_started_mono\": " << Num(s.supervisor_started_mono) << ",\n";
  o << "  \"attempt_started_mono\": " << Num(s.attempt_started_mono) << ",\n";
  o << "  \"all_ranks_first_step_mono\": " << Num(all_stepped ? all_first_step : 0) << ",\n";
  o << "  \"error\": " << Quote(s.error) << ",\n";
  o << "  \"ranks\": [";
  for (size_t i = 0; i < s.ranks.size(); ++i) {
    const RankState& r = s.ranks[i];
    double age = r.last_heartbeat > 0 ? s.now - r.last_heartbeat : -1;
    o << (i ? "," : "") << "\n    {\"rank\": " << i << ", \"host\": " << Quote(r.host) << ", \"pid\": " << r.pid
      << ", \"connected\": " << (r.connected ? "true" : "false") << ", \"phase\": " << Quote(r.phase)
      << ", \"step\": " << r.step << ", \"loss\": " << Num(r.loss) << ", \"samples_per_sec\": " << Num(r.samples_per_sec)
      << ", \"heartbeat_age_s\": " << Num(age) << "}";
  }
  o << (s.ranks.empty() ? "],\n" : "\n  ],\n");
  o << "  \"restarts\": [";
  for (size_t i = 0; i < s.restarts.size(); ++i) {
    const RestartRecord& r = s.restarts[i];
    o << (i ? "," : "") << "\n    {\"attempt\": " << r.attempt << ", \"at\": " << Quote(r.at)
      << ", \"reason\": " << Quote(r.reason) << ", \"rank\": " << r.rank << ", \"host\": " << Quote(r.host)
      << ", \"exit_code\": " << r.exit_code << ", \"signal\": " << r.signal << ", \"step\": " << r.step
      << ", \"detect_seconds\": " << Num(r.detect_seconds) << ", \"detected_mono\": " << Num(r.detected_mono) << ", \"restarted\": " << (r.restarted ? "true" : "false")
      << ", \"last_lines\": [";
    for (size_t j = 0; j < r.last_lines.size(); ++j) o << (j ? ", " : "") << Quote(r.last_lines[j]);
    o << "]}";
  }
  o << (s.restarts.empty() ? "]\n" : "\n  ]\n");
  o << "}\n";
  return o.str();
}

Status WriteStatusFile(const std::string& run_dir, const JobStatus& s) {
  if (run_dir.empty()) return Status::Ok();
  const std::string path = run_dir + "/status.json", tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return IoError("cannot write " + tmp);
    out << StatusJson(s);
    if (!out) return IoError("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return IoError("cannot rename " + tmp + " to " + path);
  return Status::Ok();
}

int ShowStatus(const std::string& run_dir, bool json, std::ostream& out, std::ostream& err) {
  const std::string path = run_dir + "/status.json";
  std::ifstream in(path);
  if (!in) {
    err << "lockstep status: no " << path << " (was the job started with `lockstep launch ... --run-dir "
        << run_dir << "`?)\n";
    return 2;
  }
  std::stringstream text;
  text << in.rdbuf();
  if (json) {
    out << text.str();
    return 0;
  }
  namespace pt = boost::property_tree;
  pt::ptree t;
  try {
    pt::read_json(text, t);
  } catch (const std::exception& e) {
    err << "lockstep status: " << path << " is not valid JSON: " << e.what() << "\n";
    return 1;
  }
  out << "job:        " << t.get<std::string>("state", "?") << " (attempt " << t.get<int>("attempt", 0) << ", "
      << t.get<int>("restarts_done", 0) << "/" << t.get<int>("max_restarts", 0) << " restarts)\n";
  out << "step:       " << t.get<long long>("step", 0) << " on " << t.get<int>("world_size", 0) << " rank(s)\n";
  out << "cluster:    " << t.get<std::string>("cluster", "") << "\n";
  out << "supervisor: " << t.get<std::string>("supervisor", "") << " (pid " << t.get<int>("supervisor_pid", 0)
      << "), updated " << t.get<std::string>("updated_at", "") << "\n";
  if (!t.get<std::string>("slurm_job_id", "").empty()) {
    out << "slurm:      job " << t.get<std::string>("slurm_job_id", "") << ", SLURM_RESTART_COUNT "
        << t.get<int>("slurm_restart_count", 0) << "\n";
  }
  if (t.get<int>("rejected_connections", 0) > 0) {
    out << "rejected:   " << t.get<int>("rejected_connections", 0) << " control connection(s) with a wrong token\n";
  }
  if (t.get<int>("exit_code", -1) >= 0) out << "exit code:  " << t.get<int>("exit_code", -1) << "\n";
  if (!t.get<std::string>("error", "").empty()) out << "error:      " << t.get<std::string>("error", "") << "\n";
  out << "rank  host                 phase       step        loss   samples/s  heartbeat\n";
  for (const auto& [key, r] : t.get_child("ranks", pt::ptree())) {
    (void)key;
    char line[256];
    std::snprintf(line, sizeof(line), "%4d  %-20s %-9s %6lld %11.4f %11.1f  %6.1f s ago\n", r.get<int>("rank", -1),
                  r.get<std::string>("host", "").c_str(), r.get<std::string>("phase", "").c_str(),
                  r.get<long long>("step", 0), r.get<double>("loss", 0), r.get<double>("samples_per_sec", 0),
                  r.get<double>("heartbeat_age_s", -1));
    out << line;
  }
  for (const auto& [key, r] : t.get_child("restarts", pt::ptree())) {
    (void)key;
    out << (r.get<bool>("restarted", true) ? "restarted after attempt " : "gave up after attempt ")
        << r.get<int>("attempt", 0) + 1 << " at " << r.get<std::string>("at", "") << ": "
        << r.get<std::string>("reason", "") << "\n";
  }
  return 0;
}

}  // namespace lockstep
