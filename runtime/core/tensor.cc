#include "runtime/core/tensor.h"

#include <sstream>

#include "runtime/core/backend.h"

namespace lockstep {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return 4;
    case DType::kBFloat16: return 2;
    case DType::kInt32: return 4;
    case DType::kUint8: return 1;
  }
  return 0;
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return "f32";
    case DType::kBFloat16: return "bf16";
    case DType::kInt32: return "i32";
    case DType::kUint8: return "u8";
  }
  return "?";
}

std::string Device::ToString() const {
  return kind == DeviceKind::kCpu ? "cpu" : "cuda:" + std::to_string(index);
}

int64_t NumElements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeToString(const Shape& shape) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ")";
  return out.str();
}

Tensor Tensor::Empty(Backend& backend, Shape shape, DType dtype) {
  Tensor t;
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.device_ = backend.device();
  size_t bytes = t.nbytes();
  void* p = backend.Allocate(bytes);
  Backend* owner = &backend;
  t.storage_ = std::shared_ptr<void>(p, [owner](void* q) { owner->Free(q); });
  t.data_ = p;
  return t;
}

Tensor Tensor::Zeros(Backend& backend, Shape shape, DType dtype) {
  Tensor t = Empty(backend, std::move(shape), dtype);
  backend.ZeroBytes(t.raw(), t.nbytes());
  return t;
}

Tensor Tensor::View(void* data, Shape shape, DType dtype, Device device) {
  Tensor t;
  t.data_ = data;
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.device_ = device;
  return t;
}

Tensor Tensor::Subview(int64_t element_offset, Shape shape) const {
  LS_CHECK_GE(element_offset, 0);
  LS_CHECK_LE(element_offset + NumElements(shape), numel())
      << "subview " << ShapeToString(shape) << " at " << element_offset << " of "
      << ShapeToString(shape_);
  Tensor t = *this;
  t.data_ = static_cast<char*>(data_) + element_offset * static_cast<int64_t>(DTypeSize(dtype_));
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::Reshaped(Shape shape) const {
  LS_CHECK_EQ(NumElements(shape), numel()) << ShapeToString(shape) << " vs " << ShapeToString(shape_);
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

}  // namespace lockstep
