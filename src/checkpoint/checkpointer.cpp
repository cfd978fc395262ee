#include "checkpoint/checkpointer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "config/load.h"
#include "config/schema.h"
#include "core/error.h"

namespace fs = std::filesystem;

namespace msa {
namespace {

constexpr const char* kLatest = "latest";

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string megabytes(uintmax_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", double(bytes) / 1e6);
  return buf;
}

// "step_00000100.h5" -> 100; -1 for any other name.
int64_t step_of(const std::string& name) {
  if (!name.starts_with("step_") || !name.ends_with(".h5") || name.size() <= 8) return -1;
  const std::string digits = name.substr(5, name.size() - 8);
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoll(digits);
}

// The step files of a folder as (step, name), newest first.
std::vector<std::pair<int64_t, std::string>> step_files(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (const int64_t s = step_of(name); s >= 0 && e.is_regular_file(ec)) files.emplace_back(s, name);
  }
  std::sort(files.begin(), files.end(), std::greater<>());
  return files;
}

std::string read_latest(const std::string& dir) {
  std::ifstream in(dir + "/" + kLatest);
  std::string name;
  if (!(in >> name)) return "";
  return name;
}

std::string errno_text(int err) { return std::strerror(err); }

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) throw Error("opening " + path + " to fsync it: " + errno_text(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw Error("fsync of " + path + ": " + errno_text(err));
}

void rename_or_throw(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) throw Error("renaming " + from + " to " + to + ": " + errno_text(errno));
}

// Replaces `path` by a file holding `text`: temporary file, fsync, rename, fsync of the folder.
void write_file_atomically(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string path = dir + "/" + name;
  const std::string tmp = dir + "/." + name + ".tmp." + std::to_string(::getpid());
  try {
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw Error("creating " + tmp + ": " + errno_text(errno));
    const bool written = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    const int err = errno;
    if (std::fclose(f) != 0 || !written) throw Error("writing " + tmp + ": " + errno_text(written ? errno : err));
    fsync_path(tmp, false);
    rename_or_throw(tmp, path);
    fsync_path(dir, true);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
}

// Fault injection for the tests (environment, never config), read at each save:
//   MSATRAIN_INJECT_CKPT_SLEEP="STEP:SECONDS"  sleep halfway through writing step STEP's file (kill -9 tests)
//   MSATRAIN_INJECT_CKPT_ENOSPC="STEP"         fail halfway through step STEP's file as a full disk would
struct SaveFaults {
  double sleep_s = 0;
  bool enospc = false;
};

SaveFaults save_faults(int64_t step) {
  SaveFaults f;
  if (const char* env = std::getenv("MSATRAIN_INJECT_CKPT_SLEEP")) {
    long long s = -1;
    double secs = 0;
    MSA_USER_CHECK(std::sscanf(env, "%lld:%lf", &s, &secs) == 2,
                   "MSATRAIN_INJECT_CKPT_SLEEP must be STEP:SECONDS, got '" << env << "'");
    if (s == step) f.sleep_s = secs;
  }
  if (const char* env = std::getenv("MSATRAIN_INJECT_CKPT_ENOSPC")) {
    long long s = -1;
    MSA_USER_CHECK(std::sscanf(env, "%lld", &s) == 1, "MSATRAIN_INJECT_CKPT_ENOSPC must be STEP, got '" << env << "'");
    f.enospc = s == step;
  }
  return f;
}

// Broadcasts from rank 0. MPI counts are int: large tensors go in pieces.
void bcast_bytes(Comm& comm, void* data, int64_t bytes) {
  constexpr int64_t kPiece = int64_t(1) << 30;
  for (int64_t off = 0; off < bytes; off += kPiece)
    comm.broadcast(static_cast<char*>(data) + off, std::min(kPiece, bytes - off), 0);
}

void bcast_string(Comm& comm, std::string& s) {
  int64_t n = int64_t(s.size());
  comm.broadcast(&n, sizeof n, 0);
  s.resize(size_t(n));
  bcast_bytes(comm, s.data(), n);
}

void bcast_progress(Comm& comm, TrainProgress& p) {
  int64_t v[6] = {p.step, p.samples_consumed, p.tokens_consumed, p.optimizer_steps, p.skipped_steps,
                  p.skipped_in_a_row};
  comm.broadcast(v, sizeof v, 0);
  p = {v[0], v[1], v[2], v[3], v[4], v[5]};
}

// Every rank ends up with rank 0's copy of each tensor (the load side of Sharding::replicated).
void scatter_from_root(Comm& comm, const std::vector<StateTensor>& tensors) {
  if (comm.size() == 1) return;
  for (const StateTensor& t : tensors) {
    switch (t.sharding) {
      case Sharding::replicated: bcast_bytes(comm, t.local->raw(), int64_t(t.local->nbytes())); break;
    }
  }
}

// The full global tensor that rank 0 writes (the save side of Sharding::replicated: its own copy).
const Tensor& global_on_root(const StateTensor& t) {
  switch (t.sharding) {
    case Sharding::replicated: return *t.local;
  }
  return *t.local;
}

// The keys whose values differ between the checkpoint's config and this run's, as "key (old -> new)";
// those matching `skip_prefix` are left out.
std::vector<std::string> config_changes(const RunConfig& before, const RunConfig& now, const std::string& only_prefix,
                                        const std::vector<std::string>& skip_prefixes) {
  std::vector<std::string> out;
  for (const std::string& key : differing_keys(before, now)) {
    if (!key.starts_with(only_prefix)) continue;
    bool skip = false;
    for (const auto& p : skip_prefixes) skip = skip || key.starts_with(p);
    if (skip) continue;
    const KeySpec& spec = *find_key(key);
    out.push_back(key + " (" + format_key(spec, before) + " -> " + format_key(spec, now) + ")");
  }
  return out;
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string s;
  for (size_t i = 0; i < items.size(); ++i) s += (i ? sep : "") + items[i];
  return s;
}

std::optional<RunConfig> stored_config(const CheckpointReader& r) {
  try {
    return load_config_string(r.meta().config_yaml, r.path() + ":/config", {});
  } catch (const UserError&) {
    return std::nullopt;  // written by a build with other keys; comparisons are then skipped
  }
}

}  // namespace

