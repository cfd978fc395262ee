// The run configuration: one struct per YAML section. Defaults here are the documented defaults; the schema
// (schema.cpp) lists every key with its type and range, and the loader (load.cpp) fills these from YAML and
// --set overrides, rejecting anything it does not know.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace msa {

struct ModelConfig {
  int64_t vocab_size = 256;
  int64_t d_model = 256;
  int64_t n_layers = 4;
  int64_t n_heads = 8;        // query heads Hq
  int64_t n_kv_heads = 2;     // key/value heads Hkv (GQA groups); n_heads % n_kv_heads == 0
  int64_t head_dim = 32;      // d
  int64_t ffn_hidden = 688;   // SwiGLU hidden width (dense feed-forward layers)
  std::string ffn = "dense";  // dense | moe: the feed-forward kind (moe.dense_layers stay dense)
  int64_t seq_len = 256;      // tokens per training sequence (context)
  double rope_theta = 10000.0;
  double rotary_fraction = 1.0;  // share of each head's dims that RoPE rotates (even count)
  bool qk_norm = false;          // per-head RMSNorm on q and k before RoPE
  bool tie_embeddings = true;    // LM head shares the token embedding
  double norm_eps = 1e-5;
  double init_std = 0.02;
  // A checkpoint to start from: tensors with the same name and shape are loaded, the others (e.g. MSA's Index
  // Branch when the file is a dense GQA model) initialised fresh; optimizer and data start fresh. "" = none.
  std::string init_from = "";
};

// MSA knobs, spec/msa.md §6. Used when type is msa, for the layers not listed in dense_layers.
struct AttentionConfig {
  std::string type = "gqa";          // gqa | msa
  int64_t block_size = 128;          // B: tokens per key block
  int64_t topk_blocks = 16;          // k: blocks per query and GQA group, forced ones included
  int64_t index_head_dim = 128;      // dI
  std::string score_pool = "max";    // max | mean over a block's visible tokens
  bool force_local = true;           // always select the query's own block
  int64_t sink_blocks = 0;           // also always select the first n blocks
  double kl_coef = 1.0;              // lambda; 0 disables the KL loss
  bool detach_index_input = true;    // false lets the KL gradient flow into the backbone (ablation)
  int64_t warmup_steps = 0;          // dense-attention indexer warmup steps; 0 skips it
  std::string dense_layers = "0";    // layers that stay dense GQA: "0", "0-2", "0,5", or "none"
  bool freeze_backbone_in_warmup = false;  // train only the Index Branch during warmup
  int64_t recall_every = 10;         // steps between index_recall measurements (0 = never)
};

// Mixture-of-Experts feed-forward (docs/moe.md). Used when model.ffn is moe, for the layers not in dense_layers.
struct MoeConfig {
  std::string dense_layers = "none";  // layers that keep the dense SwiGLU: "0", "0-2", "0,5", or "none"
  int64_t n_experts = 8;              // routed experts per MoE layer
  int64_t top_k = 2;                  // experts per token
  int64_t shared_experts = 0;         // experts every token goes through (no routing)
  int64_t d_ff = 688;                 // hidden width of one expert (routed and shared)
  std::string score = "softmax";      // softmax | sigmoid: router scores from the logits
  bool renormalize = true;            // chosen gates divided by their sum
  double aux_loss_coef = 0.01;        // load-balancing loss weight
  double z_loss_coef = 0.001;         // router z-loss weight
  double capacity_factor = 0;         // 0 = dropless; > 0: ceil(cf * tokens * top_k / n_experts) per expert
};

struct ParallelConfig {
  int64_t dp = 1;  // data parallel
  int64_t cp = 1;  // context parallel
  int64_t ep = 1;  // expert parallel (divides dp*cp)
};

struct TrainConfig {
  int64_t steps = 1000;
  int64_t batch_tokens = 16384;  // global tokens per optimizer step (independent of the rank count)
  int64_t micro_batch = 4;       // sequences per forward/backward on one rank
  double lr = 3e-3;              // peak learning rate
  double min_lr = 3e-4;          // floor reached at the end of the decay
  int64_t warmup_steps = 100;    // linear warmup from 0 to lr
  std::string decay = "cosine";  // cosine | linear | constant
  double weight_decay = 0.1;
  bool decay_norms_and_embeddings = false;  // apply weight decay to norm scales and embeddings too
  double beta1 = 0.9;
  double beta2 = 0.95;
  double adam_eps = 1e-8;
  double grad_clip = 1.0;       // global-norm clip; 0 disables
  int64_t max_bad_steps = 5;    // consecutive non-finite steps (skipped) before the run stops
  int64_t log_every = 10;       // metrics.jsonl / progress line period in steps
};

struct DataConfig {
  std::string dir = "data/shards/sotu_bytes";  // folder written by `msatrain data prepare`
};

struct EvalConfig {
  int64_t every = 100;      // steps between validation passes; 0 = only at the end
  int64_t sequences = 64;   // validation sequences (of model.seq_len tokens) per pass
};

struct CheckpointConfig {
  int64_t every = 100;  // steps between checkpoints in run.dir/checkpoints; 0 = only at the end
  int64_t keep = 3;     // newest checkpoint files kept; 0 = keep all
};

struct RunSection {
  std::string dir = "runs/default";
  int64_t seed = 1234;
};

struct RunConfig {
  ModelConfig model;
  AttentionConfig attention;
  MoeConfig moe;
  ParallelConfig parallel;
  TrainConfig train;
  DataConfig data;
  EvalConfig eval;
  CheckpointConfig checkpoint;
  RunSection run;
  std::string device = "cpu";  // cpu | cuda
};

}  // namespace msa
