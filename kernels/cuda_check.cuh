/* Error checks for CUDA runtime calls, cuBLAS calls and kernel launches.
 * A failure ends the job through die() with the op and its sizes, e.g.
 *   bertrain: error: cuda: linear_fwd sgemm (n=111 in=48 out=144): <error string>
 * so a report from a GPU run names what failed without a debugger.
 *
 * Kernel launches are asynchronous: a fault inside a kernel surfaces at a
 * later call. With BERTRAIN_CUDA_SYNC=1 in the environment every
 * LAUNCH_CHECK also waits for the kernel, so the fault is pinned to it. */
#ifndef BERTRAIN_CUDA_CHECK_CUH
#define BERTRAIN_CUDA_CHECK_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>

extern "C" {
#include "util.h"
}

/* Formats "cuda: <what...>: <err>" and dies; what is a printf format. */
NORETURN void cuda_fail(const char *err, const char *what, ...) PRINTF_LIKE(2, 3);
/* 1 when BERTRAIN_CUDA_SYNC is set to a true value (read once). */
int cuda_sync_launches(void);
/* A path that is on unless the environment sets name to 0 (BERTRAIN_*), for
 * A/B measurements of a fused kernel against the passes it replaced. */
bool cuda_path_on(const char *name);

#define CUDA_CHECK(call, ...)                                               \
  do {                                                                      \
    cudaError_t cuda_err_ = (call);                                         \
    if (cuda_err_ != cudaSuccess) cuda_fail(cudaGetErrorString(cuda_err_), __VA_ARGS__); \
  } while (0)

#define CUBLAS_CHECK(call, ...)                                             \
  do {                                                                      \
    cublasStatus_t blas_err_ = (call);                                      \
    if (blas_err_ != CUBLAS_STATUS_SUCCESS)                                 \
      cuda_fail(cublasGetStatusString(blas_err_), __VA_ARGS__);             \
  } while (0)

/* A cuBLAS or cuBLASLt matrix product: checked as CUBLAS_CHECK, counted. */
#define GEMM_CHECK(call, ...)                                               \
  do {                                                                      \
    cuda_launches++;                                                        \
    CUBLAS_CHECK(call, __VA_ARGS__);                                        \
  } while (0)

/* Right after a <<<...>>> launch: catches bad launch configurations at once
 * and, with BERTRAIN_CUDA_SYNC, faults inside the kernel. */
/* Kernel launches and library matrix products issued so far (device.cu),
 * for bench's launches per step. */
extern unsigned long long cuda_launches;

#define LAUNCH_CHECK(...)                                                   \
  do {                                                                      \
    cuda_launches++;                                                        \
    CUDA_CHECK(cudaGetLastError(), __VA_ARGS__);                            \
    if (cuda_sync_launches()) CUDA_CHECK(cudaDeviceSynchronize(), __VA_ARGS__); \
  } while (0)

#endif