std::string checkpoint_file_name(int64_t step) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "step_%08lld.h5", (long long)step);
  return buf;
}

Checkpointer::Checkpointer(const RunConfig& cfg, Comm& world)
    : cfg_(cfg), world_(world), dir_(cfg.run.dir + "/checkpoints"), cfg_yaml_(to_yaml(cfg)) {
  if (world_.rank() != 0) return;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with(".") && name.find(".tmp.") != std::string::npos) fs::remove(e.path(), ec);
  }
}

std::vector<std::string> Checkpointer::candidates(const std::string& dir) {
  std::vector<std::string> out;
  const std::string latest = read_latest(dir);
  std::error_code ec;
  if (!latest.empty() && latest.find('/') == std::string::npos && fs::is_regular_file(dir + "/" + latest, ec))
    out.push_back(dir + "/" + latest);
  for (const auto& [step, name] : step_files(dir))
    if (name != latest) out.push_back(dir + "/" + name);
  return out;
}

void Checkpointer::write_on_root(const std::string& final_path, const TrainProgress& p,
                                 const std::vector<StateTensor>& tensors) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw Error("creating " + dir_ + ": " + ec.message());
  const std::string name = fs::path(final_path).filename().string();
  const std::string tmp = dir_ + "/." + name + ".tmp." + std::to_string(::getpid());
  const SaveFaults faults = save_faults(p.step);

  CheckpointMeta meta;
  meta.msatrain_version = MSATRAIN_VERSION;
  meta.created_utc = utc_now();
  meta.step = p.step;
  meta.samples_consumed = p.samples_consumed;
  meta.tokens_consumed = p.tokens_consumed;
  meta.optimizer_steps = p.optimizer_steps;
  meta.skipped_steps = p.skipped_steps;
  meta.skipped_in_a_row = p.skipped_in_a_row;
  meta.data_seed = uint64_t(cfg_.run.seed);
  meta.data_counter = p.samples_consumed;
  meta.dp = cfg_.parallel.dp;
  meta.cp = cfg_.parallel.cp;
  meta.ep = cfg_.parallel.ep;
  meta.world = world_.size();
  meta.config_yaml = cfg_yaml_;
  try {
    CheckpointWriter w(tmp);
    w.write_meta(meta);
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (i == tensors.size() / 2) {
        if (faults.sleep_s > 0) {
          std::printf("msatrain: MSATRAIN_INJECT_CKPT_SLEEP: sleeping %.1f s halfway through %s\n", faults.sleep_s,
                      tmp.c_str());
          std::fflush(stdout);
          std::this_thread::sleep_for(std::chrono::duration<double>(faults.sleep_s));
        }
        if (faults.enospc)
          throw Error("writing dataset " + tensors[i].name +
                      ": No space left on device (injected by MSATRAIN_INJECT_CKPT_ENOSPC)");
      }
      w.write_tensor(tensors[i].name, global_on_root(tensors[i]));
    }
    w.close();
    fsync_path(tmp, false);
    rename_or_throw(tmp, final_path);
    fsync_path(dir_, true);
  } catch (...) {
    fs::remove(tmp, ec);
    throw;
  }
  write_file_atomically(dir_, kLatest, name + "\n");
}

