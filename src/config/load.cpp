#include "config/load.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "config/schema.h"
#include "core/error.h"

namespace msa {
namespace {

// The state of one load: the config being filled and, per key, where its value came from.
struct LoadState {
  std::string source;
  RunConfig config;
  std::map<std::string, std::string, std::less<>> origin;  // "train.lr" -> "x.yaml:7" or "--set train.lr=1"
};

[[noreturn]] void fail_at(const std::string& where, const std::string& msg) { throw UserError(where + ": " + msg); }

std::string place(const std::string& source, const YAML::Mark& mark) {
  return mark.is_null() ? source : source + ":" + std::to_string(mark.line + 1);  // Mark lines are 0-based
}

// The first key inside section `path` ("model" -> model.vocab_size), or nullptr when it is no section.
const KeySpec* first_in_section(std::string_view path) {
  for (const KeySpec& k : config_schema())
    if (k.path.size() > path.size() && k.path.starts_with(path) && k.path[path.size()] == '.') return &k;
  return nullptr;
}

// Optimal string alignment distance: edits plus adjacent swaps, the usual typos.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1])});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

// " (did you mean 'model.d_model'?)": a close name in the same section, else the same name in another one.
std::string suggestion(std::string_view path) {
  const size_t dot = path.rfind('.');
  const std::string_view parent = dot == std::string_view::npos ? "" : path.substr(0, dot + 1);
  const std::string_view name = path.substr(parent.size());
  std::string best;
  size_t best_dist = std::max<size_t>(1, name.size() / 3) + 1;
  std::vector<std::string> elsewhere;
  for (const KeySpec& k : config_schema()) {
    if (k.path.starts_with(parent)) {
      const std::string_view rest = k.path.substr(parent.size());
      const std::string_view child = rest.substr(0, rest.find('.'));
      if (const size_t dist = edit_distance(name, child); dist < best_dist) {
        best_dist = dist;
        best = std::string(parent) + std::string(child);
      }
    }
    const size_t n = name.size();
    if (k.path.size() > n && k.path.ends_with(name) && k.path[k.path.size() - n - 1] == '.')
      elsewhere.emplace_back(k.path);
  }
  if (!best.empty()) return " (did you mean '" + best + "'?)";
  if (elsewhere.empty()) return "";
  std::string s = " (did you mean ";
  for (size_t i = 0; i < elsewhere.size(); ++i) s += (i ? " or '" : "'") + elsewhere[i] + "'";
  return s + "?)";
}

std::string describe_node(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Scalar: return "'" + n.Scalar() + "'";
    default: return "an empty value";
  }
}

void assign_node(LoadState& s, const KeySpec& key, const YAML::Node& value, const std::string& where) {
  MSA_USER_CHECK(value.IsScalar(),
                 where << ": " << key.path << ": expected " << describe_kind(key) << ", got " << describe_node(value));
  // Tag "?" marks a plain scalar and "!" a quoted one; anything else is an explicit tag such as !!str.
  MSA_USER_CHECK(value.Tag() == "?" || value.Tag() == "!",
                 where << ": " << key.path << ": YAML tags such as '" << value.Tag() << "' are not supported");
  try {
    assign_key(key, s.config, value.Scalar(), value.Tag() == "?");
  } catch (const UserError& e) {
    fail_at(where, e.what());
  }
  s.origin[std::string(key.path)] = where;
}

// Walks one YAML mapping whose keys extend `prefix` ("" at the top, "model." inside the model section).
void walk(LoadState& s, const YAML::Node& map, const std::string& prefix) {
  std::map<std::string, int> seen;  // key -> 1-based line, because yaml-cpp keeps duplicate keys silently
  for (const auto& kv : map) {
    const std::string where = place(s.source, kv.first.Mark());
    MSA_USER_CHECK(kv.first.IsScalar(), where << ": keys must be plain names, got " << describe_node(kv.first));
    const std::string& name = kv.first.Scalar();
    const std::string path = prefix + name;
    // A dotted key would let one value be set twice, nested and flat; the file must nest.
    MSA_USER_CHECK(name.find('.') == std::string::npos,
                   where << ": key '" << name << "' contains '.'; write it nested, one section per line");
    const auto [first, fresh] = seen.emplace(path, kv.first.Mark().line + 1);
    MSA_USER_CHECK(fresh, where << ": duplicate key '" << path << "' (first at line " << first->second << ")");
    if (const KeySpec* key = find_key(path)) {
      assign_node(s, *key, kv.second, where);
    } else if (first_in_section(path) != nullptr) {
      // An empty section ("eval:" with every key commented out) keeps its defaults.
      MSA_USER_CHECK(
          kv.second.IsMap() || kv.second.IsNull(),
          where << ": '" << path << "' is a section and needs a mapping of keys, got " << describe_node(kv.second));
      if (kv.second.IsMap()) walk(s, kv.second, path + ".");
    } else {
      fail_at(where, "unknown key '" + path + "'" + suggestion(path));
    }
  }
}

void apply_override(LoadState& s, const ConfigOverride& o) {
  const std::string where = "--set " + o.path + "=" + o.value;
  const KeySpec* key = find_key(o.path);
  if (const KeySpec* example = first_in_section(o.path); key == nullptr && example != nullptr)
    fail_at(where, "'" + o.path + "' is a section; --set takes one key such as '" + std::string(example->path) + "'");
  if (key == nullptr) fail_at(where, "unknown key '" + o.path + "'" + suggestion(o.path));
  YAML::Node value;
  try {
    value = YAML::Load(o.value);
  } catch (const YAML::ParserException& e) {
    fail_at(where, o.path + ": cannot read '" + o.value + "' as a YAML value: " + e.msg);
  }
  assign_node(s, *key, value, where);
}

// A rule between keys failed: the message starts with where each of them was set (the file name when all
// are defaults), so that the user sees which lines to look at.
[[noreturn]] void fail_keys(const LoadState& s, std::initializer_list<std::string_view> keys, const std::string& msg) {
  std::string where;
  for (std::string_view k : keys)
    if (auto it = s.origin.find(k); it != s.origin.end() && where.find(it->second) == std::string::npos)
      where += (where.empty() ? "" : ", ") + it->second;
  fail_at(where.empty() ? s.source : where, msg);
}

std::string value_of(const RunConfig& c, std::string_view path) { return format_key(*find_key(path), c); }

// The Mixture-of-Experts keys against each other and against the expert-parallel layout.
void check_moe(const LoadState& s) {
  const RunConfig& c = s.config;
  const MoeConfig& e = c.moe;
  const std::string ep = std::to_string(c.parallel.ep);
  if (c.model.ffn != "moe") {
    if (c.parallel.ep != 1)
      fail_keys(s, {"parallel.ep", "model.ffn"},
                "parallel.ep (" + ep + ") splits experts over ranks, but model.ffn is dense: set model.ffn: moe or "
                "parallel.ep: 1");
    return;
  }
  const int64_t ranks = c.parallel.dp * c.parallel.cp;
  if (ranks % c.parallel.ep != 0)
    fail_keys(s, {"parallel.ep", "parallel.dp", "parallel.cp"},
              "parallel.ep (" + ep + ") must divide parallel.dp x parallel.cp = " + std::to_string(ranks));
  if (e.n_experts % c.parallel.ep != 0)
    fail_keys(s, {"parallel.ep", "moe.n_experts"},
              "parallel.ep (" + ep + ") must divide moe.n_experts (" + std::to_string(e.n_experts) +
                  "): every rank of an expert-parallel group holds the same number of experts");
  if (e.top_k > e.n_experts)
    fail_keys(s, {"moe.top_k", "moe.n_experts"},
              "moe.top_k (" + std::to_string(e.top_k) + ") must be <= moe.n_experts (" + std::to_string(e.n_experts) +
                  ")");
  if (c.parallel.ep != 1 && !c.model.init_from.empty())
    fail_keys(s, {"model.init_from", "parallel.ep"},
              "model.init_from is not supported with parallel.ep > 1 (experts are split over ranks); start from it "
              "with parallel.ep: 1, save, and resume with the layout you want");
  try {
    parse_layer_set(e.dense_layers, c.model.n_layers, "moe.dense_layers");
  } catch (const UserError& err) {
    fail_keys(s, {"moe.dense_layers"}, err.what());
  }
}

void check_cross_fields(const LoadState& s) {
  const RunConfig& c = s.config;
  const ModelConfig& m = c.model;
  if (m.n_heads % m.n_kv_heads != 0)
    fail_keys(s, {"model.n_heads", "model.n_kv_heads"},
              "model.n_heads (" + std::to_string(m.n_heads) + ") must be a multiple of model.n_kv_heads (" +
                  std::to_string(m.n_kv_heads) + ")");
  if (rotary_dims(m) % 2 != 0)
    fail_keys(s, {"model.rotary_fraction", "model.head_dim"},
              "model.rotary_fraction (" + value_of(c, "model.rotary_fraction") + ") x model.head_dim (" +
                  std::to_string(m.head_dim) + ") gives " + std::to_string(rotary_dims(m)) +
                  " rotary dims; RoPE turns dims in pairs, so it must be even");
  if (c.train.batch_tokens % m.seq_len != 0)
    fail_keys(s, {"train.batch_tokens", "model.seq_len"},
              "train.batch_tokens (" + std::to_string(c.train.batch_tokens) +
                  ") must be a multiple of model.seq_len (" + std::to_string(m.seq_len) + ")");
  if (c.train.warmup_steps > c.train.steps)
    fail_keys(s, {"train.warmup_steps", "train.steps"},
              "train.warmup_steps (" + std::to_string(c.train.warmup_steps) + ") must be <= train.steps (" +
                  std::to_string(c.train.steps) + ")");
  if (c.train.min_lr > c.train.lr)
    fail_keys(
        s, {"train.min_lr", "train.lr"},
        "train.min_lr (" + value_of(c, "train.min_lr") + ") must be <= train.lr (" + value_of(c, "train.lr") + ")");

  // Valid configs that this build cannot run yet.
  if (c.device == "cuda" && c.attention.type == "msa")
    fail_keys(s, {"device", "attention.type"},
              "attention.type 'msa' has no GPU kernels yet: use device 'cpu' or attention.type 'gqa'");
  if (c.device == "cuda" && c.model.head_dim != 32 && c.model.head_dim != 64 && c.model.head_dim != 128)
    fail_keys(s, {"device", "model.head_dim"},
              "model.head_dim " + value_of(c, "model.head_dim") +
                  " has no GPU attention kernel: the fused attention takes head dims 32, 64 and 128");
  if (c.device == "cuda" && c.model.ffn == "moe" && c.moe.n_experts > 2048)  // kernels/cuda/moe.cu's router
    fail_keys(s, {"device", "moe.n_experts"},
              "moe.n_experts (" + value_of(c, "moe.n_experts") +
                  ") is more than the GPU router takes (2048): use fewer experts or device 'cpu'");
  const AttentionConfig& a = c.attention;
  if (a.sink_blocks + (a.force_local ? 1 : 0) > a.topk_blocks)
    fail_keys(s, {"attention.sink_blocks", "attention.force_local", "attention.topk_blocks"},
              "attention.sink_blocks (" + std::to_string(a.sink_blocks) + ") plus the forced local block exceed "
              "attention.topk_blocks (" + std::to_string(a.topk_blocks) + ")");
  const int64_t index_rot = std::llround(m.rotary_fraction * double(a.index_head_dim));
  if (index_rot % 2 != 0)
    fail_keys(s, {"model.rotary_fraction", "attention.index_head_dim"},
              "model.rotary_fraction x attention.index_head_dim gives " + std::to_string(index_rot) +
                  " rotary dims for the index heads; it must be even");
  try {
    parse_layer_set(a.dense_layers, m.n_layers);
  } catch (const UserError& e) {
    fail_keys(s, {"attention.dense_layers"}, e.what());
  }
  check_moe(s);
}

bool is_path_char(char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.'; }

}  // namespace

ConfigOverride parse_override(const std::string& arg) {
  const size_t eq = arg.find('=');
  MSA_USER_CHECK(eq != std::string::npos, "--set expects KEY=VALUE such as train.lr=1e-3, got '" << arg << "'");
  ConfigOverride o{arg.substr(0, eq), arg.substr(eq + 1)};
  const bool well_formed = !o.path.empty() && std::all_of(o.path.begin(), o.path.end(), is_path_char) &&
                           o.path.front() != '.' && o.path.back() != '.' && o.path.find("..") == std::string::npos;
  MSA_USER_CHECK(well_formed, "--set " << arg << ": '" << o.path << "' is not a key path such as train.lr");
  return o;
}

RunConfig load_config_string(const std::string& yaml_text, const std::string& source_name,
                             const std::vector<ConfigOverride>& overrides) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(yaml_text);
  } catch (const YAML::ParserException& e) {
    fail_at(place(source_name, e.mark), "YAML syntax error: " + e.msg);
  }
  MSA_USER_CHECK(docs.size() <= 1, place(source_name, docs[1].Mark())
                                       << ": found " << docs.size() << " YAML documents; a config is one");
  MSA_USER_CHECK(!docs.empty() && !docs[0].IsNull(), source_name << ": the config is empty");
  MSA_USER_CHECK(docs[0].IsMap(), place(source_name, docs[0].Mark())
                                      << ": the top level must be a mapping of sections (model:, train:, ...), got "
                                      << describe_node(docs[0]));
  LoadState s;
  s.source = source_name;
  walk(s, docs[0], "");
  for (const ConfigOverride& o : overrides) apply_override(s, o);
  check_cross_fields(s);
  return std::move(s.config);
}

