// A thin layer over the HDF5 C API for the checkpoint files: an owning handle that closes itself, and
// checks that turn HDF5's error stack into one readable line ("No space left on device" rather than a
// 20-line trace on stderr). Only what the checkpoint format needs; see checkpoint/format.h for the layout.
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace msa::h5 {

// An HDF5 identifier (file, group, dataset, dataspace, datatype, attribute, property list) that is closed
// when the handle goes. Movable, not copyable.
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  Handle(Handle&& o) noexcept : id_(o.id_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now; returns false when HDF5 reports an error (e.g. a failed flush while closing a file).
  bool reset();

 private:
  hid_t id_ = H5I_INVALID_HID;
};

// Stops HDF5 from printing its error stack on stderr for this thread (errors are reported by our messages).
void silence_errors();

// The innermost messages of HDF5's current error stack, e.g. "file write failed: ... No space left on device".
std::string last_error();

// Throws Error("<what>: <last_error()>") when status < 0; returns status otherwise.
int64_t check(int64_t status, const std::string& what);

// Attributes on an object (the file's root group, a dataset).
void write_attr(hid_t obj, const std::string& name, int64_t value);
void write_attr(hid_t obj, const std::string& name, uint64_t value);
void write_attr(hid_t obj, const std::string& name, const std::string& value);
bool has_attr(hid_t obj, const std::string& name);
int64_t read_attr_i64(hid_t obj, const std::string& name);
uint64_t read_attr_u64(hid_t obj, const std::string& name);
std::string read_attr_string(hid_t obj, const std::string& name);

// A scalar variable-length UTF-8 string dataset, for long text such as the config YAML (fixed-length ones
// read too).
void write_string_dataset(hid_t loc, const std::string& name, const std::string& value);
std::string read_string_dataset(hid_t loc, const std::string& name);

// The names of the links inside a group, in name order.
std::vector<std::string> list_group(hid_t group);
bool link_exists(hid_t loc, const std::string& path);

}  // namespace msa::h5
