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
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <type_traits>

using namespace nvcuda;

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

/* Reverses n floats per block through dynamic shared memory; flags[block]
 * says whether the word past them was fresh (0xff bytes, NaN as a float)
 * and the memory 16-byte aligned. Copy is there for two kernels. */
template <int Copy>
static __global__ void dyn_smem_kernel(float *out, const float *in, int n, unsigned *flags) {
  extern __shared__ __align__(16) unsigned char smem[];
  float *buf = reinterpret_cast<float *>(smem);
  if (threadIdx.x == 0) {
    unsigned bits;
    memcpy(&bits, &buf[n], sizeof bits);
    flags[blockIdx.x] = bits == 0xffffffffu && (size_t)smem % 16 == 0;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) buf[i] = in[blockIdx.x * n + i];
  if (threadIdx.x == 0) buf[n] = 0.0f; /* the next block must not see it */
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) out[blockIdx.x * n + i] = buf[n - 1 - i];
}

static void test_dynamic_shared(void) {
  const int n = 16384, blocks = 2;
  const size_t bytes = (n + 1) * sizeof(float); /* above 48 KiB */
  float *h = (float *)malloc(2 * blocks * n * sizeof(float)), *got = h + blocks * n, *in, *out;
  unsigned flags[blocks], *dflags;
  for (int i = 0; i < blocks * n; i++) h[i] = (float)(i % 1000);
  cudaMalloc((void **)&in, blocks * n * sizeof(float));
  cudaMalloc((void **)&out, blocks * n * sizeof(float));
  cudaMalloc((void **)&dflags, sizeof flags);
  cudaMemcpy(in, h, blocks * n * sizeof(float), cudaMemcpyHostToDevice);
  int ok = cudaFuncSetAttribute(dyn_smem_kernel<0>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)bytes) == cudaSuccess;
  dyn_smem_kernel<0><<<blocks, 256, bytes, 0>>>(out, in, n, dflags);
  ok &= cudaGetLastError() == cudaSuccess;
  cudaMemcpy(got, out, blocks * n * sizeof(float), cudaMemcpyDeviceToHost);
  cudaMemcpy(flags, dflags, sizeof flags, cudaMemcpyDeviceToHost);
  for (int b = 0; b < blocks; b++) {
    ok &= flags[b] == 1;
    for (int i = 0; i < n; i++) ok &= got[b * n + i] == h[b * n + n - 1 - i];
  }
  check(ok, "64 KiB of dynamic shared memory, its maximum raised");
  dyn_smem_kernel<1><<<blocks, 256, bytes>>>(out, in, n, dflags);
  check(cudaGetLastError() == cudaErrorInvalidValue,
        "the same launch, its maximum not raised, is refused");
  dyn_smem_kernel<0><<<blocks, 256, bytes + 16>>>(out, in, n, dflags);
  check(cudaGetLastError() == cudaErrorInvalidValue,
        "a launch above the raised maximum is refused");
  check(cudaFuncSetAttribute(dyn_smem_kernel<1>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             227 * 1024 + 1) == cudaErrorInvalidValue,
        "a maximum above 227 KiB is refused");
  cudaFree(in);
  cudaFree(out);
  cudaFree(dflags);
  free(h);
}

/* c = 0.5 * c0 + a * b for a 32x48 a and a 48x32 b, bf16 in, float out;
 * a 16x16 tile of c per warp, b staged through dynamic shared memory. */

template <class LA, class LB>
static __global__ void wmma_kernel(float *c, const __nv_bfloat16 *a, const __nv_bfloat16 *b,
                                   const float *c0, unsigned lda, unsigned ldb, unsigned ldc,
                                   wmma::layout_t lc) {
  extern __shared__ __align__(16) unsigned char smem[];
  __nv_bfloat16 *sb = reinterpret_cast<__nv_bfloat16 *>(smem);
  for (unsigned i = threadIdx.x; i < 48 * 32; i += blockDim.x) sb[i] = b[i];
  __syncthreads();
  unsigned warp = threadIdx.x / 32, m0 = warp / 2 * 16, n0 = warp % 2 * 16;
  const bool a_col = std::is_same<LA, wmma::col_major>::value;
  const bool b_col = std::is_same<LB, wmma::col_major>::value;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, LA> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, LB> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  size_t at = lc == wmma::mem_col_major ? n0 * ldc + m0 : m0 * ldc + n0;
  wmma::load_matrix_sync(acc, c0 + at, ldc, lc);
  for (int i = 0; i < acc.num_elements; i++) acc.x[i] *= 0.5f;
  for (unsigned k0 = 0; k0 < 48; k0 += 16) {
    wmma::load_matrix_sync(fa, a + (a_col ? k0 * lda + m0 : m0 * lda + k0), lda);
    wmma::load_matrix_sync(fb, sb + (b_col ? n0 * ldb + k0 : k0 * ldb + n0), ldb);
    wmma::mma_sync(acc, fa, fb, acc);
  }
  wmma::store_matrix_sync(c + at, acc, ldc, lc);
}