void Checkpointer::prune_on_root(int64_t newest_step) {
  if (cfg_.checkpoint.keep == 0) return;
  // Files beyond the step just saved belong to an abandoned continuation (a resume from an older file); they
  // are overwritten when the run gets there and never count against the newest ones.
  int64_t kept = 0;
  std::error_code ec;
  for (const auto& [step, name] : step_files(dir_)) {
    if (step > newest_step) continue;
    if (++kept > cfg_.checkpoint.keep) fs::remove(dir_ + "/" + name, ec);
  }
}

std::string Checkpointer::save(const TrainProgress& progress, const std::vector<StateTensor>& tensors) {
  const std::string path = dir_ + "/" + checkpoint_file_name(progress.step);
  int64_t ok = 1;
  std::string error;
  if (world_.rank() == 0) {
    const std::string previous = read_latest(dir_);
    try {
      const auto t0 = std::chrono::steady_clock::now();
      write_on_root(path, progress, tensors);
      const double secs = seconds_since(t0);
      prune_on_root(progress.step);
      std::error_code ec;
      std::printf("msatrain: saved checkpoint %s (%s in %.2f s)\n", path.c_str(), megabytes(fs::file_size(path, ec)).c_str(),
                  secs);
      std::fflush(stdout);
    } catch (const std::exception& e) {
      ok = 0;
      error = "cannot save checkpoint " + path + ": " + e.what() + "; " +
              (previous.empty() ? std::string("no earlier checkpoint exists")
                                : "the previous checkpoint " + dir_ + "/" + previous + " is intact");
    }
  }
  world_.broadcast(&ok, sizeof ok, 0);
  bcast_string(world_, error);
  if (!ok) throw UserError(error);
  return path;
}

