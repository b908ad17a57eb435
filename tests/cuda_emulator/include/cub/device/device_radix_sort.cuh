// The CUDA emulator's stand-in for cub::DeviceRadixSort::SortPairs: a stable sort on
// key bits [begin_bit, end_bit), as CUB's LSD radix sort is. Like CUB it first reports
// the temporary storage it needs (called with d_temp_storage == nullptr), refuses a
// smaller buffer, and scribbles over the whole buffer it is given, so a workspace that
// overlaps live data shows up in the results.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <utility>
#include <vector>

namespace cub {

struct DeviceRadixSort {
  template <typename Key, typename Value>
  static cudaError_t SortPairs(void* d_temp_storage, size_t& temp_storage_bytes,
                               const Key* keys_in, Key* keys_out, const Value* values_in,
                               Value* values_out, int num_items, int begin_bit = 0,
                               int end_bit = sizeof(Key) * 8, cudaStream_t stream = nullptr) {
    // Signed or floating keys would need CUB's bit twiddling; the callers sort unsigned.
    static_assert(std::is_unsigned_v<Key>, "the emulated SortPairs takes unsigned keys");
    // Twice the pairs plus a little: the size of CUB's double buffers.
    const size_t needed = 2 * static_cast<size_t>(num_items) * (sizeof(Key) + sizeof(Value)) + 256;
    if (d_temp_storage == nullptr) {
      temp_storage_bytes = needed;
      return cudaSuccess;
    }
    if (temp_storage_bytes < needed || num_items < 0 || begin_bit < 0 || end_bit < begin_bit ||
        end_bit > static_cast<int>(sizeof(Key) * 8)) {
      return cudaErrorInvalidValue;
    }
    // CUB requires the four ranges (and the temporary storage) not to overlap.
    const auto range = [](const void* p, size_t bytes) {
      const auto b = reinterpret_cast<uintptr_t>(p);
      return std::pair<uintptr_t, uintptr_t>(b, b + bytes);
    };
    const size_t n = static_cast<size_t>(num_items);
    const std::pair<uintptr_t, uintptr_t> ranges[5] = {
        range(keys_in, n * sizeof(Key)), range(keys_out, n * sizeof(Key)),
        range(values_in, n * sizeof(Value)), range(values_out, n * sizeof(Value)),
        range(d_temp_storage, temp_storage_bytes)};
    for (int i = 0; i < 5; ++i) {
      for (int j = i + 1; j < 5; ++j) {
        if (n > 0 && ranges[i].first < ranges[j].second && ranges[j].first < ranges[i].second) {
          return cudaErrorInvalidValue;
        }
      }
    }
    // Runs when the stream gets to it, as on a GPU.
    const size_t temp_bytes = temp_storage_bytes;
    ::lsemu::Enqueue(stream, [=] {
      std::memset(d_temp_storage, 0xAB, temp_bytes);
      const int bits = end_bit - begin_bit;
      using Unsigned = uint64_t;
      const Unsigned mask = bits >= 64 ? ~Unsigned{0} : ((Unsigned{1} << bits) - 1);
      auto digit = [&](Key k) { return (static_cast<Unsigned>(k) >> begin_bit) & mask; };
      std::vector<size_t> order(n);
      std::iota(order.begin(), order.end(), size_t{0});
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return digit(keys_in[a]) < digit(keys_in[b]); });
      std::vector<Key> keys(order.size());
      std::vector<Value> values(order.size());
      for (size_t i = 0; i < order.size(); ++i) {
        keys[i] = keys_in[order[i]];
        values[i] = values_in[order[i]];
      }
      std::copy(keys.begin(), keys.end(), keys_out);
      std::copy(values.begin(), values.end(), values_out);
    });
    return cudaSuccess;
  }
};

}  // namespace cub
