#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <sstream>

#if MSATRAIN_HAVE_CUDA
#include "kernels/cuda/memory.h"
#endif

namespace msa {
namespace {

// The only place that knows whether this build has a GPU backend.
void* allocate(size_t bytes, Device device) {
  const size_t rounded = ((bytes + 255) / 256) * 256;  // 256-byte aligned rows for vector loads on either side
  if (device == Device::cpu) return std::aligned_alloc(256, rounded == 0 ? 256 : rounded);
#if MSATRAIN_HAVE_CUDA
  return cuda::device_alloc(rounded);
#else
  MSA_CHECK(false, "device tensors need the CUDA backend; this build has none (configure with nvcc present)");
#endif
}

void release(void* ptr, Device device) {
  if (device == Device::cpu) return std::free(ptr);
#if MSATRAIN_HAVE_CUDA
  cuda::device_free(ptr);
#endif
}

// dst and src may live on either device.
void copy_raw(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (dst_dev == Device::cpu && src_dev == Device::cpu) return void(std::memcpy(dst, src, bytes));
#if MSATRAIN_HAVE_CUDA
  const auto kind = src_dev == Device::cpu   ? cuda::CopyKind::host_to_device
                    : dst_dev == Device::cpu ? cuda::CopyKind::device_to_host
                                             : cuda::CopyKind::device_to_device;
  cuda::copy_bytes(dst, src, bytes, kind);
#endif
}

// bf16 <-> float on the host: bf16 is the top half of an IEEE float; rounding to nearest even.
float bf16_to_float(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

}  // namespace

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

Tensor::Storage::~Storage() { release(ptr, device); }

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = device;
  t.storage_ = std::make_shared<Storage>();
  const size_t bytes = t.nbytes();
  t.storage_->ptr = allocate(bytes, device);
  MSA_CHECK(t.storage_->ptr != nullptr, "out of host memory allocating " << bytes << " bytes");
  t.storage_->bytes = bytes;
  t.storage_->device = device;
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

void Tensor::zero_() {
  if (device_ == Device::cpu) return void(std::memset(raw(), 0, nbytes()));
#if MSATRAIN_HAVE_CUDA
  cuda::zero_bytes(raw(), nbytes());
#endif
}

void Tensor::copy_from(const Tensor& src) {
  MSA_CHECK(src.numel() == numel() && src.dtype() == dtype(),
            "copy " << shape_str(src.shape()) << " " << dtype_name(src.dtype()) << " into " << shape_str(shape_) << " "
                    << dtype_name(dtype_));
  copy_raw(raw(), device_, src.raw(), src.device(), nbytes());
}

std::vector<double> Tensor::to_vector() const {
  std::vector<char> host(nbytes());
  copy_raw(host.data(), Device::cpu, raw(), device_, nbytes());
  std::vector<double> v(static_cast<size_t>(numel()));
  for (size_t i = 0; i < v.size(); ++i) {
    switch (dtype_) {
      case DType::f32: v[i] = reinterpret_cast<const float*>(host.data())[i]; break;
      case DType::f64: v[i] = reinterpret_cast<const double*>(host.data())[i]; break;
      case DType::i32: v[i] = reinterpret_cast<const int32_t*>(host.data())[i]; break;
      case DType::bf16: v[i] = bf16_to_float(reinterpret_cast<const uint16_t*>(host.data())[i]); break;
    }
  }
  return v;
}

void Tensor::from_vector(const std::vector<double>& v) {
  MSA_CHECK(static_cast<int64_t>(v.size()) == numel(), "from_vector size " << v.size() << " vs " << numel());
  std::vector<char> host(nbytes());
  for (size_t i = 0; i < v.size(); ++i) {
    switch (dtype_) {
      case DType::f32: reinterpret_cast<float*>(host.data())[i] = static_cast<float>(v[i]); break;
      case DType::f64: reinterpret_cast<double*>(host.data())[i] = v[i]; break;
      case DType::i32: reinterpret_cast<int32_t*>(host.data())[i] = static_cast<int32_t>(v[i]); break;
      case DType::bf16: reinterpret_cast<uint16_t*>(host.data())[i] = float_to_bf16(static_cast<float>(v[i])); break;
    }
  }
  copy_raw(raw(), device_, host.data(), Device::cpu, nbytes());
}

}  // namespace msa
