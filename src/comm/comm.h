// Communication between ranks. One interface, implemented over MPI for host tensors (and, with the CUDA
// backend, over NCCL for device tensors). Collectives are called by every rank of the communicator in the
// same order. abort() ends every rank of the job: a fatal error on one rank must never leave others hanging.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace msa {

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual void allreduce_sum(Tensor& t) = 0;                 // in place, f32/f64
  virtual void allreduce_sum(double* values, int64_t n) = 0;  // in place
  virtual double allreduce_max(double value) = 0;
  virtual int64_t allreduce_min(int64_t value) = 0;
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // A communicator over the ranks with the same color, ordered by key (e.g. the data-parallel group).
  virtual std::unique_ptr<Comm> split(int color, int key) = 0;
  [[noreturn]] virtual void abort(int code) = 0;

  // All-to-all of one int64 block per rank: send holds size() blocks of n values, block p for rank p; recv
  // (size() * n) gets block q from rank q. Used to exchange the counts before an alltoallv. The defaults serve
  // a one-rank communicator (a copy).
  virtual void alltoall(const int64_t* send, int64_t* recv, int64_t n);
  // All-to-all with per-rank counts (elements of dtype): send holds send_counts[p] elements for rank p, rank by
  // rank; recv gets recv_counts[q] elements from rank q, rank by rank. The counts must agree pairwise (rank q's
  // send_counts[p] == rank p's recv_counts[q]): exchange them with alltoall first.
  virtual void alltoallv(const void* send, const std::vector<int64_t>& send_counts, void* recv,
                         const std::vector<int64_t>& recv_counts, DType dtype);
  // Context parallel (model/context_parallel.h). Both take flat host tensors of one dtype; the defaults serve a
  // one-rank communicator (a copy), so that test doubles need not implement them.
  // recv (size * n) = every rank's send (n), in rank order.
  virtual void allgather(const Tensor& send, Tensor& recv) {
    MSA_CHECK(size() == 1 && recv.numel() == send.numel(),
              "allgather over " << size() << " ranks: this communicator serves one rank only");
    recv.copy_from(send);
  }
  // recv (n) = the sum over ranks of block `rank()` (elements [rank n, (rank+1) n)) of their send (size * n).
  virtual void reduce_scatter_sum(const Tensor& send, Tensor& recv) {
    MSA_CHECK(size() == 1 && recv.numel() == send.numel(),
              "reduce_scatter_sum over " << size() << " ranks: this communicator serves one rank only");
    recv.copy_from(send);
  }
};

// The world communicator over MPI_COMM_WORLD. MPI must be initialised (see MpiSession).
std::unique_ptr<Comm> make_mpi_world();

// Initialises MPI for the process's lifetime and finalises it at exit (unless the job was aborted).
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

}  // namespace msa
