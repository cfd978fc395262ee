// `msatrain data prepare`: tokenize a corpus of documents into train/val token shards plus meta.yaml, the
// folder that TokenDataset reads (format: data/FORMAT.md).
#pragma once
#include <string>
#include <vector>

namespace msa {

// args: the words after `msatrain data prepare` (a leading "prepare" is skipped, so the words after
// `msatrain data` work too):
//   --input PATH [--input PATH ...] --out DIR --tokenizer bytes|gpt2 [--vocab FILE] [--val-fraction F]
//   [--seed N] [--shard-tokens N] [--ext .txt] | --help
// Prints a summary and returns 0; bad arguments or inputs throw UserError.
int run_data_prepare(const std::vector<std::string>& args);

}  // namespace msa
