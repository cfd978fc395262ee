#include "cli/op_msa.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "checkpoint/h5.h"
#include "config/load.h"
#include "core/error.h"
#include "model/attention_msa.h"
#include "model/layer_context.h"

namespace msa {
namespace {

namespace fs = std::filesystem;

constexpr const char* kOpUsage =
    "usage: msatrain op msa --in IN.h5 --out OUT.h5\n"
    "\n"
    "Runs one operator of the model on inputs stored in an HDF5 file, for checks against external references.\n"
    "  msa   one MSA attention layer, forward and backward (see msatrain op msa --help)\n";

constexpr const char* kOpMsaUsage =
    "usage: msatrain op msa --in IN.h5 --out OUT.h5\n"
    "\n"
    "Runs one MSA attention layer (spec/msa.md) forward and backward in float64 on the CPU, with the same code\n"
    "as training. IN.h5 holds the config as root attributes (d_model, n_heads, n_kv_heads, head_dim, rope_theta,\n"
    "rotary_fraction, qk_norm, norm_eps, block_size, topk_blocks, index_head_dim, score_pool, force_local,\n"
    "sink_blocks, kl_coef, detach_index_input, phase; optional kl_weight), the layer input x (B, T, d_model),\n"
    "every weight under its parameter name (wqkv, wo, q_norm, k_norm, index.wq, index.wk, index.q_norm,\n"
    "index.k_norm) and optionally the upstream gradient dout (B, T, d_model).\n"
    "OUT.h5 receives out, sel, lse, q, k, index.qi, index.ki, grad/x, grad/<parameter> and the attributes\n"
    "kl_loss, kl_objective, index_recall, selected_share. It is written atomically.\n"
    "docs/op_msa.md describes both files and the gradients exactly.\n";

constexpr const char* kOutputFormat = "msatrain-op-msa";
constexpr int64_t kOutputFormatVersion = 1;
const std::string kPrefix = "attn.";  // the layer's parameter prefix; file names drop it

// ---- Config attributes ----------------------------------------------------------------------------------------
enum class Kind { integer, real, boolean, text };

struct ConfigAttr {
  const char* name;  // root attribute
  const char* key;   // the training config key it sets
  Kind kind;
};

const std::vector<ConfigAttr>& config_attrs() {
  static const std::vector<ConfigAttr> attrs = {
      {"d_model", "model.d_model", Kind::integer},
      {"n_heads", "model.n_heads", Kind::integer},
      {"n_kv_heads", "model.n_kv_heads", Kind::integer},
      {"head_dim", "model.head_dim", Kind::integer},
      {"rope_theta", "model.rope_theta", Kind::real},
      {"rotary_fraction", "model.rotary_fraction", Kind::real},
      {"qk_norm", "model.qk_norm", Kind::boolean},
      {"norm_eps", "model.norm_eps", Kind::real},
      {"block_size", "attention.block_size", Kind::integer},
      {"topk_blocks", "attention.topk_blocks", Kind::integer},
      {"index_head_dim", "attention.index_head_dim", Kind::integer},
      {"score_pool", "attention.score_pool", Kind::text},
      {"force_local", "attention.force_local", Kind::boolean},
      {"sink_blocks", "attention.sink_blocks", Kind::integer},
      {"kl_coef", "attention.kl_coef", Kind::real},
      {"detach_index_input", "attention.detach_index_input", Kind::boolean},
  };
  return attrs;
}

// One scalar attribute as stored: h5py writes int as an integer, float as a float, bool as an enum
// (FALSE/TRUE) and str as a string.
struct Scalar {
  H5T_class_t cls = H5T_NO_CLASS;
  int64_t i = 0;
  double d = 0;
  std::string s;  // the string, or the enum member's name

