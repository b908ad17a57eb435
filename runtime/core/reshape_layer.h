// Reshape: reinterprets each sample with a new per-sample shape (same element
// order), e.g. a (28, 28, 1) image as a (28, 28) sequence of 28 time steps.
// Owns no parameters or scratch. Not thread-safe: one training thread drives a model.
#pragma once

#include <memory>

#include "runtime/core/layer.h"

namespace lockstep {

// `target` is the per-sample output shape; at most one entry may be -1 (inferred
// from the input's element count). Build fails when the counts cannot match.
std::unique_ptr<Layer> MakeReshape(const Shape& target);

// Resolves a Reshape target against a per-sample input shape (the -1 entry, the
// element count check); shared with recipe validation for its messages.
Result<Shape> ResolveReshape(const Shape& input, const Shape& target);

}  // namespace lockstep
