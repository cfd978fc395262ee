#include "checkpoint/inspect.h"

#include <cstdio>
#include <filesystem>

#include "checkpoint/format.h"
#include "config/load.h"
#include "core/error.h"
#include "ops/ops.h"

namespace msa {
namespace {

constexpr const char* kCkptUsage =
    "usage: msatrain ckpt inspect PATH\n"
    "\n"
    "Prints what the checkpoint file PATH holds: the step and counters, the parallel layout and msatrain version\n"
    "that wrote it, a summary of its config, and every tensor with its dtype, shape, sum, sum of squares and\n"
    "CRC-32 (checked against the one stored at save time). Exits 2 when the file cannot be read or a tensor's\n"
    "CRC-32 does not match.\n";

void print_config_summary(const CheckpointReader& r) {
  RunConfig c;
  try {
    c = load_config_string(r.meta().config_yaml, r.path() + ":/config", {});
  } catch (const UserError& e) {
    std::printf("  config            %zu bytes of YAML that this build does not load (%s)\n",
                r.meta().config_yaml.size(), e.what());
    return;
  }
  const ModelConfig& m = c.model;
  std::printf("  model             %s attention, d_model %lld, n_layers %lld, heads %lld (kv %lld) x %lld, ffn %lld, "
              "vocab %lld, seq_len %lld, tied embeddings %s\n",
              c.attention.type.c_str(), (long long)m.d_model, (long long)m.n_layers, (long long)m.n_heads,
              (long long)m.n_kv_heads, (long long)m.head_dim, (long long)m.ffn_hidden, (long long)m.vocab_size,
              (long long)m.seq_len, m.tie_embeddings ? "yes" : "no");
  if (c.attention.type == "msa") {
    const AttentionConfig& a = c.attention;
    std::printf("  msa               block_size %lld, topk_blocks %lld, index_head_dim %lld, warmup_steps %lld, "
                "dense_layers %s\n",
                (long long)a.block_size, (long long)a.topk_blocks, (long long)a.index_head_dim,
                (long long)a.warmup_steps, a.dense_layers.c_str());
  }
  if (m.ffn == "moe") {
    const MoeConfig& e = c.moe;
    std::printf("  moe               %lld experts (top-%lld, %s scores%s), d_ff %lld, shared %lld, dense_layers %s, "
                "capacity_factor %g, aux %g, z %g\n",
                (long long)e.n_experts, (long long)e.top_k, e.score.c_str(), e.renormalize ? ", renormalised" : "",
                (long long)e.d_ff, (long long)e.shared_experts, e.dense_layers.c_str(), e.capacity_factor,
                e.aux_loss_coef, e.z_loss_coef);
  }
  std::printf("  train             steps %lld, batch_tokens %lld, lr %g (min %g, warmup %lld, %s), weight_decay %g\n",
              (long long)c.train.steps, (long long)c.train.batch_tokens, c.train.lr, c.train.min_lr,
              (long long)c.train.warmup_steps, c.train.decay.c_str(), c.train.weight_decay);
  std::printf("  run               dir %s, seed %lld, data %s\n", c.run.dir.c_str(), (long long)c.run.seed,
              c.data.dir.c_str());
}

int inspect(const std::string& path) {
  const CheckpointReader r(path);
  const CheckpointMeta& m = r.meta();
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(path, ec);
  std::printf("checkpoint %s (%.1f MB)\n", path.c_str(), double(bytes) / 1e6);
  std::printf("  format            %s v%lld, written by msatrain %s at %s\n", kCheckpointFormat,
              (long long)m.format_version, m.msatrain_version.c_str(), m.created_utc.c_str());
  std::printf("  step              %lld (optimizer steps %lld, skipped steps %lld, %lld of them in a row)\n",
              (long long)m.step, (long long)m.optimizer_steps, (long long)m.skipped_steps,
              (long long)m.skipped_in_a_row);
  std::printf("  consumed          %lld samples, %lld tokens\n", (long long)m.samples_consumed,
              (long long)m.tokens_consumed);
  std::printf("  data rng          seed %llu, next sample %lld\n", (unsigned long long)m.data_seed,
              (long long)m.data_counter);
  std::printf("  layout            dp=%lld cp=%lld ep=%lld world=%lld\n", (long long)m.dp, (long long)m.cp,
              (long long)m.ep, (long long)m.world);
  print_config_summary(r);

  int64_t param_values = 0, param_tensors = 0;
  for (const TensorInfo& t : r.tensors()) {
    if (!t.name.starts_with("params/")) continue;
    ++param_tensors;
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    param_values += n;
  }
  std::printf("  parameters        %lld values in %lld tensors; %zu tensors in all\n", (long long)param_values,
              (long long)param_tensors, r.tensors().size());
  std::printf("tensors (name dtype shape sum sum_of_squares crc32 check):\n");
  int bad = 0;
  for (const TensorInfo& t : r.tensors()) {
    const Tensor v = r.read_stored(t.name);
    const uint32_t crc = tensor_crc32(v);
    const char* check = !t.has_crc ? "no-stored-crc" : crc == t.crc ? "ok" : "MISMATCH";
    bad += t.has_crc && crc != t.crc;
    std::printf("  %-40s %s %-14s %.9g %.9g %08x %s\n", t.name.c_str(), dtype_name(t.dtype), shape_str(t.shape).c_str(),
                ops::sum(v), ops::sum_squares(v), crc, check);
  }
  if (bad) {
    std::fprintf(stderr, "msatrain: error: checkpoint %s: %d tensor(s) do not match their stored CRC-32 (corrupt)\n",
                 path.c_str(), bad);
    return 2;
  }
  return 0;
}

}  // namespace

int run_ckpt_command(const std::vector<std::string>& args) {
  for (const auto& a : args)
    if (a == "--help" || a == "-h") {
      std::fputs(kCkptUsage, stdout);
      return 0;
    }
  try {
    MSA_USER_CHECK(args.size() == 2 && args[0] == "inspect", "usage: msatrain ckpt inspect PATH (see --help)");
    return inspect(args[1]);
  } catch (const UserError& e) {
    std::fprintf(stderr, "msatrain: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "msatrain: internal error: %s\n", e.what());
    return 1;
  }
}

}  // namespace msa
