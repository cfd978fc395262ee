#include "checkpoint/h5.h"

#include "core/error.h"

namespace msa::h5 {
namespace {

struct ErrorWalk {
  std::vector<std::string> descs;
};

herr_t collect(unsigned /*n*/, const H5E_error2_t* err, void* data) {
  if (err->desc && *err->desc) static_cast<ErrorWalk*>(data)->descs.emplace_back(err->desc);
  return 0;
}

// "... errno = 28, error message = 'No space left on device', ..." -> "No space left on device"
std::string system_message(const std::string& desc) {
  const std::string key = "error message = '";
  const size_t at = desc.find(key);
  if (at == std::string::npos) return "";
  const size_t end = desc.find('\'', at + key.size());
  return desc.substr(at + key.size(), end == std::string::npos ? std::string::npos : end - at - key.size());
}

// Variable-length UTF-8: h5py reads these attributes as str.
Handle string_type() {
  Handle t(H5Tcopy(H5T_C_S1));
  check(t.get(), "H5Tcopy");
  check(H5Tset_size(t.get(), H5T_VARIABLE), "H5Tset_size");
  check(H5Tset_cset(t.get(), H5T_CSET_UTF8), "H5Tset_cset");
  return t;
}

std::string strip_nuls(std::string s) {
  while (!s.empty() && s.back() == '\0') s.pop_back();
  return s;
}

// Reads a scalar string attribute or dataset, variable-length or fixed-length.
template <class Read>
std::string read_string(hid_t stored_type, const std::string& what, Read read) {
  MSA_CHECK(H5Tget_class(stored_type) == H5T_STRING, what << " is not a string");
  if (H5Tis_variable_str(stored_type) > 0) {
    Handle mem = string_type();
    char* p = nullptr;
    check(read(mem.get(), &p), "reading " + what);
    std::string s = p ? p : "";
    H5free_memory(p);
    return s;
  }
  std::string buf(H5Tget_size(stored_type), '\0');
  check(read(stored_type, buf.data()), "reading " + what);
  return strip_nuls(buf);
}

void write_int_attr(hid_t obj, const std::string& name, hid_t file_type, hid_t mem_type, const void* value) {
  if (H5Aexists(obj, name.c_str()) > 0) check(H5Adelete(obj, name.c_str()), "H5Adelete " + name);
  Handle space(check(H5Screate(H5S_SCALAR), "H5Screate"));
  Handle attr(check(H5Acreate2(obj, name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                    "creating attribute " + name));
  check(H5Awrite(attr.get(), mem_type, value), "writing attribute " + name);
}

void read_int_attr(hid_t obj, const std::string& name, hid_t mem_type, void* value) {
  Handle attr(check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "opening attribute " + name));
  Handle type(check(H5Aget_type(attr.get()), "H5Aget_type"));
  MSA_CHECK(H5Tget_class(type.get()) == H5T_INTEGER, "attribute " << name << " is not an integer");
  check(H5Aread(attr.get(), mem_type, value), "reading attribute " + name);
}

}  // namespace

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    o.id_ = H5I_INVALID_HID;
  }
  return *this;
}

bool Handle::reset() {
  if (id_ < 0) return true;
  const hid_t id = id_;
  id_ = H5I_INVALID_HID;
  herr_t status = 0;
  switch (H5Iget_type(id)) {
    case H5I_FILE: status = H5Fclose(id); break;
    case H5I_GROUP: status = H5Gclose(id); break;
    case H5I_DATASET: status = H5Dclose(id); break;
    case H5I_DATASPACE: status = H5Sclose(id); break;
    case H5I_DATATYPE: status = H5Tclose(id); break;
    case H5I_ATTR: status = H5Aclose(id); break;
    case H5I_GENPROP_LST: status = H5Pclose(id); break;
    default: status = H5Idec_ref(id); break;
  }
  return status >= 0;
}

void silence_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

std::string last_error() {
  ErrorWalk walk;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect, &walk);
  if (walk.descs.empty()) return "unknown HDF5 error";
  // The outermost entry says what failed, the innermost why; a system error message says it best.
  for (auto it = walk.descs.rbegin(); it != walk.descs.rend(); ++it)
    if (std::string sys = system_message(*it); !sys.empty()) return walk.descs.front() + " (" + sys + ")";
  if (walk.descs.size() == 1) return walk.descs.front();
  return walk.descs.front() + " (" + walk.descs.back() + ")";
}

int64_t check(int64_t status, const std::string& what) {
  if (status < 0) throw Error(what + ": " + last_error());
  return status;
}

void write_attr(hid_t obj, const std::string& name, int64_t value) {
  write_int_attr(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

void write_attr(hid_t obj, const std::string& name, uint64_t value) {
  write_int_attr(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &value);
}

void write_attr(hid_t obj, const std::string& name, const std::string& value) {
  if (H5Aexists(obj, name.c_str()) > 0) check(H5Adelete(obj, name.c_str()), "H5Adelete " + name);
  Handle type = string_type();
  Handle space(check(H5Screate(H5S_SCALAR), "H5Screate"));
  Handle attr(check(H5Acreate2(obj, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                    "creating attribute " + name));
  const char* p = value.c_str();
  check(H5Awrite(attr.get(), type.get(), &p), "writing attribute " + name);
}

bool has_attr(hid_t obj, const std::string& name) { return H5Aexists(obj, name.c_str()) > 0; }

int64_t read_attr_i64(hid_t obj, const std::string& name) {
  int64_t v = 0;
  read_int_attr(obj, name, H5T_NATIVE_INT64, &v);
  return v;
}

uint64_t read_attr_u64(hid_t obj, const std::string& name) {
  uint64_t v = 0;
  read_int_attr(obj, name, H5T_NATIVE_UINT64, &v);
  return v;
}

std::string read_attr_string(hid_t obj, const std::string& name) {
  Handle attr(check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "opening attribute " + name));
  Handle type(check(H5Aget_type(attr.get()), "H5Aget_type"));
  return read_string(type.get(), "attribute " + name,
                     [&](hid_t mem, void* buf) { return H5Aread(attr.get(), mem, buf); });
}

void write_string_dataset(hid_t loc, const std::string& name, const std::string& value) {
  Handle type = string_type();
  Handle space(check(H5Screate(H5S_SCALAR), "H5Screate"));
  Handle ds(check(H5Dcreate2(loc, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                  "creating dataset " + name));
  const char* p = value.c_str();
  check(H5Dwrite(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &p), "writing dataset " + name);
}

std::string read_string_dataset(hid_t loc, const std::string& name) {
  Handle ds(check(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), "opening dataset " + name));
  Handle type(check(H5Dget_type(ds.get()), "H5Dget_type"));
  return read_string(type.get(), "dataset " + name,
                     [&](hid_t mem, void* buf) { return H5Dread(ds.get(), mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf); });
}

std::vector<std::string> list_group(hid_t group) {
  H5G_info_t info;
  check(H5Gget_info(group, &info), "H5Gget_info");
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t len = check(H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT),
                              "H5Lget_name_by_idx");
    std::string name(size_t(len) + 1, '\0');
    check(H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT),
          "H5Lget_name_by_idx");
    name.resize(size_t(len));
    names.push_back(std::move(name));
  }
  return names;
}

bool link_exists(hid_t loc, const std::string& path) {
  // H5Lexists checks one level at a time: every prefix must exist first.
  size_t start = 0;
  while (true) {
    const size_t slash = path.find('/', start);
    const std::string prefix = path.substr(0, slash);
    if (H5Lexists(loc, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (slash == std::string::npos) return true;
    start = slash + 1;
  }
}

}  // namespace msa::h5
