#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <sstream>

namespace msa {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::i32: return 4;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
  }
  return "?";
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ")";
  return os.str();
}

Tensor::Storage::~Storage() { std::free(ptr); }

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  MSA_CHECK(device == Device::cpu, "device tensors need the CUDA backend");
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = device;
  t.storage_ = std::make_shared<Storage>();
  size_t bytes = t.nbytes();
  size_t rounded = ((bytes + 63) / 64) * 64;  // 64-byte aligned for vector loads
  t.storage_->ptr = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  MSA_CHECK(t.storage_->ptr != nullptr, "out of host memory allocating " << bytes << " bytes");
  t.storage_->bytes = bytes;
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero_();
  return t;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

Tensor Tensor::view(const Shape& shape) const {
  Tensor t = *this;
  t.shape_ = shape;
  MSA_CHECK(t.numel() == numel(), "view " << shape_str(shape) << " of a tensor of shape " << shape_str(shape_));
  return t;
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  MSA_CHECK(ndim() >= 1 && 0 <= begin && begin <= end && end <= shape_[0],
            "slice [" << begin << ", " << end << ") of shape " << shape_str(shape_));
  Tensor t = *this;
  int64_t row = numel() / (shape_[0] == 0 ? 1 : shape_[0]);
  t.offset_ += static_cast<size_t>(begin * row) * dtype_size(dtype_);
  t.shape_[0] = end - begin;
  return t;
}

void Tensor::zero_() { std::memset(raw(), 0, nbytes()); }

void Tensor::copy_from(const Tensor& src) {
  MSA_CHECK(src.numel() == numel() && src.dtype() == dtype(),
            "copy " << shape_str(src.shape()) << " " << dtype_name(src.dtype()) << " into " << shape_str(shape_) << " "
                    << dtype_name(dtype_));
  std::memcpy(raw(), src.raw(), nbytes());
}

std::vector<double> Tensor::to_vector() const {
  std::vector<double> v(static_cast<size_t>(numel()));
  for (int64_t i = 0; i < numel(); ++i) {
    switch (dtype_) {
      case DType::f32: v[i] = data<float>()[i]; break;
      case DType::f64: v[i] = data<double>()[i]; break;
      case DType::i32: v[i] = data<int32_t>()[i]; break;
      default: MSA_CHECK(false, "to_vector of " << dtype_name(dtype_));
    }
  }
  return v;
}

void Tensor::from_vector(const std::vector<double>& v) {
  MSA_CHECK(static_cast<int64_t>(v.size()) == numel(), "from_vector size " << v.size() << " vs " << numel());
  for (int64_t i = 0; i < numel(); ++i) {
    switch (dtype_) {
      case DType::f32: data<float>()[i] = static_cast<float>(v[i]); break;
      case DType::f64: data<double>()[i] = v[i]; break;
      case DType::i32: data<int32_t>()[i] = static_cast<int32_t>(v[i]); break;
      default: MSA_CHECK(false, "from_vector of " << dtype_name(dtype_));
    }
  }
}

}  // namespace msa
