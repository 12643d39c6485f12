// NCCL for GPU ranks, loaded at run time with dlopen ($GPTUNE_NCCL, else libnccl.so.2): the addon
// builds where NCCL is absent (no headers, no library) and loads where it is. Collectives run on a
// stream of their own, ordered after the backend's stream and waited for against a deadline, so a
// rank that died or hangs ends in a gptune::Error (the communicator aborted), never in a hang.
// Built with the CUDA backend only (native/cuda/nccl.cu). Every function throws gptune::Error.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace gptune::cuda::nccl {

constexpr size_t kUniqueIdBytes = 128;  // sizeof(ncclUniqueId)

// Loads NCCL if needed; returns "" when it is usable, else one line: what was tried and how to get it.
std::string unavailable_reason();
int version();  // e.g. 22105 for 2.21.5; throws when NCCL is unavailable

// The id rank 0 makes and every rank receives (over MPI) before init_rank.
std::vector<uint8_t> unique_id();
// One communicator per process (mpirun): this rank of nranks, on the current CUDA device.
void init_rank(const uint8_t* id, int nranks, int rank);
// One process driving several GPUs (ncclCommInitAll): communicator i runs on devices[i].
void init_all(const std::vector<int>& devices);
int communicators();
// Bounds every later wait for a collective, in seconds.
void set_timeout(double seconds);

// In place on device memory of communicator `comm` (0 under mpirun): x (n floats) becomes the sum over ranks.
void all_reduce_sum(int comm, float* x, size_t n);
// The overlapped all-reduce: all_reduce_sum's collective issued on NCCL's stream after the backend's work so
// far (an event recorded now), without waiting: the backward goes on while NCCL reduces x (a region of the
// gradients whose backward is enqueued). wait_async waits for every one issued since the last wait against
// the timeout (aborting the communicator as all_reduce_sum does), orders the backend's later work after
// them, and returns how many there were.
void all_reduce_sum_async(int comm, float* x, size_t n);
int wait_async(int comm);
// shard (n/nranks floats) receives the sum over ranks of this rank's n/nranks part of full.
void reduce_scatter_sum(int comm, const float* full, float* shard, size_t shard_n);
// In place: this rank's shard of full (at rank*shard_n) is copied to every rank.
void all_gather(int comm, float* full, size_t shard_n);
// One process driving several GPUs (init_all): xs[i] (n floats on communicator i's device) becomes, in
// place, the sum over all communicators. Every all-reduce is issued inside one ncclGroupStart/ncclGroupEnd
// (issuing communicator 0's and waiting on it before communicator 1's would deadlock), each ordered after
// its device's backend stream; then all are waited for against one deadline (every communicator aborted
// on a timeout). xs.size() must equal communicators(); a pointer on another device is refused.
void all_reduce_sum_all(const std::vector<float*>& xs, size_t n);
// Releases every communicator (ncclCommDestroy).
void destroy();

}  // namespace gptune::cuda::nccl