struct WmmaCase {
  __nv_bfloat16 *a, *b;
  float *c, *c0;
};

static WmmaCase wmma_setup(void) {
  WmmaCase w;
  cudaMalloc((void **)&w.a, 32 * 48 * sizeof(__nv_bfloat16));
  cudaMalloc((void **)&w.b, 48 * 32 * sizeof(__nv_bfloat16));
  cudaMalloc((void **)&w.c, 32 * 32 * sizeof(float));
  cudaMalloc((void **)&w.c0, 32 * 32 * sizeof(float));
  return w;
}

/* Small multiples of 1/4: exact in bf16, and every sum exact in float. */
static float wmma_a(int i, int k) { return (float)((i * 3 + k * 5) % 7 - 3) * 0.25f; }
static float wmma_b(int k, int n) { return (float)((k * 2 + n * 7) % 9 - 4) * 0.25f; }
static float wmma_c0(int i, int n) { return (float)((i + n) % 5); }

/* a and b row-major or column-major, c row- or column-major, as the flags say. */
static int wmma_run(int a_col, int b_col, int c_col) {
  WmmaCase w = wmma_setup();
  __nv_bfloat16 ha[32 * 48], hb[48 * 32];
  float hc0[32 * 32], hc[32 * 32];
  unsigned lda = a_col ? 32 : 48, ldb = b_col ? 48 : 32, ldc = 32;
  for (int i = 0; i < 32; i++)
    for (int k = 0; k < 48; k++)
      ha[a_col ? k * lda + i : i * lda + k] = __float2bfloat16(wmma_a(i, k));
  for (int k = 0; k < 48; k++)
    for (int n = 0; n < 32; n++)
      hb[b_col ? n * ldb + k : k * ldb + n] = __float2bfloat16(wmma_b(k, n));
  for (int i = 0; i < 32; i++)
    for (int n = 0; n < 32; n++) hc0[c_col ? n * ldc + i : i * ldc + n] = wmma_c0(i, n);
  cudaMemcpy(w.a, ha, sizeof ha, cudaMemcpyHostToDevice);
  cudaMemcpy(w.b, hb, sizeof hb, cudaMemcpyHostToDevice);
  cudaMemcpy(w.c0, hc0, sizeof hc0, cudaMemcpyHostToDevice);
  wmma::layout_t lc = c_col ? wmma::mem_col_major : wmma::mem_row_major;
  if (!a_col && b_col)
    wmma_kernel<wmma::row_major, wmma::col_major>
        <<<1, 128, sizeof hb>>>(w.c, w.a, w.b, w.c0, lda, ldb, ldc, lc);
  else if (a_col && !b_col)
    wmma_kernel<wmma::col_major, wmma::row_major>
        <<<1, 128, sizeof hb>>>(w.c, w.a, w.b, w.c0, lda, ldb, ldc, lc);
  else
    return 0;
  int ok = cudaGetLastError() == cudaSuccess;
  cudaMemcpy(hc, w.c, sizeof hc, cudaMemcpyDeviceToHost);
  for (int i = 0; i < 32; i++)
    for (int n = 0; n < 32; n++) {
      float want = 0.5f * wmma_c0(i, n);
      for (int k = 0; k < 48; k++) want += wmma_a(i, k) * wmma_b(k, n);
      ok &= hc[c_col ? n * ldc + i : i * ldc + n] == want;
    }
  cudaFree(w.a);
  cudaFree(w.b);
  cudaFree(w.c);
  cudaFree(w.c0);
  return ok;
}

static void test_wmma(void) {
  check(wmma_run(0, 1, 0), "wmma 32x48 by 48x32: a row-, b column-, c row-major");
  check(wmma_run(1, 0, 1), "wmma 32x48 by 48x32: a column-, b row-, c column-major");
}

/* Each thread's turn: the emulator's order (BERTRAIN_EMU_ORDER=reverse:
 * the last block's last thread first). */
static __global__ void order_kernel(unsigned *turn, unsigned *next) {
  turn[blockIdx.x * blockDim.x + threadIdx.x] = atomicAdd(next, 1u);
}