  std::string describe() const {
    switch (cls) {
      case H5T_INTEGER: return "the integer " + std::to_string(i);
      case H5T_FLOAT: {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.17g", d);
        return std::string("the float ") + buf;
      }
      case H5T_ENUM: return "the enum value " + s;
      case H5T_STRING: return "the string '" + s + "'";
      default: return "a value of an unsupported HDF5 type";
    }
  }
};

Scalar read_scalar_attr(hid_t obj, const std::string& name, const std::string& file) {
  h5::Handle attr(h5::check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), file + ": opening attribute " + name));
  h5::Handle space(h5::check(H5Aget_space(attr.get()), "H5Aget_space"));
  const hssize_t points = H5Sget_simple_extent_npoints(space.get());
  MSA_USER_CHECK(points == 1, file << ": attribute '" << name << "' must be a single value, it holds " << points);
  h5::Handle type(h5::check(H5Aget_type(attr.get()), "H5Aget_type"));
  Scalar v;
  v.cls = H5Tget_class(type.get());
  switch (v.cls) {
    case H5T_INTEGER:
      h5::check(H5Aread(attr.get(), H5T_NATIVE_INT64, &v.i), file + ": reading attribute " + name);
      break;
    case H5T_FLOAT:
      h5::check(H5Aread(attr.get(), H5T_NATIVE_DOUBLE, &v.d), file + ": reading attribute " + name);
      break;
    case H5T_ENUM: {
      h5::Handle native(h5::check(H5Tget_native_type(type.get(), H5T_DIR_ASCEND), "H5Tget_native_type"));
      std::vector<unsigned char> raw(H5Tget_size(native.get()));
      h5::check(H5Aread(attr.get(), native.get(), raw.data()), file + ": reading attribute " + name);
      char member[64] = {0};
      if (H5Tenum_nameof(native.get(), raw.data(), member, sizeof member) >= 0) v.s = member;
      break;
    }
    case H5T_STRING: v.s = h5::read_attr_string(obj, name); break;
    default: break;
  }
  return v;
}

std::string lower(std::string s) {
  for (char& ch : s) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

std::string format_real(double d) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", d);
  return buf;
}

// The attribute as the YAML scalar of its config key; a type that does not fit is a UserError.
std::string as_yaml(const Scalar& v, Kind kind, const std::string& name, const std::string& file) {
  const std::string bad = file + ": attribute '" + name + "' must be ";
  switch (kind) {
    case Kind::integer:
      if (v.cls == H5T_INTEGER) return std::to_string(v.i);
      MSA_USER_CHECK(v.cls == H5T_FLOAT && std::isfinite(v.d) && v.d == std::floor(v.d) && std::fabs(v.d) < 9e15,
                     bad << "an integer, got " << v.describe());
      return std::to_string(int64_t(v.d));
    case Kind::real:
      if (v.cls == H5T_FLOAT) return format_real(v.d);
      MSA_USER_CHECK(v.cls == H5T_INTEGER, bad << "a number, got " << v.describe());
      return std::to_string(v.i);
    case Kind::boolean:
      if (v.cls == H5T_ENUM && (lower(v.s) == "true" || lower(v.s) == "false")) return lower(v.s);
      MSA_USER_CHECK(v.cls == H5T_INTEGER && (v.i == 0 || v.i == 1),
                     bad << "a boolean (True/False, or the integer 0/1), got " << v.describe());
      return v.i ? "true" : "false";
    case Kind::text:
      MSA_USER_CHECK(v.cls == H5T_STRING, bad << "a string, got " << v.describe());
      return v.s;
  }
  return "";
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}

struct OpConfig {
  ModelConfig model;
  AttentionConfig attn;
  MsaPhase phase = MsaPhase::sparse;
  std::optional<double> kl_weight;  // absent: 1 / (B T)
  std::map<std::string, std::string> echo;  // attribute -> YAML text, written back to the output
};

