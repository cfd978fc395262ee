#include "comm/process_grid.h"

namespace msa {

ProcessGrid::ProcessGrid(Comm& world, int dp, int cp, int ep)
    : world_(world), dp_size_(dp), cp_size_(cp), ep_size_(ep) {
  const int r = world.rank();
  MSA_USER_CHECK(dp >= 1 && cp >= 1 && ep >= 1 && dp * cp == world.size() && world.size() % ep == 0,
                 "parallel layout dp=" << dp << " cp=" << cp << " ep=" << ep << " does not fit " << world.size()
                                       << " ranks (dp x cp must equal the ranks, ep must divide them)");
  // Every rank calls every split in the same order (collectives).
  dp_ = world.split(/*color=*/r % cp, /*key=*/r);
  cp_ = world.split(r / cp, r);
  ep_ = world.split(r / ep, r);
  ep_dp_ = world.split(r % ep, r);
}

}  // namespace msa