static void test_order(void) {
  enum { BLOCKS = 2, THREADS_PER = 64, N = BLOCKS * THREADS_PER };
  unsigned *d, host[N + 1];
  cudaMalloc((void **)&d, sizeof host);
  cudaMemset(d, 0, sizeof host);
  order_kernel<<<BLOCKS, THREADS_PER>>>(d, d + N);
  cudaMemcpy(host, d, sizeof host, cudaMemcpyDeviceToHost);
  cudaFree(d);
  const char *order = getenv("BERTRAIN_EMU_ORDER");
  int reverse = order && strcmp(order, "reverse") == 0, ok = host[N] == N;
  for (int i = 0; i < N; i++) ok &= host[i] == (unsigned)(reverse ? N - 1 - i : i);
  check(ok, reverse ? "threads and blocks run last first (BERTRAIN_EMU_ORDER=reverse)"
                    : "threads and blocks run in order");
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

static __global__ void shared_overrun_kernel(int n) {
  extern __shared__ float buf[];
  buf[threadIdx.x + n] = 1.0f;
}

static void shared_overrun(void) { shared_overrun_kernel<<<1, 32, 1000>>>(250); }

static void wmma_misaligned(void) {
  WmmaCase w = wmma_setup();
  wmma_kernel<wmma::row_major, wmma::col_major>
      <<<1, 128, 48 * 32 * 2>>>(w.c, w.a + 8, w.b, w.c0, 48, 48, 32, wmma::mem_row_major);
}

static void wmma_bad_ldm(void) {
  WmmaCase w = wmma_setup();
  wmma_kernel<wmma::row_major, wmma::col_major>
      <<<1, 128, 48 * 32 * 2>>>(w.c, w.a, w.b, w.c0, 20, 48, 32, wmma::mem_row_major);
}

static void wmma_tile_overrun(void) {
  WmmaCase w = wmma_setup();
  wmma_kernel<wmma::row_major, wmma::col_major>
      <<<1, 128, 48 * 32 * 2>>>(w.c, w.a, w.b, w.c0, 56, 48, 32, wmma::mem_row_major);
}

/* Lane 5 leaves (or passes another pointer) where the warp loads a tile. */
static __global__ void wmma_lane_kernel(const __nv_bfloat16 *a, int exits) {
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> f;
  if (threadIdx.x == 5 && exits) return;
  wmma::load_matrix_sync(f, a + (threadIdx.x == 5 ? 16 : 0), 32);
}

static void wmma_lane_exits(void) {
  WmmaCase w = wmma_setup();
  wmma_lane_kernel<<<1, 32>>>(w.a, 1);
}

static void wmma_lane_differs(void) {
  WmmaCase w = wmma_setup();
  wmma_lane_kernel<<<1, 32>>>(w.a, 0);
}

/* Fills a local array from its top down, as a deep stack would. */
static __global__ void deep_stack_kernel(float *x, int n) {
  volatile char big[80 * 1024];
  for (int i = (int)sizeof big - 1; i >= 0; i--) big[i] = (char)(i + n);
  x[threadIdx.x] = big[n];
}

static void deep_stack(void) {
  float *x;
  cudaMalloc((void **)&x, 32 * sizeof(float));
  deep_stack_kernel<<<1, 32>>>(x, 3);
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
  test_dynamic_shared();
  test_wmma();
  test_order();
  test_refusals();
  expect_report("a write past an allocation is reported", overrun,
                "0 bytes past the end of a 400-byte allocation");
  expect_report("threads at different __syncthreads calls are reported", divergent_sync,
                "divergent barrier");
  expect_report("a shuffle reading an exited lane is reported", exited_lane,
                "shuffle reads lane 3, which has exited");
  expect_report("a write past dynamic shared memory is reported", shared_overrun,
                "24 bytes past the end of the launch's 1000 bytes of dynamic shared memory");
  expect_report("a wmma tile 16 bytes off 32-byte alignment is reported", wmma_misaligned,
                "is not 256-bit (32-byte) aligned");
  expect_report("a wmma load with ldm 20 bf16 is reported", wmma_bad_ldm,
                "ldm 20 is not a multiple of 8 elements");
  expect_report("a wmma tile past its allocation is reported", wmma_tile_overrun,
                "past the end of its device allocation");
  expect_report("a lane leaving before a wmma load is reported", wmma_lane_exits,
                "shuffle reads lane 5, which has exited");
  expect_report("a lane passing another wmma pointer is reported", wmma_lane_differs,
                "is not at the same wmma call with the same pointer");
  expect_report("a CUDA thread overflowing its fiber stack is reported", deep_stack,
                "fiber stack of thread"); /* 0, or the last in reverse order */
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