// Reads the config attributes and validates them with the training config's own rules (types, ranges and
// cross-field checks such as n_heads % n_kv_heads), so that op msa accepts exactly what training would run.
OpConfig read_config(hid_t root, const std::string& file) {
  std::set<std::string> known = {"phase", "kl_weight"};
  for (const auto& a : config_attrs()) known.insert(a.name);
  // Unknown attributes are refused: a misspelt optional one would otherwise be silently ignored.
  std::vector<std::string> names;
  h5::check(H5Aiterate2(
                root, H5_INDEX_NAME, H5_ITER_INC, nullptr,
                [](hid_t, const char* name, const H5A_info_t*, void* out) -> herr_t {
                  static_cast<std::vector<std::string>*>(out)->emplace_back(name);
                  return 0;
                },
                &names),
            file + ": listing the root attributes");
  for (const std::string& name : names) {
    if (!known.count(name)) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      MSA_USER_CHECK(false, file << ": unknown root attribute '" << name << "' (the config attributes are " << list
                                 << "; see docs/op_msa.md)");
    }
  }
  std::string missing;
  for (const auto& a : config_attrs())
    if (!h5::has_attr(root, a.name)) missing += (missing.empty() ? "" : ", ") + std::string(a.name);
  if (!h5::has_attr(root, "phase")) missing += (missing.empty() ? "" : ", ") + std::string("phase");
  MSA_USER_CHECK(missing.empty(), file << ": missing root attribute(s) " << missing
                                       << " (every config attribute is required; see docs/op_msa.md)");

  OpConfig c;
  std::vector<ConfigOverride> overrides;
  std::vector<std::pair<std::string, std::string>> where;  // "--set key=value" -> "attribute name = value"
  for (const auto& a : config_attrs()) {
    const std::string text = as_yaml(read_scalar_attr(root, a.name, file), a.kind, a.name, file);
    c.echo[a.name] = text;
    overrides.push_back({a.key, text});
    where.emplace_back(std::string("--set ") + a.key + "=" + text, std::string("attribute ") + a.name + " = " + text);
  }
  try {
    const RunConfig rc = load_config_string("attention:\n  type: msa\n", file, overrides);
    c.model = rc.model;
    c.attn = rc.attention;
  } catch (const UserError& e) {
    std::string msg = e.what();
    for (const auto& [from, to] : where) msg = replace_all(msg, from, to);
    throw UserError(file + ": config attributes rejected by the training config's rules (attribute X is the key "
                           "model.X or attention.X): " + msg);
  }

  const std::string phase = as_yaml(read_scalar_attr(root, "phase", file), Kind::text, "phase", file);
  MSA_USER_CHECK(phase == "warmup" || phase == "sparse",
                 file << ": attribute 'phase' must be \"warmup\" or \"sparse\", got '" << phase << "'");
  c.phase = phase == "warmup" ? MsaPhase::warmup : MsaPhase::sparse;
  if (h5::has_attr(root, "kl_weight")) {
    const Scalar v = read_scalar_attr(root, "kl_weight", file);
    const double w = v.cls == H5T_INTEGER ? double(v.i) : v.d;
    MSA_USER_CHECK((v.cls == H5T_FLOAT || v.cls == H5T_INTEGER) && std::isfinite(w) && w >= 0,
                   file << ": attribute 'kl_weight' must be a finite number >= 0, got " << v.describe());
    c.kl_weight = w;
  }
  return c;
}

// ---- Datasets ------------------------------------------------------------------------------------------------
// The shape each dataset must have, in the config's terms, for the messages.
std::string expected_shape_formula(const std::string& name) {
  static const std::map<std::string, std::string> formulas = {
      {"x", "(B, T, d_model)"},
      {"dout", "(B, T, d_model), the shape of x"},
      {"wqkv", "((n_heads + 2 n_kv_heads) head_dim, d_model)"},
      {"wo", "(d_model, n_heads head_dim)"},
      {"q_norm", "(head_dim)"},
      {"k_norm", "(head_dim)"},
      {"index.wq", "(n_kv_heads index_head_dim, d_model)"},
      {"index.wk", "(index_head_dim, d_model)"},
      {"index.q_norm", "(index_head_dim)"},
      {"index.k_norm", "(index_head_dim)"},
  };
  auto it = formulas.find(name);
  MSA_CHECK(it != formulas.end(), "no shape formula for dataset " << name);
  return it->second;
}

h5::Handle open_dataset(hid_t file, const std::string& name, const std::string& path) {
  MSA_USER_CHECK(h5::link_exists(file, name),
                 path << ": missing dataset '" << name << "' of shape " << expected_shape_formula(name)
                      << " (see docs/op_msa.md)");
  h5::Handle obj(h5::check(H5Oopen(file, name.c_str(), H5P_DEFAULT), path + ": opening " + name));
  MSA_USER_CHECK(H5Iget_type(obj.get()) == H5I_DATASET, path << ": '" << name << "' must be a dataset");
  return obj;
}

Shape dataset_shape(hid_t ds) {
  h5::Handle space(h5::check(H5Dget_space(ds), "H5Dget_space"));
  const int rank = H5Sget_simple_extent_ndims(space.get());
  h5::check(rank, "H5Sget_simple_extent_ndims");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  h5::check(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), "H5Sget_simple_extent_dims");
  return Shape(dims.begin(), dims.end());
}

