#include "runtime/core/transient_arena.h"

#include <algorithm>
#include <cstdint>

#include "common/check.h"

namespace lockstep {
namespace {

constexpr size_t kAlign = 256;  // cudaMalloc's alignment: what kernels and cuDNN expect
constexpr size_t kMinChunk = size_t{64} << 10;

size_t AlignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

}  // namespace

// Room for `bytes` from its first 256-byte boundary (the CPU backend's memory is
// 64-byte aligned), empty.
TransientArena::Chunk TransientArena::NewChunk(size_t bytes) const {
  Chunk c;
  c.memory = Tensor::Empty(*backend_, {static_cast<int64_t>(bytes + kAlign)}, DType::kUint8);
  const auto base = reinterpret_cast<uintptr_t>(c.memory.raw());
  c.start = c.used = AlignUp(base) - base;
  return c;
}

void* TransientArena::Acquire(size_t bytes) {
  LS_CHECK_GT(depth_, 0) << "TransientArena::Acquire outside a Scope";
  bytes = AlignUp(std::max<size_t>(bytes, 1));
  while (current_ < chunks_.size() && chunks_[current_].used + bytes > chunks_[current_].memory.nbytes()) {
    ++current_;  // later chunks are empty: earlier scopes gave them back
  }
  if (current_ == chunks_.size()) {
    const size_t last = chunks_.empty() ? 0 : chunks_.back().memory.nbytes();
    chunks_.push_back(NewChunk(std::max({bytes, 2 * last, kMinChunk})));
  }
  Chunk& c = chunks_[current_];
  void* p = static_cast<char*>(c.memory.raw()) + c.used;  // start + multiples of 256: aligned
  c.used += bytes;
  live_ += bytes;
  high_water_ = std::max(high_water_, live_);
  return p;
}

size_t TransientArena::reserved_bytes() const {
  size_t total = 0;
  for (const Chunk& c : chunks_) total += c.memory.nbytes() - kAlign;  // the alignment slack aside
  return total;
}

TransientArena::Scope::Scope(TransientArena& arena)
    : arena_(arena), chunk_(arena.current_), used_(0), live_(arena.live_) {
  if (chunk_ < arena.chunks_.size()) used_ = arena.chunks_[chunk_].used;
  ++arena.depth_;
}

TransientArena::Scope::~Scope() {
  TransientArena& a = arena_;
  for (size_t i = chunk_ + 1; i < a.chunks_.size(); ++i) a.chunks_[i].used = a.chunks_[i].start;
  // (A chunk made inside this scope starts at its own boundary: used_ was 0.)
  if (chunk_ < a.chunks_.size()) a.chunks_[chunk_].used = std::max(used_, a.chunks_[chunk_].start);
  a.current_ = chunk_;
  a.live_ = live_;
  if (--a.depth_ == 0 && a.chunks_.size() > 1) {
    // Outermost scope closed: one chunk of the high-water size for next time.
    a.chunks_.clear();
    a.chunks_.push_back(a.NewChunk(a.high_water_));
    a.current_ = 0;
  }
}

}  // namespace lockstep
