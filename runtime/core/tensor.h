// Tensor: a shape, a dtype, a device and a pointer, either owning its memory
// (allocated through a Backend, freed when the last owner goes) or a view into
// memory someone else owns (e.g. a layer's weights inside the flat parameter
// arena). Copying a Tensor copies the handle, not the data. Thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/check.h"

namespace lockstep {

class Backend;

enum class DType { kFloat32, kBFloat16, kInt32, kUint8 };
size_t DTypeSize(DType dtype);
const char* DTypeName(DType dtype);

enum class DeviceKind { kCpu, kCuda };
struct Device {
  DeviceKind kind = DeviceKind::kCpu;
  int index = 0;
  std::string ToString() const;
  bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
};

using Shape = std::vector<int64_t>;
int64_t NumElements(const Shape& shape);
std::string ShapeToString(const Shape& shape);  // "(28, 28, 1)"

template <typename T>
constexpr DType DTypeOf();
template <> constexpr DType DTypeOf<float>() { return DType::kFloat32; }
template <> constexpr DType DTypeOf<int32_t>() { return DType::kInt32; }
template <> constexpr DType DTypeOf<uint8_t>() { return DType::kUint8; }

class Tensor {
 public:
  Tensor() = default;
  // Owning, uninitialised memory from `backend`.
  static Tensor Empty(Backend& backend, Shape shape, DType dtype);
  // Owning, zero-filled.
  static Tensor Zeros(Backend& backend, Shape shape, DType dtype);
  // Non-owning view of memory that outlives the tensor.
  static Tensor View(void* data, Shape shape, DType dtype, Device device);

  // A view of `shape` starting `element_offset` elements into this tensor; shares ownership.
  Tensor Subview(int64_t element_offset, Shape shape) const;
  // Same memory, another shape with the same element count.
  Tensor Reshaped(Shape shape) const;

  bool defined() const { return data_ != nullptr || numel() == 0; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(static_cast<size_t>(i)); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  int64_t numel() const { return NumElements(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype_); }
  void* raw() const { return data_; }

  template <typename T>
  T* data() const {
    LS_CHECK(dtype_ == DTypeOf<T>()) << "tensor holds " << DTypeName(dtype_);
    return static_cast<T*>(data_);
  }

 private:
  std::shared_ptr<void> storage_;  // null for views of foreign memory
  void* data_ = nullptr;
  Shape shape_;
  DType dtype_ = DType::kFloat32;
  Device device_;
};

}  // namespace lockstep