// Reads a floating-point dataset of exactly `shape` into a new f64 tensor (HDF5 converts f32/f16 to double).
Tensor read_tensor(hid_t file, const std::string& name, const Shape& shape, const std::string& path) {
  h5::Handle ds = open_dataset(file, name, path);
  const Shape got = dataset_shape(ds.get());
  MSA_USER_CHECK(got == shape, path << ": dataset '" << name << "' has shape " << shape_str(got) << ", expected "
                                    << shape_str(shape) << " = " << expected_shape_formula(name));
  h5::Handle type(h5::check(H5Dget_type(ds.get()), "H5Dget_type"));
  MSA_USER_CHECK(H5Tget_class(type.get()) == H5T_FLOAT,
                 path << ": dataset '" << name << "' must hold floating-point numbers (float64 preferred)");
  Tensor t = Tensor::empty(shape, DType::f64);
  if (t.numel() > 0)
    h5::check(H5Dread(ds.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.raw()),
              path + ": reading dataset " + name);
  const double* v = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i)
    MSA_USER_CHECK(std::isfinite(v[i]), path << ": dataset '" << name << "' holds a non-finite value (" << v[i]
                                             << ") at flat index " << i);
  return t;
}

// ---- Output --------------------------------------------------------------------------------------------------
void write_attr_f64(hid_t obj, const std::string& name, double value) {
  h5::Handle space(h5::check(H5Screate(H5S_SCALAR), "H5Screate"));
  h5::Handle attr(h5::check(H5Acreate2(obj, name.c_str(), H5T_IEEE_F64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                            "creating attribute " + name));
  h5::check(H5Awrite(attr.get(), H5T_NATIVE_DOUBLE, &value), "writing attribute " + name);
}

// A host f64 or i32 tensor as a dataset of the given shape (same element count).
void write_tensor(hid_t loc, const std::string& name, const Tensor& t, const Shape& shape) {
  MSA_CHECK(t.dtype() == DType::f64 || t.dtype() == DType::i32, "write_tensor: " << dtype_name(t.dtype()));
  const Tensor v = t.view(shape);
  const bool f64 = t.dtype() == DType::f64;
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  h5::Handle space(h5::check(H5Screate_simple(int(dims.size()), dims.data(), nullptr), "H5Screate_simple"));
  h5::Handle ds(h5::check(H5Dcreate2(loc, name.c_str(), f64 ? H5T_IEEE_F64LE : H5T_STD_I32LE, space.get(),
                                     H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                          "creating dataset " + name));
  h5::check(H5Dwrite(ds.get(), f64 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.raw()),
            "writing dataset " + name);
}

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) throw Error("opening " + path + " to fsync it: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw Error("fsync of " + path + ": " + std::strerror(err));
}

bool is_hdf5(const std::string& path) {
#if H5_VERSION_GE(1, 12, 0)
  return H5Fis_accessible(path.c_str(), H5P_DEFAULT) > 0;
#else
  return H5Fis_hdf5(path.c_str()) > 0;
#endif
}

}  // namespace

