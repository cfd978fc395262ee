// `msatrain op msa` (src/cli/op_msa.h, docs/op_msa.md): writes an input file with the HDF5 C API, runs op_msa,
// reads the output back and compares it with the MSA layer run directly in double; and the error messages for
// bad input files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <optional>

#include "checkpoint/h5.h"
#include "cli/op_msa.h"
#include "gradcheck.h"
#include "model/attention_msa.h"

namespace msa {
namespace {

namespace fs = std::filesystem;
using test::random_tensor;

// ---- A minimal HDF5 writer and reader for the test's files ---------------------------------------------------
struct Attr {
  enum Kind { i64, f64, str, h5py_bool } kind;
  int64_t i = 0;
  double d = 0;
  std::string s;
};
Attr int_attr(int64_t v) { return {Attr::i64, v, 0, ""}; }
Attr real_attr(double v) { return {Attr::f64, 0, v, ""}; }
Attr str_attr(const std::string& v) { return {Attr::str, 0, 0, v}; }
Attr bool_attr(bool v) { return {Attr::h5py_bool, v ? 1 : 0, 0, ""}; }  // as h5py stores a Python bool

struct Data {
  Shape shape;
  std::vector<double> values;
};

struct InputFile {
  std::map<std::string, Attr> attrs;
  std::map<std::string, Data> data;

