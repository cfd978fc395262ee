// Config loading: every rejected input has a case that checks the message names the key and the place.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "config/load.h"
#include "config/schema.h"
#include "core/error.h"

namespace msa {
namespace {

// The message load_config_string throws, or "" (and a test failure) when it accepts the input.
std::string load_error(const std::string& yaml, const std::vector<ConfigOverride>& overrides = {}) {
  try {
    load_config_string(yaml, "x.yaml", overrides);
  } catch (const UserError& e) {
    return e.what();
  }
  ADD_FAILURE() << "accepted:\n" << yaml;
  return "";
}

struct Rejected {
  const char* name;
  std::string yaml;
  std::vector<std::string> sets;  // --set arguments
  std::string message;            // the exact message
};

std::ostream& operator<<(std::ostream& os, const Rejected& r) { return os << r.name; }

class ConfigRejects : public testing::TestWithParam<Rejected> {};

TEST_P(ConfigRejects, WithMessageNamingKeyAndPlace) {
  const Rejected& r = GetParam();
  std::vector<ConfigOverride> overrides;
  for (const std::string& s : r.sets) overrides.push_back(parse_override(s));
  EXPECT_EQ(load_error(r.yaml, overrides), r.message);
}


INSTANTIATE_TEST_SUITE_P(
    Config, ConfigRejects,
    testing::Values(
        // Unknown keys and sections.
        Rejected{"unknown_key", "model:\n  d_model: 64\n  d_modle: 64\n", {},
                 "x.yaml:3: unknown key 'model.d_modle' (did you mean 'model.d_model'?)"},
        Rejected{"unknown_section", "modle:\n  d_model: 64\n", {},
                 "x.yaml:1: unknown key 'modle' (did you mean 'model'?)"},
        Rejected{"key_in_wrong_section", "train:\n  steps: 5\n  seq_len: 128\n", {},
                 "x.yaml:3: unknown key 'train.seq_len' (did you mean 'model.seq_len'?)"},
        Rejected{"unknown_key_no_suggestion", "model:\n  zzz: 1\n", {}, "x.yaml:2: unknown key 'model.zzz'"},
        Rejected{"unknown_key_below_a_leaf", "model:\n  d_model:\n    x: 1\n", {},
                 "x.yaml:2: model.d_model: expected an integer, got a mapping"},
        Rejected{"dotted_key", "model.d_model: 64\n", {},
                 "x.yaml:1: key 'model.d_model' contains '.'; write it nested, one section per line"},
        // Wrong types.
        Rejected{"int_word", "model:\n  n_layers: four\n", {},
                 "x.yaml:2: model.n_layers: expected an integer, got 'four'"},
        Rejected{"int_fraction", "model:\n  n_layers: 3.5\n", {},
                 "x.yaml:2: model.n_layers: expected an integer, got '3.5'"},
        Rejected{"int_overflow", "train:\n  steps: 9223372036854775808\n", {},
                 "x.yaml:2: train.steps: expected an integer, got '9223372036854775808', which does not fit in "
                 "64 bits"},
        Rejected{"float_overflow", "train:\n  lr: 1e999\n", {},
                 "x.yaml:2: train.lr: expected a number, got '1e999', which is out of the range of a double"},
        Rejected{"float_word", "train:\n  lr: fast\n", {}, "x.yaml:2: train.lr: expected a number, got 'fast'"},
        Rejected{"float_infinity", "train:\n  lr: .inf\n", {}, "x.yaml:2: train.lr: expected a number, got '.inf'"},
        Rejected{"float_nan_word", "train:\n  lr: nan\n", {},
                 "x.yaml:2: train.lr: expected a finite number, got 'nan'"},
        Rejected{"bool_yes", "model:\n  qk_norm: yes\n", {},
                 "x.yaml:2: model.qk_norm: expected true or false, got 'yes'"},
        Rejected{"quoted_number", "model:\n  d_model: \"64\"\n", {},
                 "x.yaml:2: model.d_model: expected an integer, got the quoted string '64'"},
        Rejected{"empty_value", "train:\n  lr:\n  steps: 5\n", {},
                 "x.yaml:2: train.lr: expected a number, got an empty value"},
        Rejected{"list_for_scalar", "model:\n  d_model: [1, 2]\n", {},
                 "x.yaml:2: model.d_model: expected an integer, got a list"},
        Rejected{"scalar_for_section", "model: 5\n", {},
                 "x.yaml:1: 'model' is a section and needs a mapping of keys, got '5'"},
        Rejected{"mapping_for_top_level_scalar", "device:\n  kind: cpu\n", {},
                 "x.yaml:1: device: expected one of cpu, cuda, got a mapping"},
        Rejected{"tagged_value", "model:\n  d_model: !!int 64\n", {},
                 "x.yaml:2: model.d_model: YAML tags such as 'tag:yaml.org,2002:int' are not supported"},
        Rejected{"empty_string", "run:\n  dir: \"\"\n", {}, "x.yaml:2: run.dir: expected a non-empty string"},
        // Out of range.
        Rejected{"lr_negative", "train:\n  lr: -1\n", {}, "x.yaml:2: train.lr = -1 is out of range (must be > 0)"},
        Rejected{"beta_one", "train:\n  beta1: 1.0\n", {},
                 "x.yaml:2: train.beta1 = 1.0 is out of range (must be >= 0 and < 1)"},
        Rejected{"rotary_fraction_above_one", "model:\n  rotary_fraction: 1.5\n", {},
                 "x.yaml:2: model.rotary_fraction = 1.5 is out of range (must be >= 0 and <= 1)"},
        Rejected{"d_model_zero", "model:\n  d_model: 0\n", {},
                 "x.yaml:2: model.d_model = 0 is out of range (must be >= 1)"},
        Rejected{"steps_zero", "train:\n  steps: 0\n", {}, "x.yaml:2: train.steps = 0 is out of range (must be >= 1)"},
        Rejected{"micro_batch_zero", "train:\n  micro_batch: 0\n", {},
                 "x.yaml:2: train.micro_batch = 0 is out of range (must be >= 1)"},
        Rejected{"dp_zero", "parallel:\n  dp: 0\n", {},
                 "x.yaml:2: parallel.dp = 0 is out of range (must be >= 1 and <= 1048576)"},
        Rejected{"eval_every_negative", "eval:\n  every: -1\n", {},
                 "x.yaml:2: eval.every = -1 is out of range (must be >= 0)"},
        // Enums.
        Rejected{"attention_type", "attention:\n  type: dense\n", {},
                 "x.yaml:2: attention.type = 'dense' is not one of gqa, msa"},
        Rejected{"decay_kind", "train:\n  decay: step\n", {},
                 "x.yaml:2: train.decay = 'step' is not one of cosine, linear, constant"},
        // Duplicates (yaml-cpp keeps both silently).
        Rejected{"duplicate_key", "train:\n  lr: 1.0e-3\n  lr: 2.0e-3\n", {},
                 "x.yaml:3: duplicate key 'train.lr' (first at line 2)"},
        Rejected{"duplicate_section", "train:\n  lr: 1.0e-3\ntrain:\n  steps: 5\n", {},
                 "x.yaml:3: duplicate key 'train' (first at line 1)"},
        // The file as a whole.
        Rejected{"empty_file", "", {}, "x.yaml: the config is empty"},
        Rejected{"comments_only", "# nothing here\n", {}, "x.yaml: the config is empty"},
        Rejected{"top_level_list", "- model\n", {},
                 "x.yaml:1: the top level must be a mapping of sections (model:, train:, ...), got a list"},
        Rejected{"yaml_syntax", "model:\n  d_model: 64\n  n_layers: [1,\n", {},
                 "x.yaml:4: YAML syntax error: end of sequence flow not found"},
        Rejected{"two_documents", "device: cpu\n---\ndevice: cpu\n", {},
                 "x.yaml:3: found 2 YAML documents; a config is one"},
        // Rules between keys: the place lists where each involved key was set.
        Rejected{"heads_not_multiple", "model:\n  n_heads: 8\n  n_kv_heads: 3\n", {},
                 "x.yaml:2, x.yaml:3: model.n_heads (8) must be a multiple of model.n_kv_heads (3)"},
        Rejected{"rotary_dims_odd", "model:\n  head_dim: 6\n  rotary_fraction: 0.5\n", {},
                 "x.yaml:3, x.yaml:2: model.rotary_fraction (0.5) x model.head_dim (6) gives 3 rotary dims; RoPE "
                 "turns dims in pairs, so it must be even"},
        Rejected{"batch_tokens_not_multiple", "model:\n  seq_len: 256\ntrain:\n  batch_tokens: 1000\n", {},
                 "x.yaml:4, x.yaml:2: train.batch_tokens (1000) must be a multiple of model.seq_len (256)"},
        Rejected{"warmup_longer_than_run", "train:\n  steps: 10\n  warmup_steps: 20\n", {},
                 "x.yaml:3, x.yaml:2: train.warmup_steps (20) must be <= train.steps (10)"},
        Rejected{"min_lr_above_lr", "train:\n  lr: 1.0e-3\n  min_lr: 1.0e-2\n", {},
                 "x.yaml:3, x.yaml:2: train.min_lr (0.01) must be <= train.lr (0.001)"},
        Rejected{"cross_rule_default_partner", "train:\n  warmup_steps: 2000\n", {},
                 "x.yaml:2: train.warmup_steps (2000) must be <= train.steps (1000)"},
        // Valid but not runnable by this build yet.
        Rejected{"head_dim_on_cuda", "device: cuda\nmodel:\n  head_dim: 48\n", {},
                 "x.yaml:1, x.yaml:3: model.head_dim 48 has no GPU attention kernel: the fused attention takes head "
                 "dims 32, 64 and 128"},
        Rejected{"msa_on_cuda", "device: cuda\nattention:\n  type: msa\n", {},
                 "x.yaml:1, x.yaml:3: attention.type 'msa' has no GPU kernels yet: use device 'cpu' or attention.type "
                 "'gqa'"},
        Rejected{"expert_parallel_without_moe", "parallel:\n  ep: 2\n", {},
                 "x.yaml:2: parallel.ep (2) splits experts over ranks, but model.ffn is dense: set model.ffn: moe or "
                 "parallel.ep: 1"},
        Rejected{"msa_forced_blocks_exceed_k", "attention:\n  type: msa\n  topk_blocks: 2\n  sink_blocks: 2\n", {},
                 "x.yaml:4, x.yaml:3: attention.sink_blocks (2) plus the forced local block exceed "
                 "attention.topk_blocks (2)"},
        Rejected{"msa_dense_layers_syntax", "attention:\n  dense_layers: first\n", {},
                 "x.yaml:2: attention.dense_layers: 'first' is not a layer index or range such as 0-2 (in 'first'; "
                 "\"none\" for no dense layer)"},
        Rejected{"msa_dense_layers_range", "model:\n  n_layers: 4\nattention:\n  dense_layers: 2-5\n", {},
                 "x.yaml:4: attention.dense_layers: '2-5' is outside layers 0..3"},
        // --set overrides go through the same rules.
        Rejected{"set_unknown_key", "device: cpu\n", {"model.d_modle=64"},
                 "--set model.d_modle=64: unknown key 'model.d_modle' (did you mean 'model.d_model'?)"},
        Rejected{"set_wrong_type", "device: cpu\n", {"model.n_layers=four"},
                 "--set model.n_layers=four: model.n_layers: expected an integer, got 'four'"},
        Rejected{"set_out_of_range", "device: cpu\n", {"train.lr=-1"},
                 "--set train.lr=-1: train.lr = -1 is out of range (must be > 0)"},
        Rejected{"set_section", "device: cpu\n", {"model=3"},
                 "--set model=3: 'model' is a section; --set takes one key such as 'model.vocab_size'"},
        Rejected{"set_bad_yaml", "device: cpu\n", {"train.lr=[1,"},
                 "--set train.lr=[1,: train.lr: cannot read '[1,' as a YAML value: end of sequence flow not found"},
        Rejected{"set_empty_value", "device: cpu\n", {"run.dir="},
                 "--set run.dir=: run.dir: expected a string, got an empty value"},
        Rejected{"set_breaks_cross_rule", "train:\n  lr: 1.0e-3\n", {"train.min_lr=0.5"},
                 "--set train.min_lr=0.5, x.yaml:2: train.min_lr (0.5) must be <= train.lr (0.001)"}),
    [](const testing::TestParamInfo<Rejected>& info) { return std::string(info.param.name); });

TEST(ConfigLoad, TinyYamlLoadsAndFitsTwoRanks) {
  const RunConfig c = load_config(std::string(MSATRAIN_SOURCE_DIR) + "/configs/tiny.yaml", {});
  EXPECT_EQ(c.model.n_kv_heads, 2);
  EXPECT_TRUE(c.model.qk_norm);
  EXPECT_EQ(c.train.steps, 250);
  EXPECT_DOUBLE_EQ(c.train.lr, 3e-3);
  EXPECT_EQ(c.run.dir, "runs/tiny");
  validate_layout(c, 2);
}

TEST(ConfigLoad, AbsentKeysKeepDefaults) {
  const RunConfig c = load_config_string("train:\n  lr: 1.0e-3\neval:\n", "x.yaml", {});
  const RunConfig defaults;
  EXPECT_EQ(differing_keys(defaults, c), std::vector<std::string>{"train.lr"});
  EXPECT_EQ(c.train.lr, 1e-3);
}

TEST(ConfigLoad, MissingFileIsNamed) {
  try {
    load_config("/nonexistent/cfg.yaml", {});
    FAIL() << "accepted a missing file";
  } catch (const UserError& e) {
    EXPECT_EQ(std::string(e.what()), "config file '/nonexistent/cfg.yaml' does not exist");
  }
}

TEST(ConfigLoad, DirectoryIsNotAConfig) {
  const std::string dir = std::filesystem::temp_directory_path().string();
  EXPECT_THROW(load_config(dir, {}), UserError);
}

TEST(ConfigOverrides, ParseSplitsAtFirstEquals) {
  const ConfigOverride o = parse_override("run.dir=a=b");
  EXPECT_EQ(o.path, "run.dir");
  EXPECT_EQ(o.value, "a=b");
  EXPECT_EQ(parse_override("run.dir=").value, "");
}

TEST(ConfigOverrides, ParseRejectsBadSyntax) {
  for (const char* bad : {"train.lr", "=3", "train..lr=3", ".lr=3", "train.lr.=3", "train lr=3"}) {
    EXPECT_THROW(parse_override(bad), UserError) << bad;
  }
}

TEST(ConfigOverrides, SetNestedKeysInOrder) {
  const RunConfig c = load_config_string(
      "model:\n  n_layers: 2\n", "x.yaml",
      {parse_override("model.n_layers=6"), parse_override("train.lr=1e-4"), parse_override("train.lr=2e-4"),
       parse_override("train.min_lr=0"), parse_override("run.dir='with space'"), parse_override("model.qk_norm=true"),
       parse_override("device=cpu")});
  EXPECT_EQ(c.model.n_layers, 6);
  EXPECT_EQ(c.train.lr, 2e-4);
  EXPECT_EQ(c.run.dir, "with space");
  EXPECT_TRUE(c.model.qk_norm);
}

// Every key but the three that must keep their defaults in this build (device, parallel.cp, parallel.ep) gets a
// non-default value.
RunConfig unusual_config() {
  RunConfig c;
  c.model = {.vocab_size = 1000, .d_model = 96, .n_layers = 3, .n_heads = 6, .n_kv_heads = 3, .head_dim = 16,
             .ffn_hidden = 250, .seq_len = 128, .rope_theta = 500000.0, .rotary_fraction = 0.75, .qk_norm = true,
             .tie_embeddings = false, .norm_eps = 1.0 / 3e7, .init_std = 0.1 + 0.2};
  c.attention = {.type = "msa", .block_size = 64, .topk_blocks = 8, .index_head_dim = 64, .score_pool = "mean",
                 .force_local = false, .sink_blocks = 1, .kl_coef = 0.5, .detach_index_input = false,
                 .warmup_steps = 3, .dense_layers = "0-1", .freeze_backbone_in_warmup = true, .recall_every = 5};
  c.parallel.dp = 4;
  c.model.ffn = "moe";
  c.moe = {.dense_layers = "1", .n_experts = 6, .top_k = 3, .shared_experts = 2, .d_ff = 40, .score = "sigmoid",
           .renormalize = false, .aux_loss_coef = 0.125, .z_loss_coef = 1e-4, .capacity_factor = 1.5};
  c.train = {.steps = 7, .batch_tokens = 4096, .micro_batch = 3, .lr = 6e-4, .min_lr = 0.0, .warmup_steps = 7,
             .decay = "linear", .weight_decay = 0.05, .decay_norms_and_embeddings = true, .beta1 = 0.8,
             .beta2 = 0.999, .adam_eps = 1e-300, .grad_clip = 0.0, .max_bad_steps = 0, .log_every = 1};
  c.data.dir = "data/with \"quotes\" and: colon #hash \\ tab\t \u00e9";
  c.eval = {.every = 0, .sequences = 1};
  c.model.init_from = "ckpt: dir/step_00000001.h5";
  c.checkpoint = {.every = 0, .keep = 0};
  c.run = {.dir = "true", .seed = 9223372036854775807};
  return c;
}

TEST(ConfigYaml, RoundTripsExactly) {
  const RunConfig c = unusual_config(), defaults;
  EXPECT_EQ(differing_keys(defaults, c).size(), config_schema().size() - 3);
  const std::string yaml = to_yaml(c);
  const RunConfig back = load_config_string(yaml, "resolved.yaml", {});
  EXPECT_EQ(differing_keys(c, back), std::vector<std::string>{}) << yaml;
  EXPECT_EQ(to_yaml(back), yaml);
}

TEST(ConfigYaml, ListsEveryKey) {
  const RunConfig defaults;
  const std::string yaml = to_yaml(defaults);
  for (const KeySpec& k : config_schema()) {
    const std::string leaf(k.path.substr(k.path.rfind('.') + 1));  // npos + 1 == 0 for top-level keys
    EXPECT_NE(yaml.find(leaf + ": "), std::string::npos) << k.path;
  }
  EXPECT_NE(yaml.find("  lr: 0.003\n"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("  rope_theta: 10000.0\n"), std::string::npos) << yaml;
}

TEST(ConfigSchema, PathsAreUniqueAndDefaultsPassTheirOwnChecks) {
  std::set<std::string_view> paths;
  const RunConfig defaults;
  for (const KeySpec& k : config_schema()) {
    EXPECT_TRUE(paths.insert(k.path).second) << k.path;
    EXPECT_FALSE(k.help.empty()) << k.path;
    EXPECT_EQ(k.choices.empty(), k.kind() != KeyKind::Enum) << k.path;
    RunConfig c;
    const bool plain = k.kind() != KeyKind::String;  // format_key quotes free strings
    EXPECT_NO_THROW(assign_key(k, c, format_key(k, defaults), plain)) << k.path;
  }
  EXPECT_NO_THROW(load_config_string(to_yaml(defaults), "defaults.yaml", {}));
}

TEST(ConfigLayout, AcceptsMatchingWorld) {
  RunConfig c;
  c.parallel.dp = 2;
  validate_layout(c, 2);
  c.parallel = {4, 2, 8};
  validate_layout(c, 8);
}

std::string layout_error(const RunConfig& c, int world) {
  try {
    validate_layout(c, world);
  } catch (const UserError& e) {
    return e.what();
  }
  ADD_FAILURE() << "layout accepted";
  return "";
}

TEST(ConfigLayout, RejectsWorldMismatch) {
  RunConfig c;
  c.parallel.dp = 2;
  EXPECT_EQ(layout_error(c, 3), "parallel.dp (2) x parallel.cp (1) = 2 does not match the 3 MPI ranks");
  EXPECT_EQ(layout_error(c, 1), "parallel.dp (2) x parallel.cp (1) = 2 does not match the 1 MPI rank");
}

TEST(ConfigLayout, RejectsExpertGroupsThatDoNotDivide) {
  RunConfig c;
  c.parallel = {2, 2, 3};
  EXPECT_EQ(layout_error(c, 4), "parallel.ep (3) must divide parallel.dp x parallel.cp = 4");
}

TEST(ConfigLayout, RejectsUnevenDataSplit) {
  RunConfig c;  // 16384 / 256 = 64 sequences per step
  c.parallel.dp = 3;
  EXPECT_EQ(layout_error(c, 3),
            "train.batch_tokens / model.seq_len = 64 sequences per step do not split evenly over parallel.dp (3) "
            "ranks");
}

TEST(ConfigLayout, RejectsSequenceThatContextParallelCannotCut) {
  RunConfig c;
  c.model.seq_len = 100;
  c.train.batch_tokens = 1000;
  c.parallel.cp = 8;
  EXPECT_EQ(layout_error(c, 8), "model.seq_len (100) must be a multiple of 2 x parallel.cp = 16");
}

TEST(ConfigLayout, RejectsContextParallelChunksOfPartialMsaBlocks) {
  RunConfig c;
  c.model.seq_len = 512;
  c.train.batch_tokens = 4096;
  c.attention.type = "msa";
  c.attention.block_size = 64;
  c.parallel = {1, 4, 1};
  validate_layout(c, 4);  // chunks of 64 tokens: one block each
  c.parallel = {1, 8, 1};
  EXPECT_EQ(layout_error(c, 8),
            "model.seq_len (512) / (2 x parallel.cp = 16) = 32 tokens per context-parallel chunk, not a multiple of "
            "attention.block_size (64); MSA needs chunks of whole blocks");
  c.attention.type = "gqa";  // dense attention has no blocks
  validate_layout(c, 8);
}

}  // namespace
}  // namespace msa
