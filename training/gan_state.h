// The trainer's GAN state (private to training/): the generator's noise, the
// discriminator's inputs, targets and gradients, sized for one rank's batch, and
// the classifier that scores generated images. Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/core/tensor.h"
#include "training/quality_proxy.h"
#include "training/trainer.h"

namespace lockstep {

// Standard-normal noise (Box-Muller on Philox4x32-10) for the rows of global sample
// positions [first_row, first_row + rows): element e of row r is a pure function of
// (seed, stream, step, r, e), so every world size draws the same noise per sample.
void FillStandardNormal(uint64_t seed, uint32_t stream, uint64_t step, int64_t first_row, int64_t rows, int64_t dim,
                        float* out);

struct Trainer::GanState {
  Shape image_shape;           // the dataset's, e.g. (28, 28, 1)
  int64_t image_elements = 0;
  int64_t noise_dim = 0;
  Tensor noise;                // (batch, noise_dim)
  Tensor real;                 // (batch, image): real images scaled to [-1, 1]
  Tensor fake_grad;            // (batch, image): d(loss)/d(generated image)
  Tensor real_targets, fake_targets, generator_targets;  // (batch, 1): real_label, 0, 1
  Tensor logit_grad;           // (batch, 1)
  std::vector<float> host_noise, host_real, host_logits;
  std::vector<int32_t> host_labels;
  double epoch_generator_loss = 0;  // summed over this epoch's steps (global)
  std::unique_ptr<ImageClassifier> classifier;  // rank 0, when gan.quality_classifier is set
  ClassifierScores real_reference;              // the classifier on real test images
};

}  // namespace lockstep
