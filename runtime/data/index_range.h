// IndexRange: a half-open range [begin, end) of sample indices, shared by the
// datasets (train / validation split) and the sampler. A plain value type.
#pragma once

#include <cstdint>

namespace lockstep {
namespace data {

struct IndexRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};

}  // namespace data
}  // namespace lockstep
