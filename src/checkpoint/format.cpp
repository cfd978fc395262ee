#include "checkpoint/format.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>

#include "core/error.h"

namespace msa {
namespace {

hid_t file_type(DType t) {
  switch (t) {
    case DType::f32: return H5T_IEEE_F32LE;
    case DType::f64: return H5T_IEEE_F64LE;
    default: MSA_CHECK(false, "checkpoints store f32 or f64 tensors, got " << dtype_name(t));
  }
  return H5I_INVALID_HID;
}

hid_t memory_type(DType t) {
  switch (t) {
    case DType::f32: return H5T_NATIVE_FLOAT;
    case DType::f64: return H5T_NATIVE_DOUBLE;
    default: MSA_CHECK(false, "checkpoints store f32 or f64 tensors, got " << dtype_name(t));
  }
  return H5I_INVALID_HID;
}

h5::Handle dataspace(const Shape& shape) {
  if (shape.empty()) return h5::Handle(h5::check(H5Screate(H5S_SCALAR), "H5Screate"));
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  return h5::Handle(h5::check(H5Screate_simple(int(dims.size()), dims.data(), nullptr), "H5Screate_simple"));
}

// The meta fields as root attributes, in one table so that writing and reading cannot drift apart.
struct IntField {
  const char* name;
  int64_t CheckpointMeta::*field;
};
constexpr IntField kIntFields[] = {
    {"format_version", &CheckpointMeta::format_version},
    {"step", &CheckpointMeta::step},
    {"samples_consumed", &CheckpointMeta::samples_consumed},
    {"tokens_consumed", &CheckpointMeta::tokens_consumed},
    {"optimizer_steps", &CheckpointMeta::optimizer_steps},
    {"skipped_steps", &CheckpointMeta::skipped_steps},
    {"skipped_in_a_row", &CheckpointMeta::skipped_in_a_row},
    {"rng.data_counter", &CheckpointMeta::data_counter},
    {"layout.dp", &CheckpointMeta::dp},
    {"layout.cp", &CheckpointMeta::cp},
    {"layout.ep", &CheckpointMeta::ep},
    {"layout.world", &CheckpointMeta::world},
};

}  // namespace

uint32_t tensor_crc32(const Tensor& t) {
  MSA_CHECK(t.device() == Device::cpu, "tensor_crc32 takes host tensors");
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* bytes = static_cast<const Bytef*>(t.raw());
  size_t left = t.nbytes();
  while (left > 0) {  // zlib takes 32-bit lengths
    const uInt n = uInt(std::min<size_t>(left, size_t(1) << 30));
    crc = crc32(crc, bytes, n);
    bytes += n;
    left -= n;
  }
  return uint32_t(crc);
}

// ---------------------------------------------------------------------------------------------------------
// Writer

CheckpointWriter::CheckpointWriter(const std::string& path) {
  h5::silence_errors();
  file_ = h5::Handle(h5::check(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "creating the file"));
  link_props_ = h5::Handle(h5::check(H5Pcreate(H5P_LINK_CREATE), "H5Pcreate"));
  h5::check(H5Pset_create_intermediate_group(link_props_.get(), 1), "H5Pset_create_intermediate_group");
}

void CheckpointWriter::write_meta(const CheckpointMeta& meta) {
  const hid_t root = file_.get();
  h5::write_attr(root, "format", std::string(kCheckpointFormat));
  for (const IntField& f : kIntFields) h5::write_attr(root, f.name, meta.*f.field);
  h5::write_attr(root, "msatrain_version", meta.msatrain_version);
  h5::write_attr(root, "created_utc", meta.created_utc);
  h5::write_attr(root, "rng.data_seed", meta.data_seed);
  h5::write_string_dataset(root, "config", meta.config_yaml);
}

void CheckpointWriter::write_tensor(const std::string& name, const Tensor& t) {
  MSA_CHECK(t.device() == Device::cpu, "checkpoint tensors are written from host memory: " << name);
  h5::Handle space = dataspace(t.shape());
  h5::Handle ds(h5::check(H5Dcreate2(file_.get(), name.c_str(), file_type(t.dtype()), space.get(), link_props_.get(),
                                     H5P_DEFAULT, H5P_DEFAULT),
                          "creating dataset " + name));
  h5::check(H5Dwrite(ds.get(), memory_type(t.dtype()), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.raw()),
            "writing dataset " + name);
  h5::write_attr(ds.get(), "crc32", uint64_t(tensor_crc32(t)));
}

void CheckpointWriter::close() {
  if (!file_.valid()) return;
  link_props_.reset();
  if (!file_.reset()) throw Error("closing the file: " + h5::last_error());
}

// ---------------------------------------------------------------------------------------------------------
// Reader

void CheckpointReader::fail(const std::string& what) const { throw UserError("checkpoint " + path_ + ": " + what); }

CheckpointReader::CheckpointReader(const std::string& path) : path_(path) {
  h5::silence_errors();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail("no such file");
  if (std::filesystem::is_directory(path, ec)) fail("is a directory, not a checkpoint file");
  try {
    const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    if (id < 0) fail("not a readable HDF5 file: " + h5::last_error());
    file_ = h5::Handle(id);
    const hid_t root = file_.get();
    if (!h5::has_attr(root, "format") || h5::read_attr_string(root, "format") != kCheckpointFormat)
      fail("not an msatrain checkpoint (no format = \"" + std::string(kCheckpointFormat) + "\" attribute)");
    for (const IntField& f : kIntFields) {
      if (!h5::has_attr(root, f.name)) fail(std::string("the attribute '") + f.name + "' is missing");
      meta_.*f.field = h5::read_attr_i64(root, f.name);
    }
    if (meta_.format_version > kCheckpointFormatVersion)
      fail("format version " + std::to_string(meta_.format_version) + " is newer than this msatrain reads (" +
           std::to_string(kCheckpointFormatVersion) + ")");
    meta_.msatrain_version = h5::read_attr_string(root, "msatrain_version");
    meta_.created_utc = h5::read_attr_string(root, "created_utc");
    meta_.data_seed = h5::read_attr_u64(root, "rng.data_seed");
    if (!h5::link_exists(root, "config")) fail("the dataset 'config' is missing");
    meta_.config_yaml = h5::read_string_dataset(root, "config");

    // Every float dataset below the root except /config is a tensor.
    std::function<void(hid_t, const std::string&)> walk = [&](hid_t group, const std::string& prefix) {
      for (const std::string& link : h5::list_group(group)) {
        const std::string name = prefix.empty() ? link : prefix + "/" + link;
        if (name == "config") continue;
        h5::Handle obj(h5::check(H5Oopen(group, link.c_str(), H5P_DEFAULT), "opening " + name));
        const H5I_type_t kind = H5Iget_type(obj.get());
        if (kind == H5I_GROUP) {
          walk(obj.get(), name);
          continue;
        }
        if (kind != H5I_DATASET) continue;
        TensorInfo info;
        info.name = name;
        h5::Handle type(h5::check(H5Dget_type(obj.get()), "H5Dget_type " + name));
        const size_t size = H5Tget_size(type.get());
        if (H5Tget_class(type.get()) != H5T_FLOAT || (size != 4 && size != 8))
          fail("dataset " + name + " is not a float32 or float64 tensor");
        info.dtype = size == 4 ? DType::f32 : DType::f64;
        h5::Handle space(h5::check(H5Dget_space(obj.get()), "H5Dget_space " + name));
        const int ndim = int(h5::check(H5Sget_simple_extent_ndims(space.get()), "H5Sget_simple_extent_ndims"));
        std::vector<hsize_t> dims(static_cast<size_t>(ndim));
        h5::check(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), "H5Sget_simple_extent_dims");
        info.shape.assign(dims.begin(), dims.end());
        if (h5::has_attr(obj.get(), "crc32")) {
          info.has_crc = true;
          info.crc = uint32_t(h5::read_attr_u64(obj.get(), "crc32"));
        }
        tensors_.push_back(std::move(info));
      }
    };
    walk(root, "");
    std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  } catch (const UserError&) {
    throw;
  } catch (const Error& e) {
    fail(e.what());
  }
}

