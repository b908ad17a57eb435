#include "training/metrics.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace lockstep {
namespace {
// JSON has no NaN/Infinity: write null so every line stays parseable.
std::string Num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}
}  // namespace

std::string ToJsonLine(const EpochMetrics& m) {
  std::string s = "{";
  s += "\"epoch\":" + std::to_string(m.epoch);
  s += ",\"step\":" + std::to_string(m.step);
  s += ",\"train_loss\":" + Num(m.train_loss);
  s += ",\"train_accuracy\":" + Num(m.train_accuracy);
  if (m.is_gan) {
    s += ",\"generator_loss\":" + Num(m.generator_loss);
    if (m.quality_confidence >= 0) {
      s += ",\"quality_confidence\":" + Num(m.quality_confidence);
      s += ",\"quality_class_entropy\":" + Num(m.quality_class_entropy);
      s += ",\"quality_inception_score\":" + Num(m.quality_inception_score);
    }
    if (!m.sample_grid.empty()) s += ",\"sample_grid\":\"" + m.sample_grid + "\"";
  } else {
    s += ",\"val_loss\":" + Num(m.val_loss);
    s += ",\"val_accuracy\":" + Num(m.val_accuracy);
  }
  if (m.val_bits_per_char >= 0) s += ",\"val_bits_per_char\":" + Num(m.val_bits_per_char);
  if (m.has_test) {
    s += ",\"test_loss\":" + Num(m.test_loss);
    s += ",\"test_accuracy\":" + Num(m.test_accuracy);
  }
  s += ",\"samples_per_sec\":" + Num(m.samples_per_sec);
  if (m.tokens_per_sec >= 0) s += ",\"tokens_per_sec\":" + Num(m.tokens_per_sec);
  s += ",\"epoch_seconds\":" + Num(m.epoch_seconds);
  s += ",\"wall_seconds\":" + Num(m.wall_seconds);
  s += ",\"peak_rss_mb\":" + Num(m.peak_rss_mb);
  s += ",\"learning_rate\":" + Num(m.learning_rate);
  s += ",\"world_size\":" + std::to_string(m.world_size);
  s += "}";
  return s;
}

Status AppendMetrics(const std::string& path, const EpochMetrics& m) {
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (!f) return IoError("cannot open " + path + " for appending: " + std::strerror(errno));
  std::string line = ToJsonLine(m) + "\n";
  bool ok = std::fwrite(line.data(), 1, line.size(), f) == line.size();
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) return IoError("cannot write " + path + ": " + std::strerror(errno));
  return Status::Ok();
}

}  // namespace lockstep
