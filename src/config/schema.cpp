#include "config/schema.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace msa {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kMaxRanks = 1 << 20;  // caps dp, cp, ep so that their products never overflow

constexpr ValueRange any() { return {-kInf, kInf}; }
constexpr ValueRange at_least(double lo) { return {lo, kInf}; }
constexpr ValueRange above(double lo) { return {lo, kInf, true}; }
constexpr ValueRange between(double lo, double hi) { return {lo, hi}; }                  // [lo, hi]
constexpr ValueRange from_below(double lo, double hi) { return {lo, hi, false, true}; }  // [lo, hi)

// The path string and the accessor come from one token sequence, so they cannot drift apart.
#define MSA_KEY(path) #path, ConfigField(+[](RunConfig& c) { return &c.path; })

const std::vector<KeySpec>& table() {
  static const std::vector<KeySpec> rows = {
      {MSA_KEY(model.vocab_size), between(1, 2147483647), {}, "tokens in the vocabulary (ids fit in int32)"},
      {MSA_KEY(model.d_model), at_least(1), {}, "width of the residual stream"},
      {MSA_KEY(model.n_layers), at_least(1), {}, "transformer blocks"},
      {MSA_KEY(model.n_heads), at_least(1), {}, "query heads; a multiple of model.n_kv_heads"},
      {MSA_KEY(model.n_kv_heads), at_least(1), {}, "key/value heads (GQA groups)"},
      {MSA_KEY(model.head_dim), at_least(1), {}, "dimension of one attention head"},
      {MSA_KEY(model.ffn_hidden), at_least(1), {}, "SwiGLU hidden width"},
      {MSA_KEY(model.ffn), any(), {"dense", "moe"}, "feed-forward kind: dense SwiGLU or Mixture-of-Experts (moe.*)"},
      {MSA_KEY(model.seq_len), at_least(1), {}, "tokens per training sequence (context length)"},
      {MSA_KEY(model.rope_theta), above(0), {}, "RoPE base frequency"},
      {MSA_KEY(model.rotary_fraction), between(0, 1), {}, "share of head dims RoPE rotates; must give an even count"},
      {MSA_KEY(model.qk_norm), any(), {}, "RMSNorm on each head's q and k before RoPE"},
      {MSA_KEY(model.tie_embeddings), any(), {}, "LM head shares the token embedding matrix"},
      {MSA_KEY(model.norm_eps), above(0), {}, "epsilon inside RMSNorm"},
      {MSA_KEY(model.init_std), above(0), {}, "standard deviation of the normal weight init"},
      {MSA_KEY(model.init_from), any(), {}, "checkpoint whose same-named, same-shaped tensors start the run; \"\" = none",
       true},
      {MSA_KEY(attention.type), any(), {"gqa", "msa"}, "attention kind: dense grouped-query or MiniMax Sparse"},
      {MSA_KEY(attention.block_size), at_least(1), {}, "MSA: tokens per key block (B)"},
      {MSA_KEY(attention.topk_blocks), at_least(1), {}, "MSA: blocks per query and group (k), forced ones included"},
      {MSA_KEY(attention.index_head_dim), at_least(2), {}, "MSA: index head dim (dI)"},
      {MSA_KEY(attention.score_pool), any(), {"max", "mean"}, "MSA: block score pooling over visible tokens"},
      {MSA_KEY(attention.force_local), any(), {}, "MSA: always select the query's own block"},
      {MSA_KEY(attention.sink_blocks), at_least(0), {}, "MSA: always select the first n blocks (count towards k)"},
      {MSA_KEY(attention.kl_coef), at_least(0), {}, "MSA: weight of the KL alignment loss; 0 disables it"},
      {MSA_KEY(attention.detach_index_input), any(), {}, "MSA: stop the KL gradient at the index input"},
      {MSA_KEY(attention.warmup_steps), at_least(0), {}, "MSA: dense-attention indexer warmup steps"},
      {MSA_KEY(attention.dense_layers), any(), {}, "MSA: layers kept dense GQA: \"0\", \"0-2\", \"0,5\" or \"none\""},
      {MSA_KEY(attention.freeze_backbone_in_warmup), any(), {}, "MSA: train only the Index Branch during warmup"},
      {MSA_KEY(attention.recall_every), at_least(0), {}, "MSA: steps between index_recall measurements; 0 = never"},
      {MSA_KEY(moe.dense_layers), any(), {}, "MoE: layers kept dense SwiGLU: \"0\", \"0-2\", \"0,5\" or \"none\""},
      {MSA_KEY(moe.n_experts), at_least(1), {}, "MoE: routed experts per layer; a multiple of parallel.ep"},
      {MSA_KEY(moe.top_k), at_least(1), {}, "MoE: experts per token; <= moe.n_experts"},
      {MSA_KEY(moe.shared_experts), at_least(0), {}, "MoE: experts that every token goes through, besides the routed"},
      {MSA_KEY(moe.d_ff), at_least(1), {}, "MoE: hidden width of one expert (SwiGLU)"},
      {MSA_KEY(moe.score), any(), {"softmax", "sigmoid"}, "MoE: router scores from the router logits"},
      {MSA_KEY(moe.renormalize), any(), {}, "MoE: divide the top_k chosen scores by their sum"},
      {MSA_KEY(moe.aux_loss_coef), at_least(0), {}, "MoE: load-balancing loss weight (n_experts * sum f_e P_e)"},
      {MSA_KEY(moe.z_loss_coef), at_least(0), {}, "MoE: router z-loss weight (mean logsumexp^2)"},
      {MSA_KEY(moe.capacity_factor), at_least(0), {},
       "MoE: 0 = dropless; > 0: each expert takes ceil(cf * tokens * top_k / n_experts) tokens, the rest pass by"},
      {MSA_KEY(parallel.dp), between(1, kMaxRanks), {}, "data-parallel ranks"},
      {MSA_KEY(parallel.cp), between(1, kMaxRanks), {}, "context-parallel ranks per sequence"},
      {MSA_KEY(parallel.ep), between(1, kMaxRanks), {}, "expert-parallel ranks; divides dp*cp"},
      {MSA_KEY(train.steps), at_least(1), {}, "optimizer steps in the run"},
      {MSA_KEY(train.batch_tokens), at_least(1), {}, "global tokens per step; a multiple of model.seq_len"},
      {MSA_KEY(train.micro_batch), at_least(1), {}, "sequences per forward/backward on one rank"},
      {MSA_KEY(train.lr), above(0), {}, "peak learning rate"},
      {MSA_KEY(train.min_lr), at_least(0), {}, "learning rate at the end of the decay; <= train.lr"},
      {MSA_KEY(train.warmup_steps), at_least(0), {}, "steps of linear warmup from 0; <= train.steps"},
      {MSA_KEY(train.decay), any(), {"cosine", "linear", "constant"}, "learning-rate decay after warmup"},
      {MSA_KEY(train.weight_decay), at_least(0), {}, "AdamW decoupled weight decay"},
      {MSA_KEY(train.decay_norms_and_embeddings), any(), {}, "apply weight decay to norm scales and embeddings"},
      {MSA_KEY(train.beta1), from_below(0, 1), {}, "AdamW first-moment decay"},
      {MSA_KEY(train.beta2), from_below(0, 1), {}, "AdamW second-moment decay"},
      {MSA_KEY(train.adam_eps), above(0), {}, "AdamW denominator epsilon"},
      {MSA_KEY(train.grad_clip), at_least(0), {}, "global gradient-norm clip; 0 disables"},
      {MSA_KEY(train.max_bad_steps), at_least(0), {}, "consecutive non-finite (skipped) steps before the run stops"},
      {MSA_KEY(train.log_every), at_least(1), {}, "steps between metrics lines"},
      {MSA_KEY(data.dir), any(), {}, "token shard folder written by `msatrain data prepare`"},
      {MSA_KEY(eval.every), at_least(0), {}, "steps between validation passes; 0 = only at the end"},
      {MSA_KEY(eval.sequences), at_least(1), {}, "validation sequences per pass"},
      {MSA_KEY(checkpoint.every), at_least(0), {}, "steps between checkpoints; 0 = only at the end of the run"},
      {MSA_KEY(checkpoint.keep), at_least(0), {}, "newest checkpoint files kept in run.dir/checkpoints; 0 = all"},
      {MSA_KEY(run.dir), any(), {}, "output folder: config.yaml, metrics.jsonl, checkpoints/"},
      {MSA_KEY(run.seed), at_least(0), {}, "seed for initialisation and data order"},
      {MSA_KEY(device), any(), {"cpu", "cuda"}, "where the model trains"},
  };
  return rows;
}

