// msatrain: one binary, one subcommand per job. See `msatrain --help`.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "checkpoint/inspect.h"
#include "cli/collective.h"
#include "cli/op_msa.h"
#include "comm/comm.h"
#include "config/load.h"
#include "core/device_info.h"
#include "core/error.h"
#include "data/prepare.h"
#include "train/trainer.h"

namespace msa {
namespace {

constexpr const char* kUsage =
    "msatrain " MSATRAIN_VERSION " - a C++/CUDA trainer for long-context language models with MiniMax Sparse "
    "Attention\n"
    "\n"
    "usage: msatrain <command> [options]      (launch with mpirun for several ranks)\n"
    "\n"
    "commands:\n"
    "  train  --config FILE [--set key.path=value ...] [--resume auto|PATH]   train a model; writes run.dir\n"
    "  ckpt   inspect PATH   show a checkpoint's step, layout, config and tensors with checksums\n"
    "  data   prepare --input PATH --out DIR --tokenizer bytes|gpt2 ...   tokenize a corpus into shards\n"
    "  op     msa --in IN.h5 --out OUT.h5   run one MSA layer from an HDF5 file (external reference checks)\n"
    "\n"
    "`msatrain <command> --help` describes each command.\n";

constexpr const char* kTrainUsage =
    "usage: msatrain train --config FILE [--set key.path=value ...] [--resume auto|PATH]\n"
    "\n"
    "Trains the model described by FILE (YAML; see configs/). Each --set overrides one key, e.g.\n"
    "  --set train.steps=100 --set model.d_model=128\n"
    "Writes run.dir/config.yaml (the resolved config), run.dir/metrics.jsonl and checkpoints in\n"
    "run.dir/checkpoints (every checkpoint.every steps, at the end, and on SIGTERM, SIGINT or SIGUSR1 before\n"
    "exiting; under mpirun send SIGUSR1 to mpirun, which forwards it to every rank).\n"
    "--resume auto continues from the latest checkpoint of run.dir that loads (fresh when there is none);\n"
    "--resume PATH from that checkpoint file. Resuming keeps the data order, LR schedule, optimizer state and\n"
    "metrics.jsonl; the parallel layout may differ from the one that saved.\n"
    "Run on several ranks with: mpirun -np N msatrain train ... (parallel.dp x parallel.cp must equal N).\n";

struct TrainArgs {
  std::string config;
  std::vector<ConfigOverride> overrides;
  std::string resume;  // "", "auto" or a checkpoint file
};

TrainArgs parse_train_args(const std::vector<std::string>& args) {
  TrainArgs a;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& s = args[i];
    auto value = [&](const char* flag) {
      MSA_USER_CHECK(i + 1 < args.size(), flag << " needs a value (see msatrain train --help)");
      return args[++i];
    };
    if (s == "--config") a.config = value("--config");
    else if (s.rfind("--config=", 0) == 0) a.config = s.substr(9);
    else if (s == "--set") a.overrides.push_back(parse_override(value("--set")));
    else if (s.rfind("--set=", 0) == 0) a.overrides.push_back(parse_override(s.substr(6)));
    else if (s == "--resume") a.resume = value("--resume");
    else if (s.rfind("--resume=", 0) == 0) a.resume = s.substr(9);
    else MSA_USER_CHECK(false, "unknown argument '" << s << "' for msatrain train (see msatrain train --help)");
  }
  MSA_USER_CHECK(!a.config.empty(), "msatrain train needs --config FILE (see msatrain train --help)");
  return a;
}

bool wants_help(const std::vector<std::string>& args) {
  for (const auto& a : args)
    if (a == "--help" || a == "-h") return true;
  return false;
}

int cmd_train(const std::vector<std::string>& args, Comm& world) {
  if (wants_help(args)) {
    if (world.rank() == 0) std::fputs(kTrainUsage, stdout);
    return 0;
  }
  std::unique_ptr<Trainer> trainer;
  try {
    run_collectively(world, [&] {
      TrainArgs a = parse_train_args(args);
      RunConfig cfg = load_config(a.config, a.overrides);
      trainer = std::make_unique<Trainer>(cfg, world, a.resume);
    });
  } catch (const CollectiveFailure& f) {
    return f.exit_code;
  }
  try {
    trainer->run();
  } catch (const std::exception& e) {
    return fail_fast(world, e);
  }
  if (world.rank() == 0 && trainer->stop_signal() == 0) std::printf("msatrain: done\n");
  return 0;
}

int main_impl(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(kUsage, stdout);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version") {
    std::printf("msatrain %s\nCUDA: %s\n", MSATRAIN_VERSION, cuda_device_summary().c_str());
    return 0;
  }
  const std::string cmd = args[0];
  args.erase(args.begin());
  if (cmd == "ckpt") return run_ckpt_command(args);
  if (cmd == "op") return run_op_command(args);
  if (cmd == "data") {
    try {
      MSA_USER_CHECK(!args.empty() && (args[0] == "prepare" || wants_help(args)),
                     "usage: msatrain data prepare --input PATH --out DIR --tokenizer bytes|gpt2 ... (see --help)");
      if (args[0] != "prepare") {
        std::fputs("usage: msatrain data prepare --help\n", stdout);
        return 0;
      }
      args.erase(args.begin());
      return run_data_prepare(args);
    } catch (const UserError& e) {
      std::fprintf(stderr, "msatrain: error: %s\n", e.what());
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "msatrain: internal error: %s\n", e.what());
      return 1;
    }
  }
  if (cmd == "train") {
    MpiSession mpi(&argc, &argv);
    auto world = make_mpi_world();
    return cmd_train(args, *world);
  }
  std::fprintf(stderr, "msatrain: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
  return 2;
}

}  // namespace
}  // namespace msa

int main(int argc, char** argv) { return msa::main_impl(argc, argv); }
