#include <cstdio>
#include <cstring>

#include <cuda_runtime.h>
#include <nccl.h>

#include "comm_nccl.h"

extern "C" {
#include "util.h"
}

static_assert(COMM_NCCL_ID_BYTES == NCCL_UNIQUE_ID_BYTES, "ncclUniqueId size");

static ncclComm_t g_comm = nullptr;
static cudaStream_t g_stream = nullptr;
static cudaEvent_t g_grads_ready = nullptr, g_reduced = nullptr;

static void nccl_check(ncclResult_t r, const char *what, size_t n) {
  if (r == ncclSuccess) return;
  die("nccl: %s (%zu floats, rank %d of %d): %s%s%s", what, n, g_rank, g_size,
      ncclGetErrorString(r), ncclGetLastError(g_comm) ? "; " : "",
      ncclGetLastError(g_comm) ? ncclGetLastError(g_comm) : "");
}

static void cuda_check(cudaError_t e, const char *what) {
  if (e == cudaSuccess) return;
  die("cuda: %s (NCCL all-reduce, rank %d of %d): %s", what, g_rank, g_size, cudaGetErrorString(e));
}

extern "C" void comm_nccl_unique_id(void *id) {
  ncclUniqueId u;
  nccl_check(ncclGetUniqueId(&u), "ncclGetUniqueId", 0);
  memcpy(id, &u, sizeof u);
}

extern "C" void comm_nccl_start(const void *id, int rank, int size) {
  if (g_comm) return;
  ncclUniqueId u;
  memcpy(&u, id, sizeof u);
  nccl_check(ncclCommInitRank(&g_comm, size, u, rank), "ncclCommInitRank", 0);
  /* Non-blocking: the legacy default stream must not serialise with it
   * implicitly; the events below order the two explicitly. */
  cuda_check(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking), "cudaStreamCreate");
  cuda_check(cudaEventCreateWithFlags(&g_grads_ready, cudaEventDisableTiming), "cudaEventCreate");
  cuda_check(cudaEventCreateWithFlags(&g_reduced, cudaEventDisableTiming), "cudaEventCreate");
}

extern "C" void comm_nccl_allreduce_start_f32(float *buf, size_t n) {
  if (!g_comm) die("nccl: all-reduce before comm_nccl_start (rank %d)", g_rank);
  cuda_check(cudaEventRecord(g_grads_ready, 0), "cudaEventRecord");
  cuda_check(cudaStreamWaitEvent(g_stream, g_grads_ready, 0), "cudaStreamWaitEvent");
  nccl_check(ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, g_comm, g_stream), "ncclAllReduce", n);
}

extern "C" void comm_nccl_allreduce_wait(void) {
  if (!g_comm) return;
  cuda_check(cudaEventRecord(g_reduced, g_stream), "cudaEventRecord");
  cuda_check(cudaStreamWaitEvent(0, g_reduced, 0), "cudaStreamWaitEvent");
}

extern "C" void comm_nccl_allreduce_sum_f32(float *buf, size_t n) {
  comm_nccl_allreduce_start_f32(buf, n);
  comm_nccl_allreduce_wait();
}

extern "C" void comm_nccl_stop(void) {
  if (!g_comm) return;
  cuda_check(cudaStreamSynchronize(g_stream), "cudaStreamSynchronize");
  nccl_check(ncclCommDestroy(g_comm), "ncclCommDestroy", 0);
  g_comm = nullptr;
  cuda_check(cudaEventDestroy(g_grads_ready), "cudaEventDestroy");
  cuda_check(cudaEventDestroy(g_reduced), "cudaEventDestroy");
  cuda_check(cudaStreamDestroy(g_stream), "cudaStreamDestroy");
}
