#include "training/progress.h"

#include <unistd.h>

#include <algorithm>
#include <string>

#include "common/sysinfo.h"

namespace lockstep {

ProgressReporter::ProgressReporter(bool enabled, int64_t lines_every, std::FILE* out)
    : enabled_(enabled), tty_(isatty(fileno(out)) != 0), lines_every_(lines_every), out_(out) {}

std::string ProgressReporter::FormatFixed(double value, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, value);
  return buf;
}

std::string ProgressReporter::FormatDuration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "--:--";
  long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%02ld:%02ld", s / 60, s % 60);
  }
  return buf;
}

void ProgressReporter::StartEpoch(int64_t epoch, int64_t epochs, int64_t steps) {
  epoch_ = epoch;
  epochs_ = epochs;
  steps_ = steps;
  epoch_start_ = NowSeconds();
  last_draw_ = 0;
}

void ProgressReporter::Update(int64_t step, double loss, double acc, double sps) {
  if (!enabled_) return;
  double now = NowSeconds();
  double elapsed = now - epoch_start_;
  double eta = step > 0 ? elapsed / static_cast<double>(step) * static_cast<double>(steps_ - step) : -1;
  if (tty_) {
    if (now - last_draw_ < 0.1 && step != steps_) return;  // redraw at most 10x per second
    last_draw_ = now;
    const int width = 28;
    int filled = steps_ > 0 ? static_cast<int>(width * step / steps_) : width;
    std::string bar(static_cast<size_t>(filled), '=');
    if (filled < width) bar += '>';
    bar.resize(width, ' ');
    std::fprintf(out_, "\r\033[Kepoch %lld/%lld [%s] %lld/%lld loss %.4f acc %.4f %.0f samples/s ETA %s",
                 static_cast<long long>(epoch_), static_cast<long long>(epochs_), bar.c_str(),
                 static_cast<long long>(step), static_cast<long long>(steps_), loss, acc, sps,
                 FormatDuration(eta).c_str());
    std::fflush(out_);
    bar_open_ = true;
    return;
  }
  int64_t every = lines_every_ > 0 ? lines_every_ : std::max<int64_t>(1, steps_ / 10);
  if (step % every != 0 && step != steps_) return;
  std::fprintf(out_, "epoch %lld/%lld step %lld/%lld loss %.4f acc %.4f %.0f samples/s ETA %s\n",
               static_cast<long long>(epoch_), static_cast<long long>(epochs_),
               static_cast<long long>(step), static_cast<long long>(steps_), loss, acc, sps,
               FormatDuration(eta).c_str());
  std::fflush(out_);
}

void ProgressReporter::EndEpoch(const std::string& summary) {
  if (!enabled_) return;
  if (bar_open_) std::fprintf(out_, "\n");
  bar_open_ = false;
  Line(summary);
}

void ProgressReporter::Line(const std::string& text) {
  if (!enabled_) return;
  std::fprintf(out_, "%s\n", text.c_str());
  std::fflush(out_);
}

}  // namespace lockstep