RunConfig load_config(const std::string& file, const std::vector<ConfigOverride>& overrides) {
  std::error_code ec;
  MSA_USER_CHECK(std::filesystem::exists(file, ec), "config file '" << file << "' does not exist");
  MSA_USER_CHECK(!std::filesystem::is_directory(file, ec), "config file '" << file << "' is a directory");
  std::ifstream in(file, std::ios::binary);
  MSA_USER_CHECK(in, "cannot open config file '" << file << "': " << std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  MSA_USER_CHECK(!in.bad(), "cannot read config file '" << file << "': " << std::strerror(errno));
  return load_config_string(text.str(), file, overrides);
}

void validate_layout(const RunConfig& c, int world_size) {
  const ParallelConfig& p = c.parallel;
  MSA_CHECK(world_size >= 1 && p.dp >= 1 && p.cp >= 1 && p.ep >= 1 && c.model.seq_len >= 1,
            "validate_layout needs a loaded config and a world size, got " << world_size);
  const int64_t ranks = p.dp * p.cp;
  MSA_USER_CHECK(ranks == world_size, "parallel.dp (" << p.dp << ") x parallel.cp (" << p.cp << ") = " << ranks
                                                      << " does not match the " << world_size << " MPI rank"
                                                      << (world_size == 1 ? "" : "s"));
  MSA_USER_CHECK(ranks % p.ep == 0, "parallel.ep (" << p.ep << ") must divide parallel.dp x parallel.cp = " << ranks);
  const int64_t sequences = c.train.batch_tokens / c.model.seq_len;
  MSA_USER_CHECK(sequences % p.dp == 0, "train.batch_tokens / model.seq_len = "
                                            << sequences << " sequences per step do not split evenly over parallel.dp ("
                                            << p.dp << ") ranks");
  // Context parallel cuts each sequence into 2*cp chunks (balanced causal work).
  MSA_USER_CHECK(p.cp == 1 || c.model.seq_len % (2 * p.cp) == 0,
                 "model.seq_len (" << c.model.seq_len << ") must be a multiple of 2 x parallel.cp = " << 2 * p.cp);
  // MSA selects whole blocks: each chunk must hold whole attention blocks.
  const int64_t chunk = c.model.seq_len / (2 * p.cp), block = c.attention.block_size;
  MSA_USER_CHECK(p.cp == 1 || c.attention.type != "msa" || chunk % block == 0,
                 "model.seq_len (" << c.model.seq_len << ") / (2 x parallel.cp = " << 2 * p.cp << ") = " << chunk
                                   << " tokens per context-parallel chunk, not a multiple of attention.block_size ("
                                   << block << "); MSA needs chunks of whole blocks");
}

std::string to_yaml(const RunConfig& c) {
  std::string out;
  std::vector<std::string_view> open;  // the sections the next line is nested in
  for (const KeySpec& k : config_schema()) {
    std::vector<std::string_view> parts;
    for (size_t start = 0, dot = 0; dot != std::string_view::npos; start = dot + 1) {
      dot = k.path.find('.', start);
      parts.push_back(k.path.substr(start, dot == std::string_view::npos ? dot : dot - start));
    }
    size_t common = 0;
    while (common < open.size() && common + 1 < parts.size() && open[common] == parts[common]) ++common;
    open.resize(common);
    for (size_t depth = 0; depth < parts.size(); ++depth) {
      if (depth < common) continue;
      if (depth == 0 && !out.empty()) out += '\n';  // a blank line between top-level entries
      out += std::string(2 * depth, ' ') + std::string(parts[depth]) + ':';
      if (depth + 1 < parts.size()) {
        out += '\n';
        open.push_back(parts[depth]);
      } else {
        out += ' ' + format_key(k, c) + '\n';
      }
    }
  }
  return out;
}

std::vector<bool> parse_layer_set(const std::string& text, int64_t n_layers, const std::string& key) {
  std::vector<bool> in(static_cast<size_t>(n_layers), false);
  if (text == "none") return in;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t end = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, end - pos);
    int64_t lo = -1, hi = -1;
    char extra = 0;
    const int got = std::sscanf(item.c_str(), "%ld-%ld%c", &lo, &hi, &extra);
    if (got == 1) hi = lo;
    MSA_USER_CHECK((got == 1 || got == 2) && item.find_first_not_of("0123456789-") == std::string::npos,
                   key << ": '" << item << "' is not a layer index or range such as 0-2 (in '" << text
                                               << "'; \"none\" for no dense layer)");
    MSA_USER_CHECK(0 <= lo && lo <= hi && hi < n_layers,
                   key << ": '" << item << "' is outside layers 0.." << n_layers - 1);
    for (int64_t l = lo; l <= hi; ++l) in[static_cast<size_t>(l)] = true;
    pos = end + 1;
  }
  return in;
}

int64_t rotary_dims(const ModelConfig& m) { return std::llround(m.rotary_fraction * static_cast<double>(m.head_dim)); }

}  // namespace msa