Resumed Checkpointer::load_on_root(const std::string& path, const std::vector<StateTensor>& tensors) {
  const auto t0 = std::chrono::steady_clock::now();
  CheckpointReader r(path);
  const std::optional<RunConfig> before = stored_config(r);
  // A model of another shape is the usual cause of a mismatch: say which model keys changed.
  std::string hint;
  if (before) {
    if (auto changed = config_changes(*before, cfg_, "model.", {"model.init_from"}); !changed.empty())
      hint = " (this run's model config differs from the checkpoint's: " + join(changed, ", ") + ")";
  }
  std::map<std::string, const StateTensor*> wanted;
  for (const StateTensor& t : tensors) wanted[t.name] = &t;
  for (const StateTensor& t : tensors) {
    const TensorInfo* info = r.find(t.name);
    MSA_USER_CHECK(info != nullptr, "checkpoint " << path << ": has no tensor " << t.name << hint);
    MSA_USER_CHECK(info->shape == t.local->shape(), "checkpoint " << path << ": tensor " << t.name << " has shape "
                                                                  << shape_str(info->shape) << " in the file but "
                                                                  << shape_str(t.local->shape()) << " in this model"
                                                                  << hint);
  }
  for (const TensorInfo& info : r.tensors())
    MSA_USER_CHECK(wanted.count(info.name), "checkpoint " << path << ": holds tensor " << info.name
                                                          << ", which this model does not have" << hint);
  const CheckpointMeta& m = r.meta();
  MSA_USER_CHECK(m.step >= 0 && m.optimizer_steps >= 0 && m.optimizer_steps <= m.step && m.skipped_steps >= 0,
                 "checkpoint " << path << ": inconsistent counters (step " << m.step << ", optimizer_steps "
                               << m.optimizer_steps << ", skipped_steps " << m.skipped_steps << ")");
  for (const StateTensor& t : tensors) r.read(t.name, *t.local);

  Resumed res{path, {m.step, m.samples_consumed, m.tokens_consumed, m.optimizer_steps, m.skipped_steps,
                     m.skipped_in_a_row}};
  std::printf("msatrain: resuming from %s at step %lld (written by msatrain %s with dp=%lld cp=%lld ep=%lld on %lld "
              "rank(s); loaded in %.2f s)\n",
              path.c_str(), (long long)m.step, m.msatrain_version.c_str(), (long long)m.dp, (long long)m.cp,
              (long long)m.ep, (long long)m.world, seconds_since(t0));
  if (m.dp != cfg_.parallel.dp || m.cp != cfg_.parallel.cp || m.ep != cfg_.parallel.ep || m.world != world_.size())
    std::printf("msatrain: the parallel layout changes to dp=%lld cp=%lld ep=%lld on %d rank(s); the global batch and "
                "the data order stay the same\n",
                (long long)cfg_.parallel.dp, (long long)cfg_.parallel.cp, (long long)cfg_.parallel.ep, world_.size());
  if (before) {
    const auto changed = config_changes(*before, cfg_, "", {"parallel.", "model.init_from"});
    if (!changed.empty())
      std::fprintf(stderr, "msatrain: warning: resuming with settings that differ from the checkpoint's config: %s\n",
                   join(changed, ", ").c_str());
    if (before->run.seed != cfg_.run.seed || before->train.batch_tokens != cfg_.train.batch_tokens ||
        before->model.seq_len != cfg_.model.seq_len)
      std::fprintf(stderr, "msatrain: warning: run.seed, train.batch_tokens or model.seq_len changed: the data order "
                           "does not continue the checkpoint's\n");
  } else {
    std::fprintf(stderr, "msatrain: warning: %s: the stored config does not load in this build; not compared\n",
                 path.c_str());
  }
  std::fflush(stdout);
  std::fflush(stderr);
  return res;
}

std::optional<Resumed> Checkpointer::resume(const std::string& spec, const std::vector<StateTensor>& tensors) {
  int64_t status = 0;  // 0: nothing to resume (fresh start), 1: loaded, 2: error
  std::string text;    // the file loaded, or the error
  TrainProgress progress;
  if (world_.rank() == 0) {
    try {
      if (spec == "auto") {
        const std::vector<std::string> files = candidates(dir_);
        std::vector<std::string> problems;
        for (size_t i = 0; i < files.size() && status == 0; ++i) {
          try {
            Resumed r = load_on_root(files[i], tensors);
            status = 1;
            text = r.path;
            progress = r.progress;
          } catch (const UserError& e) {
            problems.push_back(e.what());
            std::fprintf(stderr, "msatrain: warning: --resume auto: %s; %s\n", e.what(),
                         i + 1 < files.size() ? "trying the next newest checkpoint" : "no older checkpoint left");
            std::fflush(stderr);
          }
        }
        if (files.empty()) {
          std::printf("msatrain: --resume auto: no checkpoint in %s; starting fresh\n", dir_.c_str());
          std::fflush(stdout);
        } else if (status == 0) {
          status = 2;
          text = "--resume auto: none of the " + std::to_string(files.size()) + " checkpoints in " + dir_ +
                 " loads:\n  " + join(problems, "\n  ");
        }
      } else {
        Resumed r = load_on_root(spec, tensors);
        status = 1;
        text = r.path;
        progress = r.progress;
      }
    } catch (const std::exception& e) {
      status = 2;
      text = e.what();
    }
  }
  world_.broadcast(&status, sizeof status, 0);
  bcast_string(world_, text);
  if (status == 2) throw UserError(text);
  if (status == 0) return std::nullopt;
  bcast_progress(world_, progress);
  scatter_from_root(world_, tensors);
  return Resumed{text, progress};
}