  void write(const std::string& path) const {
    h5::Handle f(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    ASSERT_TRUE(f.valid()) << path;
    for (const auto& [name, a] : attrs) {
      if (a.kind == Attr::i64) h5::write_attr(f.get(), name, a.i);
      if (a.kind == Attr::str) h5::write_attr(f.get(), name, a.s);
      if (a.kind == Attr::f64 || a.kind == Attr::h5py_bool) {
        h5::Handle type(a.kind == Attr::f64 ? H5Tcopy(H5T_IEEE_F64LE) : H5Tenum_create(H5T_NATIVE_INT8));
        if (a.kind == Attr::h5py_bool) {
          int8_t no = 0, yes = 1;
          H5Tenum_insert(type.get(), "FALSE", &no);
          H5Tenum_insert(type.get(), "TRUE", &yes);
        }
        h5::Handle space(H5Screate(H5S_SCALAR));
        h5::Handle at(H5Acreate2(f.get(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
        const int8_t b = int8_t(a.i);
        ASSERT_GE(H5Awrite(at.get(), a.kind == Attr::f64 ? H5T_NATIVE_DOUBLE : type.get(),
                           a.kind == Attr::f64 ? static_cast<const void*>(&a.d) : &b),
                  0);
      }
    }
    for (const auto& [name, d] : data) {
      std::vector<hsize_t> dims(d.shape.begin(), d.shape.end());
      h5::Handle space(H5Screate_simple(int(dims.size()), dims.data(), nullptr));
      h5::Handle ds(H5Dcreate2(f.get(), name.c_str(), H5T_IEEE_F64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                               H5P_DEFAULT));
      ASSERT_GE(H5Dwrite(ds.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, d.values.data()), 0) << name;
    }
  }
};

Data read_data(hid_t f, const std::string& name, bool ints = false) {
  Data d;
  h5::Handle ds(H5Dopen2(f, name.c_str(), H5P_DEFAULT));
  EXPECT_TRUE(ds.valid()) << name;
  if (!ds.valid()) return d;
  h5::Handle space(H5Dget_space(ds.get()));
  std::vector<hsize_t> dims(size_t(H5Sget_simple_extent_ndims(space.get())));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  d.shape.assign(dims.begin(), dims.end());
  const size_t n = size_t(H5Sget_simple_extent_npoints(space.get()));
  h5::Handle type(H5Dget_type(ds.get()));
  EXPECT_EQ(H5Tget_class(type.get()), ints ? H5T_INTEGER : H5T_FLOAT) << name;
  d.values.resize(n);
  EXPECT_GE(H5Dread(ds.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, d.values.data()), 0) << name;
  return d;
}

double read_f64_attr(hid_t f, const std::string& name) {
  double v = std::nan("");
  h5::Handle at(H5Aopen(f, name.c_str(), H5P_DEFAULT));
  EXPECT_TRUE(at.valid()) << name;
  if (at.valid()) H5Aread(at.get(), H5T_NATIVE_DOUBLE, &v);
  return v;
}

// ---- The layer run directly, and the same run as an input file ----------------------------------------------
struct Case {
  ModelConfig m;
  AttentionConfig a;
  MsaPhase phase = MsaPhase::sparse;
  int64_t batch = 2, seq = 12;
  bool with_dout = true;
  std::optional<double> kl_weight;  // absent: the file has none, the op uses 1 / (B T)
  uint64_t seed = 21;
};

Case base_case() {
  Case c;
  c.m.d_model = 12;
  c.m.n_heads = 4;
  c.m.n_kv_heads = 2;
  c.m.head_dim = 6;
  c.m.rotary_fraction = 2.0 / 3.0;
  c.m.qk_norm = true;
  c.m.rope_theta = 500.0;
  c.m.norm_eps = 1e-6;
  c.a.type = "msa";
  c.a.block_size = 2;
  c.a.topk_blocks = 3;
  c.a.index_head_dim = 6;
  c.a.sink_blocks = 1;
  c.a.kl_coef = 0.7;
  return c;
}

struct Direct {
  InputFile file;
  Tensor out, sel, dx, lse, q, k, qi, ki;
  std::map<std::string, Tensor> grads;  // by name without the "attn." prefix
  MsaLayerStats stats;
};

Tensor clone(const Tensor& t) {
  Tensor c = Tensor::empty(t.shape(), t.dtype());
  c.copy_from(t);
  return c;
}

Direct run_direct(const Case& c) {
  Direct r;
  Rng rng(c.seed);
  const int64_t n = c.batch * c.seq, C = c.m.d_model;
  LayerContext ctx(c.m, c.a, DType::f64, Device::cpu, c.batch, c.seq);
  ctx.phase = c.phase;
  ctx.weights = {1.0, c.kl_weight ? *c.kl_weight : 1.0 / double(n)};
  ctx.measure_recall = true;
  AttentionMSA layer("attn", ctx);
  ParamList ps;
  layer.collect(ps);
  for (Param* p : ps) {
    std::vector<double> v(p->value.numel());
    for (double& x : v) x = (p->kind == ParamKind::norm ? 1.0 : 0.0) + 0.4 * rng.normal();
    p->value.from_vector(v);
    r.file.data[p->name.substr(5)] = {p->value.shape(), v};
  }
  Tensor x = random_tensor({n, C}, rng);
  Tensor dout = c.with_dout ? random_tensor({n, C}, rng) : Tensor::zeros({n, C}, DType::f64);
  r.file.data["x"] = {{c.batch, c.seq, C}, x.to_vector()};
  if (c.with_dout) r.file.data["dout"] = {{c.batch, c.seq, C}, dout.to_vector()};
  r.out = clone(layer.forward(x));
  r.dx = Tensor::zeros({n, C}, DType::f64);
  layer.backward(r.dx, dout, x);
  r.stats = layer.msa_stats();
  r.sel = clone(layer.selection());
  r.lse = clone(layer.main_branch().lse());
  r.q = clone(layer.main_branch().q());
  r.k = clone(layer.main_branch().k());
  r.qi = clone(layer.index_branch().qi());
  r.ki = clone(layer.index_branch().ki());
  for (Param* p : ps) r.grads[p->name.substr(5)] = clone(p->grad);

  auto& at = r.file.attrs;
  at["d_model"] = int_attr(c.m.d_model);
  at["n_heads"] = int_attr(c.m.n_heads);
  at["n_kv_heads"] = int_attr(c.m.n_kv_heads);
  at["head_dim"] = int_attr(c.m.head_dim);
  at["rope_theta"] = real_attr(c.m.rope_theta);
  at["rotary_fraction"] = real_attr(c.m.rotary_fraction);
  at["qk_norm"] = bool_attr(c.m.qk_norm);
  at["norm_eps"] = real_attr(c.m.norm_eps);
  at["block_size"] = int_attr(c.a.block_size);
  at["topk_blocks"] = int_attr(c.a.topk_blocks);
  at["index_head_dim"] = int_attr(c.a.index_head_dim);
  at["score_pool"] = str_attr(c.a.score_pool);
  at["force_local"] = int_attr(c.a.force_local ? 1 : 0);  // the 0/1 integer form
  at["sink_blocks"] = int_attr(c.a.sink_blocks);
  at["kl_coef"] = real_attr(c.a.kl_coef);
  at["detach_index_input"] = bool_attr(c.a.detach_index_input);
  at["phase"] = str_attr(c.phase == MsaPhase::warmup ? "warmup" : "sparse");
  if (c.kl_weight) at["kl_weight"] = real_attr(*c.kl_weight);
  return r;
}

class OpMsa : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("msatrain_test_op_msa." + std::to_string(::getpid()) + "." +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Runs the op on `file` and compares every output with the direct run, exactly: it is the same code.
  void expect_same_as_direct(const Case& c) {
    const Direct d = run_direct(c);
    d.file.write(path("in.h5"));
    const OpMsaSummary s = op_msa(path("in.h5"), path("out.h5"));
    EXPECT_EQ(s.batch, c.batch);
    EXPECT_EQ(s.seq, c.seq);
    h5::Handle f(H5Fopen(path("out.h5").c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
    ASSERT_TRUE(f.valid());
    const int64_t B = c.batch, T = c.seq, C = c.m.d_model, hq = c.m.n_heads, hkv = c.m.n_kv_heads;
    const int64_t dh = c.m.head_dim, di = c.a.index_head_dim;
    auto same = [&](const std::string& name, const Tensor& want, const Shape& shape, bool ints = false) {
      const Data got = read_data(f.get(), name, ints);
      EXPECT_EQ(got.shape, shape) << name;
      EXPECT_EQ(got.values, want.to_vector()) << name;
    };
    same("out", d.out, {B, T, C});
    same("sel", d.sel, {B, hkv, T, c.a.topk_blocks}, true);
    same("lse", d.lse, {B, hq, T});
    same("q", d.q, {B, T, hq, dh});
    same("k", d.k, {B, T, hkv, dh});
    same("index.qi", d.qi, {B, T, hkv, di});
    same("index.ki", d.ki, {B, T, di});
    same("grad/x", d.dx, {B, T, C});
    for (const auto& [name, g] : d.grads) same("grad/" + name, g, g.shape());
    const double rows = double(B * T * hkv);
    EXPECT_EQ(d.stats.rows, B * T * hkv);
    EXPECT_EQ(read_f64_attr(f.get(), "kl_loss"), d.stats.kl_sum / rows);
    EXPECT_EQ(read_f64_attr(f.get(), "kl_objective"), d.stats.objective);
    EXPECT_EQ(read_f64_attr(f.get(), "index_recall"), d.stats.recall_sum / rows);
    EXPECT_EQ(read_f64_attr(f.get(), "selected_share"), d.stats.selected_share_sum / rows);
    EXPECT_EQ(read_f64_attr(f.get(), "kl_weight"), c.kl_weight ? *c.kl_weight : 1.0 / double(B * T));
    EXPECT_EQ(s.kl_loss, d.stats.kl_sum / rows);
    EXPECT_GT(d.stats.kl_sum, 0.0);
  }

  // Runs the op on a broken file: it must throw a UserError whose message holds every `parts`, and write nothing.
  void expect_user_error(const InputFile& file, const std::vector<std::string>& parts) {
    file.write(path("bad.h5"));
    expect_user_error_on(path("bad.h5"), parts);
  }
  void expect_user_error_on(const std::string& in, const std::vector<std::string>& parts) {
    try {
      op_msa(in, path("never.h5"));
      ADD_FAILURE() << "no error for " << parts.front();
    } catch (const UserError& e) {
      for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(path("never.h5")));
    for (const auto& e : fs::directory_iterator(dir_))
      EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << "left behind: " << e.path();
  }

  fs::path dir_;
};

TEST_F(OpMsa, SparsePhaseMatchesTheLayer) {
  const Case c = base_case();
  expect_same_as_direct(c);
  // The sparse support is real at T = 12 > k B = 6, and the gradients of both branches are non-zero.
  const Direct d = run_direct(c);
  EXPECT_LT(d.stats.selected_share_sum / double(d.stats.rows), 0.95);
  for (const auto& [name, g] : d.grads) EXPECT_GT(ops::sum_squares(g), 0.0) << name;
}

TEST_F(OpMsa, WarmupPhaseMeanPoolingNoQkNorm) {
  Case c = base_case();
  c.phase = MsaPhase::warmup;
  c.a.score_pool = "mean";
  c.a.sink_blocks = 0;
  c.m.qk_norm = false;
  c.kl_weight = 0.25;
  expect_same_as_direct(c);
}

TEST_F(OpMsa, UndetachedInputAndNoLocalForcing) {
  Case c = base_case();
  c.a.detach_index_input = false;
  c.a.force_local = false;
  c.seed = 22;
  expect_same_as_direct(c);
}

TEST_F(OpMsa, WithoutDoutOnlyTheKlGradientsAreNonZero) {
  Case c = base_case();
  c.with_dout = false;
  expect_same_as_direct(c);
  const Direct d = run_direct(c);
  EXPECT_EQ(ops::sum_squares(d.dx), 0.0);
  for (const auto& [name, g] : d.grads)
    if (name.rfind("index.", 0) == 0) EXPECT_GT(ops::sum_squares(g), 0.0) << name;
    else EXPECT_EQ(ops::sum_squares(g), 0.0) << name;
}

TEST_F(OpMsa, OverwritesAnExistingOutputWhole) {
  const Case c = base_case();
  {
    std::FILE* f = std::fopen(path("out.h5").c_str(), "wb");
    std::fputs("not hdf5", f);
    std::fclose(f);
  }
  expect_same_as_direct(c);
}

// ---- Errors ---------------------------------------------------------------------------------------------------
TEST_F(OpMsa, MissingInputFile) {
  expect_user_error_on(path("nope.h5"), {"nope.h5", "does not exist"});
}

TEST_F(OpMsa, NotAnHdf5File) {
  std::FILE* f = std::fopen(path("text.h5").c_str(), "wb");
  std::fputs("hello", f);
  std::fclose(f);
  expect_user_error_on(path("text.h5"), {"text.h5", "not an HDF5 file"});
}

TEST_F(OpMsa, MissingDataset) {
  InputFile file = run_direct(base_case()).file;
  file.data.erase("index.wk");
  expect_user_error(file, {"bad.h5", "missing dataset 'index.wk'", "(index_head_dim, d_model)"});
}

TEST_F(OpMsa, WrongShape) {
  InputFile file = run_direct(base_case()).file;
  file.data["wqkv"].shape = {12, 48};  // transposed (48, 12)
  expect_user_error(file, {"dataset 'wqkv' has shape (12, 48), expected (48, 12)", "n_kv_heads"});
  file = run_direct(base_case()).file;
  file.data["x"].shape = {2, 12, 6, 2};
  expect_user_error(file, {"dataset 'x' has shape (2, 12, 6, 2)", "d_model = 12"});
}

TEST_F(OpMsa, MissingAndUnknownAttributes) {
  InputFile file = run_direct(base_case()).file;
  file.attrs.erase("topk_blocks");
  file.attrs.erase("phase");
  expect_user_error(file, {"missing root attribute(s) topk_blocks, phase"});
  file = run_direct(base_case()).file;
  file.attrs["topk"] = int_attr(3);
  expect_user_error(file, {"unknown root attribute 'topk'"});
}

TEST_F(OpMsa, UnknownDataset) {
  InputFile file = run_direct(base_case()).file;
  file.data["d_out"] = file.data["x"];
  expect_user_error(file, {"unexpected dataset or group 'd_out'", "dout"});
  Case c = base_case();
  c.m.qk_norm = false;
  file = run_direct(c).file;
  file.data["q_norm"] = {{6}, std::vector<double>(6, 1.0)};
  expect_user_error(file, {"unexpected dataset or group 'q_norm'", "qk_norm is false"});
}

TEST_F(OpMsa, ConfigRejectedByTheTrainingRules) {
  InputFile file = run_direct(base_case()).file;
  file.attrs["n_kv_heads"] = int_attr(3);
  expect_user_error(file, {"model.n_heads (4) must be a multiple of model.n_kv_heads (3)", "attribute n_kv_heads"});
  file = run_direct(base_case()).file;
  file.attrs["score_pool"] = str_attr("sum");
  expect_user_error(file, {"attention.score_pool", "sum"});
  file = run_direct(base_case()).file;
  file.attrs["qk_norm"] = int_attr(2);
  expect_user_error(file, {"attribute 'qk_norm' must be a boolean", "2"});
  file = run_direct(base_case()).file;
  file.attrs["phase"] = str_attr("dense");
  expect_user_error(file, {"attribute 'phase' must be \"warmup\" or \"sparse\""});
  file = run_direct(base_case()).file;
  file.attrs["d_model"] = real_attr(12.5);
  expect_user_error(file, {"attribute 'd_model' must be an integer"});
}

TEST_F(OpMsa, NonFiniteWeight) {
  InputFile file = run_direct(base_case()).file;
  file.data["wo"].values[5] = std::nan("");
  expect_user_error(file, {"dataset 'wo' holds a non-finite value", "flat index 5"});
}

TEST_F(OpMsa, MissingOutputFolder) {
  run_direct(base_case()).file.write(path("in.h5"));
  try {
    op_msa(path("in.h5"), path("no/such/dir/out.h5"));
    ADD_FAILURE() << "no error";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace msa