const TensorInfo* CheckpointReader::find(const std::string& name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorInfo& t, const std::string& n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

Tensor CheckpointReader::read_stored(const std::string& name) const {
  const TensorInfo* info = find(name);
  if (!info) fail("has no tensor " + name);
  Tensor t = Tensor::empty(info->shape, info->dtype);
  try {
    h5::Handle ds(h5::check(H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT), "opening " + name));
    h5::check(H5Dread(ds.get(), memory_type(t.dtype()), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.raw()), "reading " + name);
  } catch (const UserError&) {
    throw;
  } catch (const Error& e) {
    fail(e.what());
  }
  return t;
}

void CheckpointReader::read(const std::string& name, Tensor& into) const {
  const TensorInfo* info = find(name);
  if (!info) fail("has no tensor " + name);
  if (info->shape != into.shape())
    fail("tensor " + name + " has shape " + shape_str(info->shape) + " in the file but " + shape_str(into.shape()) +
         " in this model");
  Tensor stored = into.dtype() == info->dtype ? into : read_stored(name);
  if (into.dtype() == info->dtype) {
    try {
      h5::Handle ds(h5::check(H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT), "opening " + name));
      h5::check(H5Dread(ds.get(), memory_type(into.dtype()), H5S_ALL, H5S_ALL, H5P_DEFAULT, into.raw()),
                "reading " + name);
    } catch (const Error& e) {
      fail(e.what());
    }
  }
  if (info->has_crc) {
    const uint32_t crc = tensor_crc32(stored);
    if (crc != info->crc) {
      char buf[96];
      std::snprintf(buf, sizeof buf, " is corrupt (CRC-32 0x%08x, stored 0x%08x)", crc, info->crc);
      fail("tensor " + name + buf);
    }
  }
  if (into.dtype() != info->dtype) into.from_vector(stored.to_vector());
}

}  // namespace msa
