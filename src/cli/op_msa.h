// `msatrain op msa --in IN.h5 --out OUT.h5`: one MSA attention layer (spec/msa.md), forward and backward in
// float64 on the CPU, run by the training code itself (AttentionMSA), from inputs and weights in an HDF5 file.
// External references (NumPy, PyTorch) check the layer against its outputs; docs/op_msa.md is the schema.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace msa {

// What one op_msa call computed (its file holds everything; this is for the summary line).
struct OpMsaSummary {
  int64_t batch = 0, seq = 0;
  std::string phase;
  double kl_loss = 0, kl_objective = 0, index_recall = 0, selected_share = 0;
};

// Reads in_path, runs the layer, writes out_path atomically (temporary file, fsync, rename). Bad input (a
// missing file, attribute or dataset, a wrong shape or type, a config the trainer would reject) throws
// UserError naming the file and the item; nothing is written then.
OpMsaSummary op_msa(const std::string& in_path, const std::string& out_path);

// `msatrain op msa ARGS`: parses --in/--out (and --help), runs op_msa, prints a summary line or the error.
// Returns the exit code: 0, 2 for bad input, 1 for an internal error.
int run_op_msa(const std::vector<std::string>& args);

// `msatrain op ARGS`: the op subcommands (only `msa` so far).
int run_op_command(const std::vector<std::string>& args);

}  // namespace msa
