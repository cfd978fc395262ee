// The defaults of Comm's exchange collectives: what a one-rank communicator does (a copy).
#include "comm/comm.h"

#include <algorithm>
#include <cstring>

namespace msa {

void Comm::alltoall(const int64_t* send, int64_t* recv, int64_t n) {
  MSA_CHECK(size() == 1, "this communicator has no alltoall");
  std::copy(send, send + n, recv);
}

void Comm::alltoallv(const void* send, const std::vector<int64_t>& send_counts, void* recv,
                     const std::vector<int64_t>& recv_counts, DType dtype) {
  MSA_CHECK(size() == 1 && send_counts.size() == 1 && recv_counts.size() == 1 && send_counts[0] == recv_counts[0],
            "this communicator has no alltoallv");
  if (send_counts[0] > 0) std::memcpy(recv, send, size_t(send_counts[0]) * dtype_size(dtype));
}

}  // namespace msa
