#include "cli/collective.h"

#include <cstdio>

#include "core/error.h"

namespace msa {

void run_collectively(Comm& comm, const std::function<void()>& body) {
  std::string message;
  int code = 0;
  try {
    body();
  } catch (const UserError& e) {
    message = e.what();
    code = 2;
  } catch (const std::exception& e) {
    message = e.what();
    code = 1;
  }
  const int64_t first_bad = comm.allreduce_min(code ? comm.rank() : comm.size());
  if (first_bad == comm.size()) return;
  if (comm.rank() == first_bad) {
    if (comm.size() > 1 && comm.rank() != 0)
      std::fprintf(stderr, "msatrain: error (rank %d): %s\n", comm.rank(), message.c_str());
    else
      std::fprintf(stderr, "msatrain: error: %s\n", message.c_str());
    std::fflush(stderr);
  }
  const int64_t worst = -comm.allreduce_min(-int64_t(code));
  throw CollectiveFailure{int(worst == 1 ? 1 : 2)};
}

int fail_fast(Comm& comm, const std::exception& e) {
  const bool user = dynamic_cast<const UserError*>(&e) != nullptr;
  std::fprintf(stderr, "msatrain: error (rank %d of %d): %s\n", comm.rank(), comm.size(), e.what());
  std::fflush(stderr);
  const int code = user ? 2 : 1;
  if (comm.size() > 1) comm.abort(code);
  return code;
}

}  // namespace msa
