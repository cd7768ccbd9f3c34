/* The emulator's own test: CUDA code it must run right, and CUDA mistakes it
 * must report (each in a child process, whose exit status and stderr are
 * checked). If the emulator stopped catching these, the GPU tests that run
 * on it would pass without proving anything. Built through translate.py like
 * kernels/, so the launches below go through the same rewriting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

static int g_failed, g_passed;

static void check(int ok, const char *what) {
  printf("%-58s %s\n", what, ok ? "PASS" : "FAIL");
  ok ? g_passed++ : g_failed++;
}

/* ---- code that must run right ---- */

/* Sum of each block's values through shared memory and warp shuffles. */
static __global__ void block_sum_kernel(float *out, const float *in) {
  __shared__ float part[32];
  float v = in[blockIdx.x * blockDim.x + threadIdx.x];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0.0f;
    for (unsigned w = 0; w < blockDim.x >> 5; w++) s += part[w];
    out[blockIdx.x] = s;
  }
}

static void test_block_sum(void) {
  const int blocks = 5, threads = 128, n = blocks * threads;
  float h[n], sums[blocks], *in, *out;
  for (int i = 0; i < n; i++) h[i] = (float)(i % 7);
  cudaMalloc((void **)&in, sizeof h);
  cudaMalloc((void **)&out, sizeof sums);
  cudaMemcpy(in, h, sizeof h, cudaMemcpyHostToDevice);
  block_sum_kernel<<<blocks, threads>>>(out, in);
  int ok = cudaGetLastError() == cudaSuccess;
  cudaMemcpy(sums, out, sizeof sums, cudaMemcpyDeviceToHost);
  for (int b = 0; b < blocks; b++) {
    float want = 0.0f;
    for (int t = 0; t < threads; t++) want += h[b * threads + t];
    ok &= sums[b] == want;
  }
  check(ok, "block sums through shuffles and shared memory");
  cudaFree(in);
  cudaFree(out);
}

/* Per warp: the ballot of the lanes whose value is odd, the lowest such
 * lane (__ffs), their count (__popc); and the smallest value (atomicMin). */
static __global__ void ballot_kernel(unsigned *out, int *least, const int *in) {
  int v = in[blockIdx.x * blockDim.x + threadIdx.x];
  unsigned b = __ballot_sync(0xffffffffu, v & 1);
  atomicMin(least, v);
  if (threadIdx.x % 32 == 0) {
    unsigned *o = out + 3 * (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    o[0] = b, o[1] = (unsigned)__ffs(b), o[2] = (unsigned)__popc(b);
  }
}

static void test_ballot(void) {
  const int warps = 4, n = 32 * warps;
  int h[n], *in, *least, low = 1 << 30, got_low;
  unsigned out[3 * warps], *dout;
  for (int i = 0; i < n; i++) h[i] = (i * 7919) % 1000 + (i == 77 ? -5 : 0);
  cudaMalloc((void **)&in, sizeof h);
  cudaMalloc((void **)&dout, sizeof out);
  cudaMalloc((void **)&least, sizeof low);
  cudaMemcpy(in, h, sizeof h, cudaMemcpyHostToDevice);
  cudaMemcpy(least, &low, sizeof low, cudaMemcpyHostToDevice);
  ballot_kernel<<<2, 64>>>(dout, least, in);
  int ok = cudaGetLastError() == cudaSuccess;
  cudaMemcpy(out, dout, sizeof out, cudaMemcpyDeviceToHost);
  cudaMemcpy(&got_low, least, sizeof low, cudaMemcpyDeviceToHost);
  for (int w = 0; w < warps; w++) {
    unsigned want = 0;
    for (int l = 0; l < 32; l++) want |= (unsigned)(h[32 * w + l] & 1) << l;
    ok &= out[3 * w] == want && out[3 * w + 1] == (unsigned)__builtin_ffs((int)want) &&
          out[3 * w + 2] == (unsigned)__builtin_popcount(want);
  }
  for (int i = 0; i < n; i++) low = h[i] < low ? h[i] : low;
  check(ok && got_low == low, "ballot, ffs, popc and atomicMin");
  cudaFree(in);
  cudaFree(dout);
  cudaFree(least);
}

static void test_refusals(void) {
  float *d;
  cudaMalloc((void **)&d, 64 * sizeof(float));
  block_sum_kernel<<<1, 2048>>>(d, d);
  check(cudaGetLastError() == cudaErrorInvalidConfiguration, "a 2048-thread block is refused");
  float host[64];
  check(cudaMemcpy(host, d, sizeof host, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
        "a copy with host and device swapped is refused");
  cublasHandle_t h;
  cublasCreate(&h);
  float one = 1.0f, zero = 0.0f;
  check(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, d, 4, d, 8, &zero, d, 8) ==
            CUBLAS_STATUS_INVALID_VALUE,
        "a GEMM with lda < m is refused");
  check(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 16, &one, d, 8, d, 16, &zero, d, 8) ==
            CUBLAS_STATUS_INVALID_VALUE,
        "a GEMM reading past its allocation is refused");
  cublasDestroy(h);
  cudaFree(d);
}

/* ---- mistakes that must be reported ---- */

static __global__ void overrun_kernel(float *x, int n) { x[threadIdx.x + n - 1] = 1.0f; }

static __global__ void divergent_sync_kernel(float *x) {
  if (threadIdx.x < 16) {
    x[threadIdx.x] = 1.0f;
    __syncthreads();
  } else {
    __syncthreads();
    x[threadIdx.x] = 2.0f;
  }
}

static __global__ void exited_lane_kernel(float *x) {
  if (threadIdx.x == 3) return;
  x[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

static void overrun(void) {
  float *x;
  cudaMalloc((void **)&x, 100 * sizeof(float));
  overrun_kernel<<<1, 32>>>(x, 100);
}

static void divergent_sync(void) {
  float *x;
  cudaMalloc((void **)&x, 64 * sizeof(float));
  divergent_sync_kernel<<<1, 64>>>(x);
}

static void exited_lane(void) {
  float *x;
  cudaMalloc((void **)&x, 32 * sizeof(float));
  exited_lane_kernel<<<1, 32>>>(x);
}

/* Runs fn in a child; passes when it exits non-zero saying want on stderr. */
static void expect_report(const char *what, void (*fn)(void), const char *want) {
  int fd[2];
  if (pipe(fd) != 0) abort();
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fd[1], 2);
    close(fd[0]);
    fn();
    _exit(0);
  }
  close(fd[1]);
  char buf[1024] = "";
  size_t got = 0;
  ssize_t r;
  while (got < sizeof buf - 1 && (r = read(fd[0], buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)r;
  close(fd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  int ok = WIFEXITED(status) && WEXITSTATUS(status) != 0 && strstr(buf, want);
  check(ok, what);
  if (!ok) fprintf(stderr, "  child said: %s\n", buf);
}

int main(void) {
  test_block_sum();
  test_ballot();
  test_refusals();
  expect_report("a write past an allocation is reported", overrun,
                "0 bytes past the end of a 400-byte allocation");
  expect_report("threads at different __syncthreads calls are reported", divergent_sync,
                "divergent barrier");
  expect_report("a shuffle reading an exited lane is reported", exited_lane,
                "shuffle reads lane 3, which has exited");
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
