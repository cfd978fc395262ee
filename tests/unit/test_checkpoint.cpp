// Checkpoint files and the run-folder protocol on one rank: the HDF5 round trip, corruption and truncation,
// incompatible models, `latest` and --resume auto fallback, pruning, the disk-full path, init_from and the
// metrics trim. The multi-rank and end-to-end behaviour (exact resume, layout change, kill -9, SIGTERM) is in
// tests/e2e/test_resume_*.sh and test_ckpt_*.sh.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "checkpoint/checkpointer.h"
#include "checkpoint/format.h"
#include "config/load.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "tests/unit/one_rank_comm.h"

namespace msa {
namespace {

namespace fs = std::filesystem;

using LocalComm = test::OneRankComm;

std::string fresh_dir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "msatrain_ckpt_" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no UserError";
  return "";
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

Tensor pattern(const Shape& shape, DType dtype, double offset) {
  Tensor t = Tensor::zeros(shape, dtype);
  std::vector<double> v(size_t(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = offset + 0.001 * double(i) - 0.37 * double(i % 7);
  t.from_vector(v);
  return t;
}

ModelConfig tiny_model() {
  ModelConfig m;
  m.vocab_size = 32;
  m.d_model = 16;
  m.n_layers = 2;
  m.n_heads = 2;
  m.n_kv_heads = 1;
  m.head_dim = 8;
  m.ffn_hidden = 24;
  m.seq_len = 8;
  return m;
}

// A model with its optimizer, as the trainer holds them.
struct State {
  Transformer model;
  AdamW optim;
  State(const ModelConfig& m, uint64_t seed) : model(m, DType::f32, Device::cpu, 1, m.seq_len), optim(model.params(), {}) {
    Rng rng(seed);
    model.init_weights(rng);
    for (size_t i = 0; i < model.params().size(); ++i) {
      Tensor& mom = optim.first_moments()[i];
      mom.copy_from(pattern(mom.shape(), mom.dtype(), double(seed) + double(i)));
      Tensor& var = optim.second_moments()[i];
      var.copy_from(pattern(var.shape(), var.dtype(), 2.0 * double(seed) + double(i)));
    }
  }
  std::vector<StateTensor> tensors() {
    std::vector<StateTensor> ts;
    ParamList& ps = model.params();
    for (size_t i = 0; i < ps.size(); ++i) {
      ts.push_back({"params/" + ps[i]->name, &ps[i]->value});
      ts.push_back({"optim/m/" + ps[i]->name, &optim.first_moments()[i]});
      ts.push_back({"optim/v/" + ps[i]->name, &optim.second_moments()[i]});
    }
    return ts;
  }
};

void expect_same_state(State& a, State& b) {
  auto ta = a.tensors(), tb = b.tensors();
  ASSERT_EQ(ta.size(), tb.size());
  for (size_t i = 0; i < ta.size(); ++i) EXPECT_TRUE(same_bytes(*ta[i].local, *tb[i].local)) << ta[i].name;
}

RunConfig run_config(const std::string& dir, const ModelConfig& m) {
  RunConfig c;
  c.model = m;
  c.run.dir = dir;
  return c;
}

TrainProgress progress_at(int64_t step) { return {step, step * 16, step * 1024, step - 1, 1, 0}; }

// ------------------------------------------------------------------------------------------------------------
// The file format

TEST(CheckpointFormat, RoundTripsMetaAndTensorsExactly) {
  const std::string path = fresh_dir("format") + "/x.h5";
  CheckpointMeta meta;
  meta.msatrain_version = "9.9.9";
  meta.created_utc = "2000-01-01T00:00:00Z";
  meta.step = 7;
  meta.samples_consumed = 112;
  meta.tokens_consumed = 7168;
  meta.optimizer_steps = 6;
  meta.skipped_steps = 1;
  meta.skipped_in_a_row = 0;
  meta.data_seed = 18446744073709551615ull;
  meta.data_counter = 112;
  meta.dp = 4;
  meta.world = 4;
  meta.config_yaml = "model:\n  d_model: 64\n  name: \"\xc3\xa9\"\n";
  const Tensor a = pattern({3, 5}, DType::f32, 1.5), b = pattern({4}, DType::f64, -2.0);
  {
    CheckpointWriter w(path);
    w.write_meta(meta);
    w.write_tensor("params/layers.0.attn.wqkv", a);
    w.write_tensor("optim/m/layers.0.attn.wqkv", b);
    w.close();
  }
  CheckpointReader r(path);
  const CheckpointMeta& m = r.meta();
  EXPECT_EQ(m.msatrain_version, "9.9.9");
  EXPECT_EQ(m.created_utc, meta.created_utc);
  EXPECT_EQ(m.step, 7);
  EXPECT_EQ(m.samples_consumed, 112);
  EXPECT_EQ(m.tokens_consumed, 7168);
  EXPECT_EQ(m.optimizer_steps, 6);
  EXPECT_EQ(m.skipped_steps, 1);
  EXPECT_EQ(m.data_seed, meta.data_seed);
  EXPECT_EQ(m.data_counter, 112);
  EXPECT_EQ(m.dp, 4);
  EXPECT_EQ(m.world, 4);
  EXPECT_EQ(m.config_yaml, meta.config_yaml);
  ASSERT_EQ(r.tensors().size(), 2u);
  EXPECT_EQ(r.tensors()[0].name, "optim/m/layers.0.attn.wqkv");  // name order
  EXPECT_EQ(r.tensors()[1].name, "params/layers.0.attn.wqkv");
  EXPECT_EQ(r.tensors()[1].shape, (Shape{3, 5}));
  EXPECT_EQ(r.tensors()[0].dtype, DType::f64);
  EXPECT_TRUE(r.tensors()[1].has_crc);
  EXPECT_EQ(r.tensors()[1].crc, tensor_crc32(a));
  Tensor a2 = Tensor::zeros({3, 5}, DType::f32), b2 = Tensor::zeros({4}, DType::f64);
  r.read("params/layers.0.attn.wqkv", a2);
  r.read("optim/m/layers.0.attn.wqkv", b2);
  EXPECT_TRUE(same_bytes(a, a2));
  EXPECT_TRUE(same_bytes(b, b2));
  // f64 stored, f32 wanted: converted.
  Tensor b3 = Tensor::zeros({4}, DType::f32);
  r.read("optim/m/layers.0.attn.wqkv", b3);
  EXPECT_EQ(b3.to_vector(), pattern({4}, DType::f32, -2.0).to_vector());
  Tensor wrong = Tensor::zeros({5, 3}, DType::f32);
  EXPECT_EQ(error_of([&] { r.read("params/layers.0.attn.wqkv", wrong); }),
            "checkpoint " + path + ": tensor params/layers.0.attn.wqkv has shape (3, 5) in the file but (5, 3) in this model");
  EXPECT_EQ(error_of([&] { r.read("params/nope", wrong); }), "checkpoint " + path + ": has no tensor params/nope");
}

TEST(CheckpointFormat, DetectsAFlippedByteInTensorData) {
  const std::string path = fresh_dir("flip") + "/x.h5";
  const Tensor a = pattern({64}, DType::f32, 3.0);
  {
    CheckpointWriter w(path);
    w.write_meta(CheckpointMeta{});
    w.write_tensor("params/w", a);
    w.close();
  }
  // Find the tensor's bytes in the file and change one.
  std::string bytes((std::istreambuf_iterator<char>(std::ifstream(path, std::ios::binary).rdbuf())), {});
  const size_t at = bytes.find(std::string(static_cast<const char*>(a.raw()), 16));
  ASSERT_NE(at, std::string::npos);
  bytes[at + 9] ^= 0x10;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  CheckpointReader r(path);
  Tensor into = Tensor::zeros({64}, DType::f32);
  const std::string msg = error_of([&] { r.read("params/w", into); });
  EXPECT_NE(msg.find("checkpoint " + path + ": tensor params/w is corrupt (CRC-32"), std::string::npos) << msg;
}

TEST(CheckpointFormat, RejectsTruncatedMissingAndForeignFiles) {
  const std::string dir = fresh_dir("bad");
  const std::string path = dir + "/x.h5";
  {
    CheckpointWriter w(path);
    w.write_meta(CheckpointMeta{});
    w.write_tensor("params/w", pattern({1000}, DType::f32, 0.0));
    w.close();
  }
  fs::resize_file(path, fs::file_size(path) / 2);
  std::string msg = error_of([&] { CheckpointReader r(path); });
  EXPECT_TRUE(msg.starts_with("checkpoint " + path + ": not a readable HDF5 file: ")) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;

  EXPECT_EQ(error_of([&] { CheckpointReader r(dir + "/none.h5"); }), "checkpoint " + dir + "/none.h5: no such file");
  std::ofstream(dir + "/text.h5") << "hello\n";
  msg = error_of([&] { CheckpointReader r(dir + "/text.h5"); });
  EXPECT_TRUE(msg.starts_with("checkpoint " + dir + "/text.h5: not a readable HDF5 file")) << msg;
}

// ------------------------------------------------------------------------------------------------------------
// Save and resume through the run folder

TEST(Checkpointer, SavesAtomicallyAndResumesTheExactState) {
  const std::string dir = fresh_dir("resume");
  LocalComm comm;
  State a(tiny_model(), 1);
  Checkpointer ck(run_config(dir, tiny_model()), comm);
  const std::string path = ck.save(progress_at(5), a.tensors());
  EXPECT_EQ(path, dir + "/checkpoints/step_00000005.h5");
  std::ifstream latest(dir + "/checkpoints/latest");
  std::string name;
  latest >> name;
  EXPECT_EQ(name, "step_00000005.h5");
  for (const auto& e : fs::directory_iterator(dir + "/checkpoints"))  // no temporary file left behind
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();

  State b(tiny_model(), 2);
  std::optional<Resumed> r = Checkpointer(run_config(dir, tiny_model()), comm).resume("auto", b.tensors());
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->path, path);
  EXPECT_EQ(r->progress.step, 5);
  EXPECT_EQ(r->progress.samples_consumed, 80);
  EXPECT_EQ(r->progress.tokens_consumed, 5120);
  EXPECT_EQ(r->progress.optimizer_steps, 4);
  EXPECT_EQ(r->progress.skipped_steps, 1);
  expect_same_state(a, b);

  State c(tiny_model(), 3);
  ASSERT_TRUE(Checkpointer(run_config(dir, tiny_model()), comm).resume(path, c.tensors()).has_value());
  expect_same_state(a, c);
}

TEST(Checkpointer, AutoStartsFreshWithoutCheckpoints) {
  const std::string dir = fresh_dir("fresh");
  LocalComm comm;
  State a(tiny_model(), 1);
  EXPECT_FALSE(Checkpointer(run_config(dir, tiny_model()), comm).resume("auto", a.tensors()).has_value());
}

TEST(Checkpointer, KeepsTheNewestFilesAndPointsLatestAtTheLastSave) {
  const std::string dir = fresh_dir("keep");
  LocalComm comm;
  State a(tiny_model(), 1);
  RunConfig cfg = run_config(dir, tiny_model());
  cfg.checkpoint.keep = 2;
  Checkpointer ck(cfg, comm);
  for (int64_t s : {2, 4, 6, 8}) ck.save(progress_at(s), a.tensors());
  EXPECT_EQ(Checkpointer::candidates(dir + "/checkpoints"),
            (std::vector<std::string>{dir + "/checkpoints/step_00000008.h5", dir + "/checkpoints/step_00000006.h5"}));
  // After resuming from an older file, newer ones (an abandoned continuation) neither count nor get deleted.
  cfg.checkpoint.keep = 1;
  Checkpointer older(cfg, comm);
  older.save(progress_at(7), a.tensors());
  EXPECT_EQ(Checkpointer::candidates(dir + "/checkpoints"),
            (std::vector<std::string>{dir + "/checkpoints/step_00000007.h5", dir + "/checkpoints/step_00000008.h5"}));
}

TEST(Checkpointer, AutoFallsBackPastABrokenNewestFile) {
  const std::string dir = fresh_dir("fallback");
  LocalComm comm;
  State a(tiny_model(), 1), later(tiny_model(), 9);
  Checkpointer ck(run_config(dir, tiny_model()), comm);
  ck.save(progress_at(3), a.tensors());
  const std::string newest = ck.save(progress_at(6), later.tensors());
  fs::resize_file(newest, fs::file_size(newest) - 100);

  State b(tiny_model(), 2);
  testing::internal::CaptureStderr();
  std::optional<Resumed> r = Checkpointer(run_config(dir, tiny_model()), comm).resume("auto", b.tensors());
  const std::string warnings = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->progress.step, 3);
  expect_same_state(a, b);
  EXPECT_NE(warnings.find("warning: --resume auto: checkpoint " + newest + ": not a readable HDF5 file"),
            std::string::npos)
      << warnings;
  EXPECT_NE(warnings.find("trying the next newest checkpoint"), std::string::npos) << warnings;

  // An explicit path does not fall back.
  const std::string msg =
      error_of([&] { Checkpointer(run_config(dir, tiny_model()), comm).resume(newest, b.tensors()); });
  EXPECT_TRUE(msg.starts_with("checkpoint " + newest + ": not a readable HDF5 file")) << msg;

  // Nothing loads: an error that lists every file, not a silent fresh start.
  fs::resize_file(dir + "/checkpoints/step_00000003.h5", 10);
  const std::string none =
      error_of([&] { Checkpointer(run_config(dir, tiny_model()), comm).resume("auto", b.tensors()); });
  EXPECT_TRUE(none.starts_with("--resume auto: none of the 2 checkpoints in " + dir + "/checkpoints loads:")) << none;
  EXPECT_NE(none.find("step_00000003.h5"), std::string::npos) << none;
}

TEST(Checkpointer, RejectsACheckpointOfAnotherModel) {
  const std::string dir = fresh_dir("mismatch");
  LocalComm comm;
  State a(tiny_model(), 1);
  const std::string path = Checkpointer(run_config(dir, tiny_model()), comm).save(progress_at(2), a.tensors());

  ModelConfig wider = tiny_model();
  wider.d_model = 24;
  State w(wider, 1);
  std::string msg = error_of([&] { Checkpointer(run_config(dir, wider), comm).resume(path, w.tensors()); });
  EXPECT_EQ(msg, "checkpoint " + path +
                     // vocabulary 32 is stored padded to 64 rows (padded_vocab)
                     ": tensor params/embed.weight has shape (64, 16) in the file but (64, 24) in this model (this "
                     "run's model config differs from the checkpoint's: model.d_model (16 -> 24))");

  ModelConfig deeper = tiny_model();
  deeper.n_layers = 3;
  State d(deeper, 1);
  msg = error_of([&] { Checkpointer(run_config(dir, deeper), comm).resume(path, d.tensors()); });
  EXPECT_TRUE(msg.starts_with("checkpoint " + path + ": has no tensor params/layers.2.")) << msg;

  ModelConfig tied_off = tiny_model();
  tied_off.tie_embeddings = false;
  State u(tied_off, 1);
  const std::string untied = fresh_dir("mismatch_untied");
  const std::string upath = Checkpointer(run_config(untied, tied_off), comm).save(progress_at(2), u.tensors());
  msg = error_of([&] { Checkpointer(run_config(untied, tiny_model()), comm).resume(upath, a.tensors()); });
  EXPECT_TRUE(msg.starts_with("checkpoint " + upath + ": holds tensor optim/m/lm_head.weight, which this model does "
                              "not have"))
      << msg;
}

TEST(Checkpointer, DiskFullLeavesThePreviousCheckpointIntact) {
  const std::string dir = fresh_dir("enospc");
  LocalComm comm;
  State a(tiny_model(), 1), b(tiny_model(), 2);
  Checkpointer ck(run_config(dir, tiny_model()), comm);
  const std::string first = ck.save(progress_at(1), a.tensors());
  setenv("MSATRAIN_INJECT_CKPT_ENOSPC", "2", 1);
  const std::string msg = error_of([&] { ck.save(progress_at(2), b.tensors()); });
  unsetenv("MSATRAIN_INJECT_CKPT_ENOSPC");
  EXPECT_TRUE(msg.starts_with("cannot save checkpoint " + dir + "/checkpoints/step_00000002.h5: writing dataset "))
      << msg;
  EXPECT_NE(msg.find("No space left on device"), std::string::npos) << msg;
  EXPECT_NE(msg.find("the previous checkpoint " + first + " is intact"), std::string::npos) << msg;
  EXPECT_EQ(Checkpointer::candidates(dir + "/checkpoints"), std::vector<std::string>{first});
  for (const auto& e : fs::directory_iterator(dir + "/checkpoints"))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
  State c(tiny_model(), 3);
  ASSERT_TRUE(Checkpointer(run_config(dir, tiny_model()), comm).resume("auto", c.tensors()).has_value());
  expect_same_state(a, c);
}

TEST(Checkpointer, RemovesTemporaryFilesOfAnInterruptedSave) {
  const std::string dir = fresh_dir("stale");
  fs::create_directories(dir + "/checkpoints");
  std::ofstream(dir + "/checkpoints/.step_00000004.h5.tmp.123") << "half a file";
  LocalComm comm;
  Checkpointer ck(run_config(dir, tiny_model()), comm);
  EXPECT_FALSE(fs::exists(dir + "/checkpoints/.step_00000004.h5.tmp.123"));
}

// ------------------------------------------------------------------------------------------------------------
// init_from, metrics, config

TEST(InitFrom, LoadsMatchingTensorsAndLeavesTheOthersFresh) {
  const std::string dir = fresh_dir("init_from");
  LocalComm comm;
  ModelConfig plain = tiny_model();
  plain.qk_norm = false;
  State src(plain, 5);
  const std::string path = Checkpointer(run_config(dir, plain), comm).save(progress_at(4), src.tensors());

  ModelConfig with_norms = tiny_model();
  with_norms.qk_norm = true;  // adds layers.N.attn.q_norm / k_norm, which the file lacks
  State dst(with_norms, 6);
  State untouched(with_norms, 6);
  testing::internal::CaptureStdout();
  const std::vector<std::string> loaded = init_params_from(path, dst.model.params(), comm);
  const std::string report = testing::internal::GetCapturedStdout();
  EXPECT_EQ(loaded.size(), src.model.params().size());
  for (Param* p : dst.model.params()) {
    const bool is_new = p->name.ends_with("q_norm") || p->name.ends_with("k_norm");
    const Param* expected = nullptr;
    if (is_new) {
      for (Param* q : untouched.model.params())
        if (q->name == p->name) expected = q;
    } else {
      for (Param* q : src.model.params())
        if (q->name == p->name) expected = q;
    }
    ASSERT_NE(expected, nullptr) << p->name;
    EXPECT_TRUE(same_bytes(p->value, expected->value)) << p->name;
  }
  EXPECT_NE(report.find("loaded " + std::to_string(loaded.size()) + " of " +
                        std::to_string(dst.model.params().size()) + " parameter tensors"),
            std::string::npos)
      << report;
  EXPECT_NE(report.find("initialised fresh: layers.0.attn.q_norm, layers.0.attn.k_norm, layers.1.attn.q_norm, "
                        "layers.1.attn.k_norm"),
            std::string::npos)
      << report;
  // The optimizer state is not touched.
  for (size_t i = 0; i < dst.model.params().size(); ++i)
    EXPECT_TRUE(same_bytes(dst.optim.first_moments()[i], untouched.optim.first_moments()[i]));

  ModelConfig wider = tiny_model();
  wider.ffn_hidden = 40;
  State w(wider, 1);
  EXPECT_EQ(error_of([&] { init_params_from(path, w.model.params(), comm); }),
            "model.init_from: checkpoint " + path +
                ": tensor params/layers.0.ffn.w13 has shape (48, 16) in the file but (80, 16) in this model");
  EXPECT_EQ(error_of([&] { init_params_from(dir + "/none.h5", w.model.params(), comm); }),
            "model.init_from: checkpoint " + dir + "/none.h5: no such file");
}

TEST(TrimMetrics, DropsStepsBeyondTheCheckpointAndATornLine) {
  const std::string path = fresh_dir("metrics") + "/metrics.jsonl";
  std::ofstream(path) << "{\"step\": 1, \"loss\": 5}\n{\"step\": 2, \"loss\": 4}\n{\"step\": 2, \"val_loss\": 4.5}\n"
                         "{\"step\": 3, \"loss\": 3}\n{\"step\": 4, \"lo";
  trim_metrics(path, 2);
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(text, "{\"step\": 1, \"loss\": 5}\n{\"step\": 2, \"loss\": 4}\n{\"step\": 2, \"val_loss\": 4.5}\n");
  trim_metrics(fs::path(path).parent_path().string() + "/missing.jsonl", 2);  // no file: nothing to do
  EXPECT_FALSE(fs::exists(fs::path(path).parent_path() / "missing.jsonl"));
}

TEST(CheckpointConfig, KeysLoadAndValidate) {
  const RunConfig c = load_config_string("model:\n  init_from: \"\"\ncheckpoint:\n  every: 0\n  keep: 5\n", "x.yaml", {});
  EXPECT_EQ(c.model.init_from, "");
  EXPECT_EQ(c.checkpoint.every, 0);
  EXPECT_EQ(c.checkpoint.keep, 5);
  EXPECT_EQ(load_config_string("device: cpu\n", "x.yaml", {parse_override("model.init_from=runs/a/step.h5")})
                .model.init_from,
            "runs/a/step.h5");
  EXPECT_EQ(error_of([] { load_config_string("checkpoint:\n  every: -1\n", "x.yaml", {}); }),
            "x.yaml:2: checkpoint.every = -1 is out of range (must be >= 0)");
  EXPECT_EQ(error_of([] { load_config_string("checkpoint:\n  kep: 1\n", "x.yaml", {}); }),
            "x.yaml:2: unknown key 'checkpoint.kep' (did you mean 'checkpoint.keep'?)");
}

}  // namespace
}  // namespace msa
