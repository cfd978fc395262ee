// Comm over MPI. Errors are fatal: MPI's default handler aborts the job, which is what we want.
#include <mpi.h>

#include <limits>
#include <cstdint>
#include <vector>

#include "comm/comm.h"

namespace msa {
namespace {

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i32: return MPI_INT32_T;
    default: MSA_CHECK(false, "no MPI type for " << dtype_name(t));
  }
  return MPI_DATATYPE_NULL;
}

// For moving values without arithmetic: any dtype, bf16 included, as its bit pattern.
MPI_Datatype move_type(DType t) { return t == DType::bf16 ? MPI_UINT16_T : mpi_type(t); }

// MPI counts are int: larger messages need chunking, which no caller needs yet.
int count(int64_t n) {
  MSA_CHECK(n <= INT32_MAX, "MPI message of " << n << " elements exceeds the int count");
  return static_cast<int>(n);
}

class MpiComm final : public Comm {
 public:
  MpiComm(MPI_Comm c, bool owned) : comm_(c), owned_(owned) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiComm() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned_ && !finalized) MPI_Comm_free(&comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void allreduce_sum(Tensor& t) override {
    if (size_ == 1) return;
    if (t.device() == Device::cpu) {
      MPI_Allreduce(MPI_IN_PLACE, t.raw(), static_cast<int>(t.numel()), mpi_type(t.dtype()), MPI_SUM, comm_);
      return;
    }
    // Host-staged path for device tensors: ranks that share one GPU cannot form an NCCL communicator.
    if (staging_.numel() < t.numel() || staging_.dtype() != t.dtype())
      staging_ = Tensor::empty({t.numel()}, t.dtype());
    Tensor host = staging_.slice(0, t.numel()).view(t.shape());
    host.copy_from(t);
    MPI_Allreduce(MPI_IN_PLACE, host.raw(), static_cast<int>(t.numel()), mpi_type(t.dtype()), MPI_SUM, comm_);
    t.copy_from(host);
  }
  void allreduce_sum(double* values, int64_t n) override {
    if (size_ == 1) return;
    MPI_Allreduce(MPI_IN_PLACE, values, static_cast<int>(n), MPI_DOUBLE, MPI_SUM, comm_);
  }
  double allreduce_max(double value) override {
    MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_DOUBLE, MPI_MAX, comm_);
    return value;
  }
  int64_t allreduce_min(int64_t value) override {
    MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_INT64_T, MPI_MIN, comm_);
    return value;
  }
  void broadcast(void* data, int64_t bytes, int root) override {
    MPI_Bcast(data, static_cast<int>(bytes), MPI_BYTE, root, comm_);
  }
  void barrier() override { MPI_Barrier(comm_); }
  std::unique_ptr<Comm> split(int color, int key) override {
    MPI_Comm sub;
    MPI_Comm_split(comm_, color, key, &sub);
    return std::make_unique<MpiComm>(sub, true);
  }
  void alltoall(const int64_t* send, int64_t* recv, int64_t n) override {
    MSA_CHECK(n <= std::numeric_limits<int>::max(), "alltoall of " << n << " values per rank");
    MPI_Alltoall(send, static_cast<int>(n), MPI_INT64_T, recv, static_cast<int>(n), MPI_INT64_T, comm_);
  }
  void alltoallv(const void* send, const std::vector<int64_t>& send_counts, void* recv,
                 const std::vector<int64_t>& recv_counts, DType dtype) override {
    MSA_CHECK(int64_t(send_counts.size()) == size_ && int64_t(recv_counts.size()) == size_,
              "alltoallv needs one count per rank");
    // MPI counts and displacements are int: the element counts of one exchange must fit.
    std::vector<int> sc(size_), sd(size_), rc(size_), rd(size_);
    int64_t so = 0, ro = 0;
    for (int p = 0; p < size_; ++p) {
      MSA_CHECK(so + send_counts[p] <= std::numeric_limits<int>::max() &&
                    ro + recv_counts[p] <= std::numeric_limits<int>::max(),
                "alltoallv of more than 2^31 elements");
      sc[p] = int(send_counts[p]), sd[p] = int(so), rc[p] = int(recv_counts[p]), rd[p] = int(ro);
      so += send_counts[p], ro += recv_counts[p];
    }
    const MPI_Datatype t = move_type(dtype);
    MPI_Alltoallv(send, sc.data(), sd.data(), t, recv, rc.data(), rd.data(), t, comm_);
  }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::abort();  // MPI_Abort does not return; keep the compiler and the contract honest
  }
  void allgather(const Tensor& send, Tensor& recv) override {
    MSA_CHECK(send.device() == Device::cpu && recv.device() == Device::cpu && send.dtype() == recv.dtype() &&
                  recv.numel() == send.numel() * size_,
              "allgather of " << send.numel() << " elements into " << recv.numel() << " over " << size_ << " ranks");
    // As bytes: a gather moves values without arithmetic, so any dtype (bf16 included) goes.
    MPI_Allgather(send.raw(), count(int64_t(send.nbytes())), MPI_BYTE, recv.raw(), count(int64_t(send.nbytes())),
                  MPI_BYTE, comm_);
  }
  void reduce_scatter_sum(const Tensor& send, Tensor& recv) override {
    MSA_CHECK(send.device() == Device::cpu && recv.device() == Device::cpu && send.dtype() == recv.dtype() &&
                  send.numel() == recv.numel() * size_,
              "reduce_scatter of " << send.numel() << " elements into " << recv.numel() << " over " << size_
                                   << " ranks");
    MPI_Reduce_scatter_block(send.raw(), recv.raw(), count(recv.numel()), mpi_type(send.dtype()), MPI_SUM, comm_);
  }

 private:
  MPI_Comm comm_;
  bool owned_;
  Tensor staging_;  // host buffer for device tensors, grown to the largest one
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Comm> make_mpi_world() { return std::make_unique<MpiComm>(MPI_COMM_WORLD, false); }

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) MPI_Init(argc, argv);
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

}  // namespace msa
