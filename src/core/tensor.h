// Tensor: a typed, shaped view of memory that knows its device. Row-major, contiguous.
// Layers allocate their buffers once (at model build time); the step itself allocates nothing.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"

namespace msa {

enum class DType : uint8_t { f32, f64, bf16, i32 };
enum class Device : uint8_t { cpu, cuda };

size_t dtype_size(DType t);
const char* dtype_name(DType t);

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);

class Tensor {
 public:
  Tensor() = default;
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu);
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu);

  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_.at(i < 0 ? i + ndim() : i); }
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  bool defined() const { return storage_ != nullptr; }

  void* raw() const { return static_cast<char*>(storage_->ptr) + offset_; }
  template <class T> T* data() const {
    MSA_CHECK(dtype_ == dtype_of<T>(), "tensor holds " << dtype_name(dtype_) << ", asked for " << dtype_name(dtype_of<T>()));
    return static_cast<T*>(raw());
  }

  // Same memory, new shape (numel must match).
  Tensor view(const Shape& shape) const;
  // Rows [begin, end) along dimension 0, sharing memory.
  Tensor slice(int64_t begin, int64_t end) const;

  void zero_();
  void copy_from(const Tensor& src);  // same numel and dtype; either may be on the host or the GPU
  // Host copies of the values as double (from either device), for tests, checksums, checkpoints and logging.
  std::vector<double> to_vector() const;
  void from_vector(const std::vector<double>& v);

 private:
  struct Storage {
    void* ptr = nullptr;
    size_t bytes = 0;
    Device device = Device::cpu;
    ~Storage();
  };
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;  // bytes
  Shape shape_;
  DType dtype_ = DType::f32;
  Device device_ = Device::cpu;
};

}  // namespace msa
