// TransientArena: backend memory for scratch that is dead once a layer's Forward or
// Backward call returns (backward's input-gradient temporaries, working copies of
// activations stored in bf16). One arena serves all layers of a model, so such scratch
// costs the largest one call needs instead of the sum over layers.
//
// Allocation is a bump pointer inside chunks; a Scope gives back everything acquired
// since it opened (LIFO). Chunks are never moved while a scope is open, so pointers stay
// valid until their scope ends; when the last scope closes and more than one chunk was
// needed, they are replaced by one chunk of the high-water size, so a steady state
// (the same step again) uses one chunk and no allocation. On a GPU the memory is reused
// in stream order (all work is on the backend's one stream), like the caching allocator.
// Not thread-safe: the training thread drives it.
#pragma once

#include <cstddef>
#include <optional>
#include <vector>

#include "runtime/core/tensor.h"

namespace lockstep {

class Backend;

class TransientArena {
 public:
  explicit TransientArena(Backend* backend) : backend_(backend) {}
  TransientArena(const TransientArena&) = delete;
  TransientArena& operator=(const TransientArena&) = delete;

  // `bytes` (rounded up to 256) of uninitialised memory, valid until the innermost open
  // Scope ends. Needs an open Scope.
  void* Acquire(size_t bytes);
  float* AcquireFloats(int64_t n) { return static_cast<float*>(Acquire(sizeof(float) * static_cast<size_t>(n))); }

  class Scope {
   public:
    explicit Scope(TransientArena& arena);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    TransientArena& arena_;
    size_t chunk_, used_, live_;
  };

  // A Scope on the arena when there is one (a layer driven without an arena: nothing).
  class OptionalScope {
   public:
    explicit OptionalScope(TransientArena* arena) {
      if (arena != nullptr) scope_.emplace(*arena);
    }

   private:
    std::optional<Scope> scope_;
  };

  // The most bytes live at once so far, and the bytes the arena holds now (each chunk
  // holds 256 bytes more, for its alignment).
  size_t high_water_bytes() const { return high_water_; }
  size_t reserved_bytes() const;

 private:
  struct Chunk {
    Tensor memory;
    size_t start = 0;  // offset of the first 256-byte boundary
    size_t used = 0;   // offset of the next free byte
  };
  Chunk NewChunk(size_t bytes) const;

  Backend* backend_;
  std::vector<Chunk> chunks_;
  size_t current_ = 0;  // the chunk Acquire bumps in
  size_t live_ = 0;     // bytes acquired in open scopes
  size_t high_water_ = 0;
  int depth_ = 0;
};

}  // namespace lockstep
