// Rank-0 progress display: a redrawn bar (step/total, loss, samples/s, ETA) when
// stdout is a terminal, periodic plain lines otherwise (logs, CI, Slurm output
// files), and an end-of-epoch summary line. Not thread-safe.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace lockstep {

class ProgressReporter {
 public:
  // lines_every: steps between plain lines when not a terminal (0 = about 10 per epoch).
  ProgressReporter(bool enabled, int64_t lines_every, std::FILE* out = stdout);

  void StartEpoch(int64_t epoch, int64_t epochs, int64_t steps_in_epoch);
  void Update(int64_t step_in_epoch, double mean_loss, double accuracy, double samples_per_sec);
  // Ends the bar (if any) and prints the summary line.
  void EndEpoch(const std::string& summary);
  void Line(const std::string& text);

  static std::string FormatDuration(double seconds);  // "1:02:03" / "02:03"
  static std::string FormatFixed(double value, int digits);  // "0.8917" for (0.89173, 4)

 private:
  bool enabled_;
  bool tty_;
  int64_t lines_every_;
  std::FILE* out_;
  int64_t epoch_ = 0, epochs_ = 0, steps_ = 0;
  double epoch_start_ = 0;
  double last_draw_ = 0;
  bool bar_open_ = false;
};

}  // namespace lockstep