#undef MSA_KEY

// Read access through the same accessor; the config is not modified.
template <class F>
auto& read(F field, const RunConfig& c) {
  return *field(const_cast<RunConfig&>(c));
}

std::string shortest(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string describe_range(const ValueRange& r) {
  std::string s;
  if (std::isfinite(r.lo)) s += (r.lo_open ? "> " : ">= ") + shortest(r.lo);
  if (std::isfinite(r.hi)) s += (s.empty() ? "" : " and ") + std::string(r.hi_open ? "< " : "<= ") + shortest(r.hi);
  return s;
}

void check_range(const KeySpec& key, double v, const std::string& text) {
  const ValueRange& r = key.range;
  const bool ok = (r.lo_open ? v > r.lo : v >= r.lo) && (r.hi_open ? v < r.hi : v <= r.hi);
  MSA_USER_CHECK(ok, key.path << " = " << text << " is out of range (must be " << describe_range(r) << ")");
}

int64_t parse_int(const KeySpec& key, const std::string& text) {
  // from_chars takes no leading '+', YAML does.
  const char* first = text.data() + (text.starts_with('+') ? 1 : 0);
  const char* last = text.data() + text.size();
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(first, last, v);
  MSA_USER_CHECK(ec != std::errc::result_out_of_range,
                 key.path << ": expected an integer, got '" << text << "', which does not fit in 64 bits");
  MSA_USER_CHECK(ec == std::errc() && ptr == last && first != last,
                 key.path << ": expected an integer, got '" << text << "'");
  return v;
}

double parse_float(const KeySpec& key, const std::string& text) {
  const char* first = text.data() + (text.starts_with('+') ? 1 : 0);
  const char* last = text.data() + text.size();
  double v = 0;
  auto [ptr, ec] = std::from_chars(first, last, v);
  MSA_USER_CHECK(ec != std::errc::result_out_of_range,
                 key.path << ": expected a number, got '" << text << "', which is out of the range of a double");
  MSA_USER_CHECK(ec == std::errc() && ptr == last && first != last,
                 key.path << ": expected a number, got '" << text << "'");
  MSA_USER_CHECK(std::isfinite(v), key.path << ": expected a finite number, got '" << text << "'");
  return v;
}

std::string quote(const std::string& s) {
  static const char* hex = "0123456789abcdef";
  std::string q = "\"";
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') {
      q += '\\';
      q += static_cast<char>(ch);
    } else if (ch == '\n') {
      q += "\\n";
    } else if (ch < 0x20 || ch == 0x7f) {
      q += "\\x";
      q += hex[ch >> 4];
      q += hex[ch & 15];
    } else {
      q += static_cast<char>(ch);
    }
  }
  return q + "\"";
}

}  // namespace

