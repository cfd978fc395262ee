#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/op_profile.h"
#include "kernels/cuda/runtime.h"

namespace msa::cuda {
namespace {

struct Record {
  std::string name;
  cudaEvent_t start, stop;
};

// The records of this process (profiling is a diagnostic mode of one process, like the CUDA context).
using Totals = std::map<std::string, std::pair<int64_t, double>>;  // name -> (calls, ms)

struct Profile {
  bool enabled = false;
  std::vector<Record> records;  // not yet folded into totals
  Totals totals;
  int open = 0;  // scopes whose stop event is not recorded yet
  Profile() {
    const char* env = std::getenv("MSATRAIN_PROFILE_OPS");
    enabled = env && env[0] && env[0] != '0';
  }
  // Moves the records into the totals (waits for the stream), so that a long profiled run keeps a bounded
  // number of events. Only while no scope is open: open scopes hold indices into records.
  void fold() {
    CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
    for (Record& r : records) {
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, r.start, r.stop));
      auto& e = totals[r.name];
      e.first += 1;
      e.second += ms;
      cudaEventDestroy(r.start);
      cudaEventDestroy(r.stop);
    }
    records.clear();
  }
};
Profile& profile() {
  static Profile* p = new Profile();
  return *p;
}

}  // namespace

bool profiling_enabled() { return profile().enabled; }

OpScope::OpScope(const char* name) : OpScope(std::string(name)) {}

OpScope::OpScope(const std::string& name) {
  Profile& p = profile();
  if (!p.enabled) return;
  if (p.open == 0 && p.records.size() >= 4096) p.fold();
  Record r{name, nullptr, nullptr};
  CUDA_CHECK(cudaEventCreate(&r.start));
  CUDA_CHECK(cudaEventCreate(&r.stop));
  CUDA_CHECK(cudaEventRecord(r.start, compute_stream()));
  slot_ = int(p.records.size());
  p.records.push_back(r);
  ++p.open;
}

OpScope::~OpScope() {
  if (slot_ < 0) return;
  Profile& p = profile();
  cudaEventRecord(p.records[size_t(slot_)].stop, compute_stream());
  --p.open;
}

void profile_reset() {
  Profile& p = profile();
  if (!p.enabled) return;
  p.fold();
  p.totals.clear();
}

std::string profile_report() {
  Profile& p = profile();
  if (!p.enabled) return "";
  p.fold();
  if (p.totals.empty()) return "";
  double total = 0;
  for (const auto& [name, e] : p.totals) total += e.second;
  const Totals by_name = std::move(p.totals);
  p.totals.clear();
  std::vector<std::pair<std::string, std::pair<int64_t, double>>> rows(by_name.begin(), by_name.end());
  std::sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.second.second > b.second.second; });
  std::string out = "GPU time by op (MSATRAIN_PROFILE_OPS):\n";
  char line[256];
  std::snprintf(line, sizeof line, "  %-44s %8s %10s %7s\n", "op", "calls", "ms", "share");
  out += line;
  for (auto& [name, e] : rows) {
    std::snprintf(line, sizeof line, "  %-44s %8lld %10.2f %6.1f%%\n", name.c_str(), (long long)e.first, e.second,
                  100.0 * e.second / total);
    out += line;
  }
  std::snprintf(line, sizeof line, "  %-44s %8s %10.2f\n", "total", "", total);
  return out + line;
}

}  // namespace msa::cuda