OpMsaSummary op_msa(const std::string& in_path, const std::string& out_path) {
  h5::silence_errors();
  std::error_code ec;
  MSA_USER_CHECK(fs::exists(in_path, ec), "input file '" << in_path << "' does not exist");
  MSA_USER_CHECK(!fs::is_directory(in_path, ec), "input file '" << in_path << "' is a directory");
  MSA_USER_CHECK(is_hdf5(in_path), "input file '" << in_path << "' is not an HDF5 file");
  const fs::path out_fs(out_path);
  const fs::path out_dir = out_fs.has_parent_path() ? out_fs.parent_path() : fs::path(".");
  MSA_USER_CHECK(!out_fs.filename().empty(), "output path '" << out_path << "' names no file");
  MSA_USER_CHECK(fs::is_directory(out_dir, ec), "the folder of the output file '" << out_path << "' does not exist");

  // ---- Input: config, geometry, then the layer built for it and its weights read in place.
  h5::Handle in(H5Fopen(in_path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  MSA_USER_CHECK(in.valid(), "cannot open '" << in_path << "': " << h5::last_error());
  const OpConfig oc = read_config(in.get(), in_path);

  h5::Handle xds = open_dataset(in.get(), "x", in_path);
  const Shape xs = dataset_shape(xds.get());
  xds.reset();
  MSA_USER_CHECK(xs.size() == 3 && xs[0] >= 1 && xs[1] >= 1 && xs[2] == oc.model.d_model,
                 in_path << ": dataset 'x' has shape " << shape_str(xs) << ", expected (B, T, d_model = "
                         << oc.model.d_model << ") with B, T >= 1");
  const int64_t B = xs[0], T = xs[1], C = xs[2], N = B * T;

  LayerContext ctx(oc.model, oc.attn, DType::f64, Device::cpu, B, T);
  ctx.phase = oc.phase;
  const double kl_weight = oc.kl_weight ? *oc.kl_weight : 1.0 / double(N);
  ctx.weights = LossWeights{1.0, kl_weight};  // dout is taken as the gradient of the loss as it is
  ctx.measure_recall = true;
  AttentionMSA layer("attn", ctx);
  ParamList params;
  layer.collect(params);

  std::set<std::string> expected = {"x", "dout"};
  for (const Param* p : params) {
    MSA_CHECK(p->name.rfind(kPrefix, 0) == 0, "parameter " << p->name << " lacks the prefix " << kPrefix);
    expected.insert(p->name.substr(kPrefix.size()));
  }
  for (const std::string& name : h5::list_group(in.get()))
    if (!expected.count(name)) {
      std::string list;
      for (const auto& e : expected) list += (list.empty() ? "" : ", ") + e;
      const bool norm = name == "q_norm" || name == "k_norm";
      MSA_USER_CHECK(false, in_path << ": unexpected dataset or group '" << name << "' at the root"
                                    << (norm ? " (qk_norm is false: the layer has no q_norm/k_norm)" : "")
                                    << "; this config reads " << list);
    }

  const Tensor x = read_tensor(in.get(), "x", {B, T, C}, in_path).view({N, C});
  const bool has_dout = h5::link_exists(in.get(), "dout");
  const Tensor dout = has_dout ? read_tensor(in.get(), "dout", {B, T, C}, in_path).view({N, C})
                               : Tensor::zeros({N, C}, DType::f64);
  for (Param* p : params) {
    p->master.copy_from(read_tensor(in.get(), p->name.substr(kPrefix.size()), p->master.shape(), in_path));
    p->sync_value();
    p->grad.zero_();
  }
  in.reset();

  // ---- The layer, exactly as a training step runs it.
  const Tensor& out = layer.forward(x);
  Tensor dx = Tensor::zeros({N, C}, DType::f64);
  layer.backward(dx, dout, x);
  const MsaLayerStats st = layer.msa_stats();
  MSA_CHECK(st.rows == N * oc.model.n_kv_heads && st.recall_measured, "op msa: KL statistics over " << st.rows
                                                                                                   << " rows");
  OpMsaSummary sum;
  sum.batch = B;
  sum.seq = T;
  sum.phase = oc.phase == MsaPhase::warmup ? "warmup" : "sparse";
  sum.kl_loss = st.kl_sum / double(st.rows);
  sum.kl_objective = st.objective;
  sum.index_recall = st.recall_sum / double(st.rows);
  sum.selected_share = st.selected_share_sum / double(st.rows);

  // ---- Output, atomically: temporary file beside the target, fsync, rename, fsync of the folder.
  const std::string tmp_name = "." + out_fs.filename().string() + ".tmp." + std::to_string(::getpid());
  const std::string tmp = (out_dir / tmp_name).string();
  try {
    h5::Handle f(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    if (!f.valid()) throw UserError("cannot create '" + tmp + "': " + h5::last_error());
    const hid_t root = f.get();
    h5::write_attr(root, "format", std::string(kOutputFormat));
    h5::write_attr(root, "format_version", kOutputFormatVersion);
    h5::write_attr(root, "msatrain_version", std::string(MSATRAIN_VERSION));
    h5::write_attr(root, "B", B);
    h5::write_attr(root, "T", T);
    for (const auto& a : config_attrs()) {
      const std::string& text = oc.echo.at(a.name);
      switch (a.kind) {
        case Kind::integer: h5::write_attr(root, a.name, int64_t(std::stoll(text))); break;
        case Kind::real: write_attr_f64(root, a.name, std::stod(text)); break;
        case Kind::boolean: h5::write_attr(root, a.name, int64_t(text == "true" ? 1 : 0)); break;
        case Kind::text: h5::write_attr(root, a.name, text); break;
      }
    }
    h5::write_attr(root, "phase", sum.phase);
    write_attr_f64(root, "kl_weight", kl_weight);
    h5::write_attr(root, "has_dout", int64_t(has_dout ? 1 : 0));
    write_attr_f64(root, "kl_loss", sum.kl_loss);
    write_attr_f64(root, "kl_sum", st.kl_sum);
    write_attr_f64(root, "kl_objective", st.objective);
    write_attr_f64(root, "kl_grad_coef", oc.attn.kl_coef * kl_weight / double(oc.model.n_kv_heads));
    write_attr_f64(root, "index_recall", sum.index_recall);
    write_attr_f64(root, "selected_share", sum.selected_share);
    h5::write_attr(root, "rows", st.rows);

    const int64_t hq = oc.model.n_heads, hkv = oc.model.n_kv_heads, d = oc.model.head_dim;
    const int64_t di = oc.attn.index_head_dim;
    write_tensor(root, "out", out, {B, T, C});
    write_tensor(root, "sel", layer.selection(), {B, hkv, T, oc.attn.topk_blocks});
    const AttentionGQA& main = layer.main_branch();
    write_tensor(root, "lse", main.lse(), {B, hq, T});
    write_tensor(root, "q", main.q(), {B, T, hq, d});
    write_tensor(root, "k", main.k(), {B, T, hkv, d});
    IndexBranch& index = layer.index_branch();
    write_tensor(root, "index.qi", index.qi(), {B, T, hkv, di});
    write_tensor(root, "index.ki", index.ki(), {B, T, di});
    h5::Handle grad(h5::check(H5Gcreate2(root, "grad", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "creating group grad"));
    write_tensor(grad.get(), "x", dx, {B, T, C});
    for (const Param* p : params) write_tensor(grad.get(), p->name.substr(kPrefix.size()), p->grad, p->grad.shape());
    grad.reset();
    if (!f.reset()) throw Error("closing " + tmp + ": " + h5::last_error());
    fsync_path(tmp, false);
    if (std::rename(tmp.c_str(), out_path.c_str()) != 0)
      throw Error("renaming " + tmp + " to " + out_path + ": " + std::strerror(errno));
    fsync_path(out_dir.string(), true);
  } catch (const std::exception& e) {
    fs::remove(tmp, ec);
    if (dynamic_cast<const UserError*>(&e)) throw;
    throw UserError("writing '" + out_path + "': " + e.what());
  }
  return sum;
}

int run_op_msa(const std::vector<std::string>& args) {
  try {
    std::string in, out;
    for (size_t i = 0; i < args.size(); ++i) {
      const std::string& s = args[i];
      if (s == "--help" || s == "-h") {
        std::fputs(kOpMsaUsage, stdout);
        return 0;
      }
      auto value = [&](const char* flag) {
        MSA_USER_CHECK(i + 1 < args.size(), flag << " needs a value (see msatrain op msa --help)");
        return args[++i];
      };
      if (s == "--in") in = value("--in");
      else if (s.rfind("--in=", 0) == 0) in = s.substr(5);
      else if (s == "--out") out = value("--out");
      else if (s.rfind("--out=", 0) == 0) out = s.substr(6);
      else MSA_USER_CHECK(false, "unknown argument '" << s << "' for msatrain op msa (see msatrain op msa --help)");
    }
    MSA_USER_CHECK(!in.empty() && !out.empty(), "msatrain op msa needs --in IN.h5 and --out OUT.h5 (see --help)");
    const OpMsaSummary s = op_msa(in, out);
    std::printf("msatrain op msa: B %ld T %ld phase %s kl_loss %.6g kl_objective %.6g index_recall %.4f "
                "selected_share %.4f -> %s\n",
                long(s.batch), long(s.seq), s.phase.c_str(), s.kl_loss, s.kl_objective, s.index_recall,
                s.selected_share, out.c_str());
    return 0;
  } catch (const UserError& e) {
    std::fprintf(stderr, "msatrain: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "msatrain: internal error: %s\n", e.what());
    return 1;
  }
}

int run_op_command(const std::vector<std::string>& args) {
  if (!args.empty() && args[0] == "msa") return run_op_msa(std::vector<std::string>(args.begin() + 1, args.end()));
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
    std::fputs(kOpUsage, stdout);
    return 0;
  }
  std::fprintf(stderr, "msatrain: error: %s\n%s",
               args.empty() ? "msatrain op needs an operator" : ("unknown operator '" + args[0] + "'").c_str(),
               kOpUsage);
  return 2;
}

}  // namespace msa
