// Saving and resuming a run: the files in run.dir/checkpoints and the protocol between ranks.
//
//   run.dir/checkpoints/step_00000100.h5   one complete checkpoint per saved step (format.h)
//   run.dir/checkpoints/latest             the file name of the newest complete checkpoint, one line
//
// A save writes .step_00000100.h5.tmp.<pid>, fsyncs it, renames it to its name, fsyncs the folder, then
// replaces `latest` the same way (temporary file, fsync, rename) and deletes the oldest files beyond
// checkpoint.keep. A crash at any moment leaves `latest` naming a complete file; leftovers of an interrupted
// save are temporary files, removed by the next run.
//
// Rank 0 does all file work; the other ranks learn the outcome by broadcast, so every rank returns the same
// result or throws the same UserError (no rank is left waiting in a collective).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/format.h"
#include "comm/comm.h"
#include "config/config.h"
#include "model/param.h"

namespace msa {

// How a rank's tensor maps onto the full global tensor that the file stores. Data parallel replicates the
// whole state on every rank, so rank 0 writes its copy and a load is read by rank 0 and broadcast. Expert
// parallel holds each routed expert's tensors whole on the ranks r with r % ep == owner (see ProcessGrid):
// a save sends it from world rank `owner` (which holds it) to rank 0, a load broadcasts it and the holders
// keep it. The file keeps global tensors, which is what lets a checkpoint load under another layout.
enum class Sharding { replicated, expert };

struct StateTensor {
  std::string name;  // in the file: "params/<param>", "optim/m/<param>", "optim/v/<param>"
  Tensor* local;     // this rank's copy; loads write into it in place. nullptr: an expert tensor held elsewhere
  Sharding sharding = Sharding::replicated;
  int owner = 0;     // Sharding::expert: the ep index of the ranks holding it
  Shape shape = {};  // Sharding::expert: the global shape (needed where local is nullptr)
  DType dtype = DType::f32;
};

// The training state besides the tensors (see CheckpointMeta for the meaning of each field).
struct TrainProgress {
  int64_t step = 0;
  int64_t samples_consumed = 0;
  int64_t tokens_consumed = 0;
  int64_t optimizer_steps = 0;
  int64_t skipped_steps = 0;
  int64_t skipped_in_a_row = 0;
};

struct Resumed {
  std::string path;
  TrainProgress progress;
};

class Checkpointer {
 public:
  // Rank 0 removes temporary files that an interrupted save left in the checkpoint folder.
  Checkpointer(const RunConfig& cfg, Comm& world);
  const std::string& dir() const { return dir_; }

  // Collective. Writes step_<progress.step>.h5 atomically, points `latest` at it and prunes old files.
  // Returns the file's path; a failure (disk full, ...) throws UserError on every rank, naming the file and
  // the reason, and leaves the previous checkpoint as it was.
  std::string save(const TrainProgress& progress, const std::vector<StateTensor>& tensors);

  // Collective. spec is "auto" (the newest checkpoint of run.dir that loads, falling back past broken ones
  // with a warning; nullopt when there is none) or a file path (that file or an error). Loads every tensor
  // into its StateTensor, which must match the file's names and shapes exactly.
  std::optional<Resumed> resume(const std::string& spec, const std::vector<StateTensor>& tensors);

  // The checkpoint files of a folder, newest first: the one `latest` names, then the others by step.
  static std::vector<std::string> candidates(const std::string& dir);

 private:
  RunConfig cfg_;
  Comm& world_;
  std::string dir_;
  std::string cfg_yaml_;
  std::vector<std::string> warnings_;
  // staged[i]: rank 0's copy of tensors[i] where that rank does not hold it (expert parallel).
  Resumed load_on_root(const std::string& path, const std::vector<StateTensor>& tensors, std::vector<Tensor>& staged);
  void write_on_root(const std::string& final_path, const TrainProgress& p, const std::vector<StateTensor>& tensors,
                     const std::vector<Tensor>& staged);
  void prune_on_root(int64_t newest_step);
};

// init_from: copies into `params` every tensor that the checkpoint at `path` holds under the same name and
// shape; the others keep their fresh initialisation. A same-named tensor of another shape is a UserError
// naming it. Collective (rank 0 reads and broadcasts); rank 0 prints which tensors were loaded, which were
// initialised fresh and which of the file's were not used. Returns the names loaded.
std::vector<std::string> init_params_from(const std::string& path, const ParamList& params, Comm& world);

// Drops the lines of a metrics.jsonl whose step is beyond `step` (and any torn last line), atomically, so
// that a resumed run appends without duplicated or missing steps. A missing file is left missing.
void trim_metrics(const std::string& path, int64_t step);

// "step_00000100.h5"
std::string checkpoint_file_name(int64_t step);

}  // namespace msa
