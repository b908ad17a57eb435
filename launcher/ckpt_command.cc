#include "launcher/ckpt_command.h"

#include <cstdio>
#include <ctime>
#include <iostream>
#include <memory>
#include <sstream>

#include "checkpoints/checkpoint.h"
#include "checkpoints/manifest.h"
#include "common/exit_codes.h"

namespace lockstep {
namespace {

struct CkptFlags {
  std::string path;
  std::string out;
  std::string format = "safetensors";
  bool no_checksums = false;
};

int Fail(const std::string& verb, const Status& s) {
  std::cerr << "lockstep ckpt " << verb << ": " << s.message() << "\n";
  return kExitCheckpointError;
}

std::string HumanBytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

std::string LocalTime(double unix_seconds) {
  if (unix_seconds <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string Hex(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// The `name:` field of a recipe in text format, or "-".
std::string RecipeName(const std::string& recipe) {
  std::istringstream in(recipe);
  std::string line;
  while (std::getline(in, line)) {
    size_t p = line.find_first_not_of(" \t");
    if (p == std::string::npos || line.compare(p, 5, "name:") != 0) continue;
    size_t q1 = line.find('"', p), q2 = line.rfind('"');
    if (q1 != std::string::npos && q2 > q1) return line.substr(q1 + 1, q2 - q1 - 1);
  }
  return "-";
}

std::string Shape(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int RunList(const CkptFlags& f) {
  if (!ckpt::PosixFileSystem()->IsDirectory(f.path)) {
    return Fail("list", NotFoundError("run directory " + f.path + " does not exist"));
  }
  auto entries = ckpt::ListCheckpoints(f.path);
  if (!entries.ok()) return Fail("list", entries.status());
  if (entries->empty()) {
    std::cout << "no checkpoints under " << ckpt::CheckpointsDir(f.path) << "\n";
    return kExitOk;
  }
  std::printf("%-10s %-7s %-6s %-11s %-20s %s\n", "step", "epoch", "world", "size", "time",
              "valid");
  int invalid = 0;
  for (const ckpt::CheckpointEntry& e : *entries) {
    auto reader = ckpt::CheckpointReader::Open(e.path);
    Status valid =
        reader.ok() ? (f.no_checksums ? Status::Ok() : (*reader)->VerifyAll()) : reader.status();
    std::string epoch = "?", world = "?", size = "?", time = "?";
    if (reader.ok()) {
      const ckpt::CheckpointMeta& m = (*reader)->meta();
      epoch = std::to_string(m.epoch);
      world = std::to_string(m.world_size);
      size = HumanBytes((*reader)->total_bytes());
      time = LocalTime(m.wall_time);
    }
    invalid += !valid.ok();
    std::printf("%-10lld %-7s %-6s %-11s %-20s %s\n", static_cast<long long>(e.step), epoch.c_str(),
                world.c_str(), size.c_str(), time.c_str(),
                valid.ok() ? (f.no_checksums ? "yes (sizes only)" : "yes")
                           : ("NO: " + valid.message()).c_str());
  }
  std::printf("%zu checkpoint(s), %d invalid\n", entries->size(), invalid);
  return kExitOk;
}

int RunVerify(const CkptFlags& f) {
  auto reader = ckpt::CheckpointReader::Open(f.path);
  if (!reader.ok()) return Fail("verify", reader.status());
  if (!f.no_checksums) {
    Status s = (*reader)->VerifyAll();
    if (!s.ok()) return Fail("verify", s);
  }
  std::cout << "OK: " << f.path << " (step " << (*reader)->meta().step << ", "
            << (*reader)->shards().size() << " shard(s), " << HumanBytes((*reader)->total_bytes())
            << (f.no_checksums ? ", sizes checked, checksums not read)\n"
                               : ", every checksum verified)\n");
  return kExitOk;
}

int RunInspect(const CkptFlags& f) {
  auto manifest = ckpt::ReadManifest(f.path);
  if (!manifest.ok()) return Fail("inspect", manifest.status());
  const ckpt::CheckpointMeta m = ckpt::MetaFromProto(*manifest);
  const std::vector<ckpt::ShardInfo> shards = ckpt::ShardsFromProto(*manifest);
  auto& o = std::cout;
  o << "checkpoint      " << f.path << "\n"
    << "format          " << m.format_version << " (written by lockstep " << m.lockstep_version
    << ")\n"
    << "step            " << m.step << "  (epoch " << m.epoch << ", sample position "
    << m.sample_position << ")\n"
    << "world size      " << m.world_size << "\n"
    << "saved at        " << LocalTime(m.wall_time) << "\n"
    << "recipe          " << RecipeName(m.recipe_text) << "  (hash " << Hex(m.recipe_hash) << ")\n"
    << "architecture    fingerprint " << Hex(m.architecture_fingerprint) << "\n";
  std::istringstream arch(m.architecture);
  for (std::string line; std::getline(arch, line);) o << "                  " << line << "\n";
  o << "optimizer       " << (m.optimizer_kind.empty() ? "-" : m.optimizer_kind) << "\n";
  for (const auto& [k, v] : m.hyperparameters) o << "                  " << k << " = " << v << "\n";
  o << "schedule state ";
  for (const auto& [k, v] : m.schedule_state) o << " " << k << " = " << v << ";";
  o << "\n"
    << "rng states      " << m.rng_states.size() << " (one per rank)\n";
  for (const auto& [k, v] : m.extras)
    o << "extra           " << k << " (" << HumanBytes(static_cast<int64_t>(v.size())) << ")\n";
  o << "buffers\n";
  for (const ckpt::BufferLayout& b : m.buffers) {
    o << "  " << b.name << "  " << b.elements << " " << b.dtype << " ("
      << HumanBytes(b.elements * 4) << ")\n";
    for (const ckpt::TensorInfo& t : b.tensors) {
      o << "    " << t.name << "  " << Shape(t.shape) << "  at element " << t.offset << "\n";
    }
  }
  o << "shards\n";
  for (const ckpt::ShardInfo& s : shards) {
    o << "  " << s.file << "  rank " << s.rank << "  " << HumanBytes(s.size) << "  "
      << s.segments.size() << " segment(s)\n";
  }
  return kExitOk;
}

int RunExport(const CkptFlags& f) {
  Status s = ckpt::ExportSafetensors(f.path, f.out);
  if (!s.ok()) return Fail("export", s);
  std::cout << "wrote " << f.out << "\n";
  return kExitOk;
}

}  // namespace

void AddCkptCommand(CLI::App& app, int* exit_code) {
  auto f = std::make_shared<CkptFlags>();
  CLI::App* ckpt = app.add_subcommand("ckpt", "List, verify, inspect and export checkpoints");
  ckpt->require_subcommand(1);

  CLI::App* list = ckpt->add_subcommand(
      "list", "Table of a run's checkpoints: step, epoch, world size, size, time, valid?");
  list->add_option("RUN_DIR", f->path, "Run directory (holding checkpoints/)")->required();
  list->add_flag("--no-checksums", f->no_checksums, "Check manifests and shard sizes only (fast)");
  list->callback([f, exit_code] { *exit_code = RunList(*f); });

  CLI::App* verify = ckpt->add_subcommand(
      "verify", "Check a checkpoint; exit 4 naming the shard and byte offset of a defect");
  verify->add_option("DIR", f->path, "Checkpoint directory (RUN_DIR/checkpoints/step-NNNNNNNN)")
      ->required();
  verify->add_flag("--no-checksums", f->no_checksums, "Check the manifest and shard sizes only");
  verify->callback([f, exit_code] { *exit_code = RunVerify(*f); });

  CLI::App* inspect =
      ckpt->add_subcommand("inspect", "Readable summary of a checkpoint's manifest");
  inspect->add_option("DIR", f->path, "Checkpoint directory")->required();
  inspect->callback([f, exit_code] { *exit_code = RunInspect(*f); });

  CLI::App* exp = ckpt->add_subcommand("export", "Write a checkpoint's parameters to one file");
  exp->add_option("--format", f->format, "Output format")->check(CLI::IsMember({"safetensors"}));
  exp->add_option("DIR", f->path, "Checkpoint directory")->required();
  exp->add_option("FILE", f->out, "Output file")->required();
  exp->callback([f, exit_code] { *exit_code = RunExport(*f); });
}

}  // namespace lockstep
