// `msatrain ckpt inspect PATH`: what a checkpoint holds (step, layout, config summary, and every tensor with
// its shape and checksums), without MPI or a model.
#pragma once
#include <string>
#include <vector>

namespace msa {

// args after "ckpt". Returns the exit code: 0, or 2 for bad arguments, an unreadable file or a tensor whose
// CRC-32 does not match (the report still lists every tensor).
int run_ckpt_command(const std::vector<std::string>& args);

}  // namespace msa