std::vector<std::string> init_params_from(const std::string& path, const ParamList& params, Comm& world) {
  int64_t status = 1;
  std::string error;
  std::vector<uint8_t> loaded(params.size(), 0);
  if (world.rank() == 0) {
    try {
      const auto t0 = std::chrono::steady_clock::now();
      CheckpointReader r(path);
      std::vector<std::string> names_loaded, names_fresh, names_unused;
      std::map<std::string, bool> used;
      for (const TensorInfo& t : r.tensors())
        if (t.name.starts_with("params/")) used[t.name] = false;
      for (const Param* p : params) {
        const TensorInfo* info = r.find("params/" + p->name);
        if (info == nullptr) continue;
        MSA_USER_CHECK(info->shape == p->master.shape(),
                       "model.init_from: checkpoint " << path << ": tensor params/" << p->name << " has shape "
                                                      << shape_str(info->shape) << " in the file but "
                                                      << shape_str(p->master.shape()) << " in this model");
      }
      for (size_t i = 0; i < params.size(); ++i) {
        const std::string name = "params/" + params[i]->name;
        if (r.find(name) == nullptr) {
          names_fresh.push_back(params[i]->name);
          continue;
        }
        r.read(name, params[i]->master);
        loaded[i] = 1;
        used[name] = true;
        names_loaded.push_back(params[i]->name);
      }
      for (const auto& [name, was_used] : used)
        if (!was_used) names_unused.push_back(name.substr(7));
      std::printf("msatrain: init_from %s (step %lld): loaded %zu of %zu parameter tensors in %.2f s; optimizer state "
                  "and data order start fresh\n",
                  path.c_str(), (long long)r.meta().step, names_loaded.size(), params.size(), seconds_since(t0));
      std::printf("  loaded: %s\n", names_loaded.empty() ? "(none)" : join(names_loaded, ", ").c_str());
      std::printf("  initialised fresh: %s\n", names_fresh.empty() ? "(none)" : join(names_fresh, ", ").c_str());
      if (!names_unused.empty())
        std::printf("  in the file but not in this model (not used): %s\n", join(names_unused, ", ").c_str());
      std::fflush(stdout);
    } catch (const UserError& e) {
      status = 0;
      error = e.what();
      if (!error.starts_with("model.init_from")) error = "model.init_from: " + error;
    } catch (const std::exception& e) {
      status = 0;
      error = std::string("model.init_from: ") + e.what();
    }
  }
  world.broadcast(&status, sizeof status, 0);
  bcast_string(world, error);
  if (!status) throw UserError(error);
  world.broadcast(loaded.data(), int64_t(loaded.size()), 0);
  std::vector<std::string> names;
  for (size_t i = 0; i < params.size(); ++i) {
    if (!loaded[i]) continue;
    if (world.size() > 1) bcast_bytes(world, params[i]->master.raw(), int64_t(params[i]->master.nbytes()));
    params[i]->sync_value();
    names.push_back(params[i]->name);
  }
  return names;
}

void trim_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return;
  std::stringstream all;
  all << in.rdbuf();
  in.close();
  const std::string text = all.str();
  std::string kept;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    if (end == std::string::npos) break;  // a torn last line (the writer died mid-line)
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    const std::string key = "\"step\": ";
    const size_t at = line.find(key);
    if (at == std::string::npos) continue;
    if (std::atoll(line.c_str() + at + key.size()) <= step) kept += line + "\n";
  }
  if (kept == text) return;
  const fs::path p(path);
  write_file_atomically(p.parent_path().empty() ? "." : p.parent_path().string(), p.filename().string(), kept);
}

}  // namespace msa