KeyKind KeySpec::kind() const {
  switch (field.index()) {
    case 0: return KeyKind::Int;
    case 1: return KeyKind::Float;
    case 2: return KeyKind::Bool;
    default: return choices.empty() ? KeyKind::String : KeyKind::Enum;
  }
}

std::span<const KeySpec> config_schema() { return table(); }

const KeySpec* find_key(std::string_view path) {
  for (const KeySpec& k : table())
    if (k.path == path) return &k;
  return nullptr;
}

std::string describe_kind(const KeySpec& key) {
  switch (key.kind()) {
    case KeyKind::Int: return "an integer";
    case KeyKind::Float: return "a number";
    case KeyKind::Bool: return "true or false";
    case KeyKind::String: return "a string";
    case KeyKind::Enum: break;
  }
  std::string s = "one of ";
  for (size_t i = 0; i < key.choices.size(); ++i) s += (i ? ", " : "") + std::string(key.choices[i]);
  return s;
}

void assign_key(const KeySpec& key, RunConfig& c, const std::string& text, bool plain) {
  const KeyKind kind = key.kind();
  // A quoted '3' is a string in YAML; numbers and booleans must be written plain.
  MSA_USER_CHECK(plain || kind == KeyKind::String || kind == KeyKind::Enum,
                 key.path << ": expected " << describe_kind(key) << ", got the quoted string '" << text << "'");
  switch (kind) {
    case KeyKind::Int: {
      const int64_t v = parse_int(key, text);
      check_range(key, static_cast<double>(v), text);
      *std::get<0>(key.field)(c) = v;
      return;
    }
    case KeyKind::Float: {
      const double v = parse_float(key, text);
      check_range(key, v, text);
      *std::get<1>(key.field)(c) = v;
      return;
    }
    case KeyKind::Bool:
      // Only YAML 1.2 booleans: yes/no/on/off are too easy to write by accident.
      MSA_USER_CHECK(text == "true" || text == "false", key.path << ": expected true or false, got '" << text << "'");
      *std::get<2>(key.field)(c) = text == "true";
      return;
    case KeyKind::Enum: {
      bool known = false;
      for (std::string_view choice : key.choices) known = known || choice == text;
      MSA_USER_CHECK(known, key.path << " = '" << text << "' is not " << describe_kind(key));
      *std::get<3>(key.field)(c) = text;
      return;
    }
    case KeyKind::String:
      // String keys name paths, where an empty value is a mistake unless the key is optional ("" = none).
      MSA_USER_CHECK(!text.empty() || key.may_be_empty, key.path << ": expected a non-empty string");
      *std::get<3>(key.field)(c) = text;
      return;
  }
}

std::string format_key(const KeySpec& key, const RunConfig& c) {
  switch (key.kind()) {
    case KeyKind::Int: return std::to_string(read(std::get<0>(key.field), c));
    case KeyKind::Float: {
      // Shortest text that reads back to the same double; a '.' keeps YAML 1.1 readers (PyYAML) seeing a float.
      std::string s = shortest(read(std::get<1>(key.field), c));
      if (s.find('.') == std::string::npos) s.insert(std::min(s.find('e'), s.size()), ".0");
      return s;
    }
    case KeyKind::Bool: return read(std::get<2>(key.field), c) ? "true" : "false";
    case KeyKind::Enum: return read(std::get<3>(key.field), c);
    case KeyKind::String: return quote(read(std::get<3>(key.field), c));
  }
  return {};
}

std::vector<std::string> differing_keys(const RunConfig& a, const RunConfig& b) {
  std::vector<std::string> diff;
  for (const KeySpec& k : table()) {
    const bool same = std::visit([&](auto field) { return read(field, a) == read(field, b); }, k.field);
    if (!same) diff.emplace_back(k.path);
  }
  return diff;
}

}  // namespace msa
