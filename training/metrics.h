// Per-epoch metrics: one JSON object per line in RUN_DIR/metrics.jsonl, written
// by rank 0 only. Appends (a resumed run continues the same file). Not thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace lockstep {

struct EpochMetrics {
  int64_t epoch = 0;  // 1-based
  int64_t step = 0;   // optimiser steps completed so far
  double train_loss = 0, train_accuracy = 0;
  double val_loss = 0, val_accuracy = 0;
  double test_loss = 0, test_accuracy = 0;
  double samples_per_sec = 0;  // training samples / training time of this epoch
  double epoch_seconds = 0;
  double wall_seconds = 0;     // since the run started
  double peak_rss_mb = 0;
  double learning_rate = 0;
  int world_size = 1;
  // Language models (text data): losses are nats per character; no test split.
  bool has_test = true;
  double val_bits_per_char = -1;  // val_loss / ln 2; written when >= 0
  double tokens_per_sec = -1;     // predictions per second; written when >= 0
  // GANs: train_loss/accuracy are the discriminator's; no validation or test split.
  bool is_gan = false;
  double generator_loss = 0;
  double quality_confidence = -1, quality_class_entropy = -1, quality_inception_score = -1;  // when >= 0
  std::string sample_grid;  // the epoch's sample grid (PNG), when written
};

std::string ToJsonLine(const EpochMetrics& m);
Status AppendMetrics(const std::string& path, const EpochMetrics& m);

}  // namespace lockstep
