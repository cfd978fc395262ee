// The MoE config keys (model.ffn, moe.*) and their rules against each other and the expert-parallel layout:
// every rejected input with its exact message (file:line of the keys involved).
#include <gtest/gtest.h>

#include "config/load.h"
#include "core/error.h"

namespace msa {
namespace {

std::string error_of(const std::string& yaml, const std::vector<ConfigOverride>& sets = {}) {
  try {
    load_config_string(yaml, "x.yaml", sets);
  } catch (const UserError& e) {
    return e.what();
  }
  return "(loaded)";
}

const char* kMoe = "model:\n  ffn: moe\n";  // lines 1-2

TEST(MoeConfig, DefaultsAndAValidConfig) {
  const RunConfig d = load_config_string("device: cpu\n", "x.yaml", {});
  EXPECT_EQ(d.model.ffn, "dense");
  EXPECT_EQ(d.moe.capacity_factor, 0.0);  // dropless
  EXPECT_EQ(d.moe.dense_layers, "none");
  const std::string yaml = std::string(kMoe) +
                           "moe:\n  n_experts: 8\n  top_k: 2\n  score: sigmoid\n  renormalize: false\n"
                           "  capacity_factor: 1.25\n  shared_experts: 1\n  dense_layers: 0-1\n"
                           "parallel:\n  dp: 4\n  ep: 4\n";
  const RunConfig c = load_config_string(yaml, "x.yaml", {});
  EXPECT_EQ(c.moe.n_experts, 8);
  EXPECT_EQ(c.moe.score, "sigmoid");
  EXPECT_FALSE(c.moe.renormalize);
  EXPECT_EQ(c.moe.capacity_factor, 1.25);
  EXPECT_EQ(c.parallel.ep, 4);
  EXPECT_EQ(load_config_string(to_yaml(c), "resolved", {}).moe.dense_layers, "0-1");  // round trip
}

TEST(MoeConfig, ExpertParallelMustDivideTheExperts) {
  EXPECT_EQ(error_of(std::string(kMoe) + "moe:\n  n_experts: 6\nparallel:\n  dp: 4\n  ep: 4\n"),
            "x.yaml:7, x.yaml:4: parallel.ep (4) must divide moe.n_experts (6): every rank of an expert-parallel "
            "group holds the same number of experts");
}

TEST(MoeConfig, ExpertParallelMustDivideTheRanks) {
  EXPECT_EQ(error_of(std::string(kMoe) + "parallel:\n  dp: 2\n  ep: 4\n"),
            "x.yaml:5, x.yaml:4: parallel.ep (4) must divide parallel.dp x parallel.cp = 2");
  EXPECT_EQ(error_of(std::string(kMoe), {{"parallel.dp", "3"}, {"parallel.ep", "2"}}),
            "--set parallel.ep=2, --set parallel.dp=3: parallel.ep (2) must divide parallel.dp x parallel.cp = 3");
}

TEST(MoeConfig, TopKAtMostTheExperts) {
  EXPECT_EQ(error_of(std::string(kMoe) + "moe:\n  n_experts: 4\n  top_k: 5\n"),
            "x.yaml:5, x.yaml:4: moe.top_k (5) must be <= moe.n_experts (4)");
}

TEST(MoeConfig, ExpertParallelNeedsMoe) {
  EXPECT_EQ(error_of("parallel:\n  dp: 2\n  ep: 2\n"),
            "x.yaml:3: parallel.ep (2) splits experts over ranks, but model.ffn is dense: set model.ffn: moe or "
            "parallel.ep: 1");
}

TEST(MoeConfig, InitFromWithExpertParallel) {
  EXPECT_EQ(error_of(std::string(kMoe) + "  init_from: a.h5\nparallel:\n  dp: 2\n  ep: 2\n"),
            "x.yaml:3, x.yaml:6: model.init_from is not supported with parallel.ep > 1 (experts are split over "
            "ranks); start from it with parallel.ep: 1, save, and resume with the layout you want");
}

TEST(MoeConfig, OnTheGpu) {
  EXPECT_EQ(error_of(std::string(kMoe) + "device: cuda\n"), "(loaded)");
  EXPECT_EQ(error_of(std::string(kMoe) + "moe:\n  n_experts: 4096\n  top_k: 2\ndevice: cuda\n"),
            "x.yaml:6, x.yaml:4: moe.n_experts (4096) is more than the GPU router takes (2048): use fewer experts "
            "or device 'cpu'");
}

TEST(MoeConfig, DenseLayers) {
  EXPECT_EQ(error_of(std::string(kMoe) + "moe:\n  dense_layers: first\n"),
            "x.yaml:4: moe.dense_layers: 'first' is not a layer index or range such as 0-2 (in 'first'; \"none\" "
            "for no dense layer)");
  EXPECT_EQ(error_of(std::string(kMoe) + "  n_layers: 4\nmoe:\n  dense_layers: 1-4\n"),
            "x.yaml:5: moe.dense_layers: '1-4' is outside layers 0..3");
}

TEST(MoeConfig, KeysTypesAndRanges) {
  EXPECT_EQ(error_of("model:\n  ffn: sparse\n"), "x.yaml:2: model.ffn = 'sparse' is not one of dense, moe");
  EXPECT_EQ(error_of("moe:\n  score: relu\n"), "x.yaml:2: moe.score = 'relu' is not one of softmax, sigmoid");
  EXPECT_EQ(error_of("moe:\n  n_experts: 0\n"), "x.yaml:2: moe.n_experts = 0 is out of range (must be >= 1)");
  EXPECT_EQ(error_of("moe:\n  top_k: 0\n"), "x.yaml:2: moe.top_k = 0 is out of range (must be >= 1)");
  EXPECT_EQ(error_of("moe:\n  d_ff: 0\n"), "x.yaml:2: moe.d_ff = 0 is out of range (must be >= 1)");
  EXPECT_EQ(error_of("moe:\n  shared_experts: -1\n"),
            "x.yaml:2: moe.shared_experts = -1 is out of range (must be >= 0)");
  EXPECT_EQ(error_of("moe:\n  capacity_factor: -0.5\n"),
            "x.yaml:2: moe.capacity_factor = -0.5 is out of range (must be >= 0)");
  EXPECT_EQ(error_of("moe:\n  aux_loss_coef: -1\n"), "x.yaml:2: moe.aux_loss_coef = -1 is out of range (must be >= 0)");
  EXPECT_EQ(error_of("moe:\n  z_loss_coef: -1\n"), "x.yaml:2: moe.z_loss_coef = -1 is out of range (must be >= 0)");
  EXPECT_EQ(error_of("moe:\n  renormalize: yes\n"), "x.yaml:2: moe.renormalize: expected true or false, got 'yes'");
  EXPECT_EQ(error_of("moe:\n  topk: 2\n"), "x.yaml:2: unknown key 'moe.topk' (did you mean 'moe.top_k'?)");
  EXPECT_EQ(error_of("device: cpu\n", {{"moe.n_experts", "many"}}),
            "--set moe.n_experts=many: moe.n_experts: expected an integer, got 'many'");
}

TEST(MoeConfig, ShippedConfigsLoad) {
  const RunConfig tiny = load_config(std::string(MSATRAIN_SOURCE_DIR) + "/configs/tiny_moe.yaml", {});
  EXPECT_EQ(tiny.model.ffn, "moe");
  EXPECT_EQ(tiny.moe.n_experts, 8);
  EXPECT_EQ(tiny.moe.top_k, 2);
  EXPECT_EQ(tiny.moe.dense_layers, "0");
  const std::string gpu = std::string(MSATRAIN_SOURCE_DIR) + "/configs/gpu_small_moe.yaml";
  const RunConfig g = load_config(gpu, {});
  EXPECT_EQ(g.device, "cuda");
  EXPECT_EQ(g.model.d_model, 1024);
  EXPECT_EQ(g.model.n_layers, 12);
  EXPECT_EQ(g.model.n_heads, 8);
  EXPECT_EQ(g.model.n_kv_heads, 2);
  EXPECT_EQ(g.model.head_dim, 128);
  EXPECT_EQ(g.model.vocab_size, 50257);
  EXPECT_EQ(g.model.seq_len, 4096);
  EXPECT_EQ(g.model.ffn_hidden, 2816);
  EXPECT_EQ(g.model.ffn, "moe");
  EXPECT_EQ(g.moe.n_experts, 8);
  EXPECT_EQ(g.moe.top_k, 2);
  EXPECT_EQ(g.moe.d_ff, 2816);
  EXPECT_EQ(g.attention.type, "gqa");
  EXPECT_EQ(g.data.dir, "data/shards/sotu_gpt2");
}

}  // namespace
}  // namespace msa
