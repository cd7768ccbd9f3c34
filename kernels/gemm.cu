/* Matrix products through cuBLAS: the plain fp32 ones (sgemm), the bf16
 * ones (bf16 inputs, fp32 accumulation, fp32 or bf16 output), the batched
 * ones over attention's (sample, head) pairs, and the bf16 operand
 * buffers. cuBLAS is column-major: a row-major matrix is its transpose
 * there, so row-major C = op(A) op(B) is computed as column-major C^T =
 * op(B)^T op(A)^T, i.e. the same call with A and B (and m and n) swapped
 * and the transpose flags kept.
 *
 * bf16 products (set_bf16): an operand that is a bf16 activation buffer
 * (activations.cu) or has a bf16 parameter copy (params_bf16.cu) is used
 * as it is; any other is rounded to bf16 into a packed buffer of its own
 * (the shared scratch may hold an operand). */
#include <cuda_bf16.h>

#include "ops_cuda_internal.cuh"

static int g_bf16;

/* Activation buffers keep the element type they were allocated with, so
 * the switch waits until there are none. */
void cuda_set_bf16(int on) {
  if (!on != !g_bf16 && cuda_act_buffers())
    die("ops: set_bf16(%d) with %zu activation buffers allocated: set the precision before the "
        "model is made", on, cuda_act_buffers());
  g_bf16 = on;
}
int cuda_bf16(void) { return g_bf16; }

/* Buffers 0 and 1: the two operands of a product; 2 and 3: operands
 * converted once for two products (linear_bwd's dy, and its rows padded;
 * attention's dP and dC). */
__nv_bfloat16 *bf16_buffer(int which, size_t n) {
  static GrowBuffer buf[4];
  return (__nv_bfloat16 *)grow_buffer(&buf[which], n * sizeof(__nv_bfloat16),
                                      "bf16 operand buffer");
}

/* dst[i] = bf16(src[i]) for a contiguous run of n floats: four per thread
 * (src 16-byte and dst 8-byte aligned), the tail by block 0. */
static __global__ void to_bf16_flat_kernel(__nv_bfloat16 *dst, const float *src, size_t n) {
  const size_t quads = n / 4;
  GRID_STRIDE(q, quads) {
    float4 f = reinterpret_cast<const float4 *>(src)[q];
    Quad<__nv_bfloat16> b = {{__float2bfloat16(f.x), __float2bfloat16(f.y), __float2bfloat16(f.z),
                 __float2bfloat16(f.w)}};
    reinterpret_cast<Quad<__nv_bfloat16> *>(dst)[q] = b;
  }
  if (blockIdx.x == 0 && quads * 4 + threadIdx.x < n)
    dst[quads * 4 + threadIdx.x] = __float2bfloat16(src[quads * 4 + threadIdx.x]);
}

/* Strided batches: one warp per line (row r of matrix i), so the index
 * arithmetic is done once per row, not per element. dst line l = i rows +
 * r is bf16(src[(i / nh) sb + (i % nh) sh + r ld + c]), packed. */
static __global__ void to_bf16_lines_kernel(__nv_bfloat16 *dst, const float *src, int rows,
                                            int cols, int ld, long long sb, long long sh, int nh,
                                            size_t lines) {
  const size_t line = warp_row();
  if (line >= lines) return;
  const size_t m = line / (size_t)rows, r = line % (size_t)rows;
  const float *s = src + (m / nh) * (size_t)sb + (m % nh) * (size_t)sh + r * (size_t)ld;
  __nv_bfloat16 *d = dst + line * (size_t)cols;
  for (int c = threadIdx.x % 32; c < cols; c += 32) d[c] = __float2bfloat16(s[c]);
}

/* Scalar, for a source that is not 16-byte aligned. */
static __global__ void to_bf16_scalar_kernel(__nv_bfloat16 *dst, const float *src, size_t n) {
  GRID_STRIDE(i, n) dst[i] = __float2bfloat16(src[i]);
}

void cuda_to_bf16(const char *what, __nv_bfloat16 *dst, const float *src, size_t n) {
  if (!n) return;
  if (aligned16(src) && (uintptr_t)dst % 8 == 0)
    to_bf16_flat_kernel<<<grid_for(ceil_div(n, 4), THREADS), THREADS>>>(dst, src, n);
  else
    to_bf16_scalar_kernel<<<grid_for(n, THREADS), THREADS>>>(dst, src, n);
  LAUNCH_CHECK("%s to bf16 (%zu elements)", what, n);
}

/* The row-major rows x cols matrices of X (two-level batch, nb x nh)
 * packed as bf16 into buffer which. */
static const __nv_bfloat16 *packed_bf16(const char *what, int which, Mat X, int rows, int cols,
                                        int nb, int nh) {
  size_t count = (size_t)nb * nh, per = (size_t)rows * cols, total = per * count;
  __nv_bfloat16 *dst = bf16_buffer(which, total);
  /* already packed in fp32 (every linear operand): one flat pass */
  bool packed = X.ld == cols && (count == 1 || ((size_t)X.sh == per && (size_t)X.sb == per * nh));
  if (packed) {
    cuda_to_bf16(what, dst, X.p, total);
    return dst;
  }
  size_t lines = (size_t)rows * count;
  to_bf16_lines_kernel<<<warp_rows_grid(what, lines), THREADS>>>(
      dst, X.p, rows, cols, X.ld, X.sb, X.sh, nh, lines);
  LAUNCH_CHECK("%s to bf16 (rows=%d cols=%d ld=%d batch=%d x %d)", what, rows, cols, X.ld, nb, nh);
  return dst;
}

const __nv_bfloat16 *operand16(const char *what, int which, const float *p, int rows, int cols) {
  if (is_act16(p)) return act16(p);
  const __nv_bfloat16 *c = params_bf16(p, (size_t)rows * cols);
  return c ? c : packed_bf16(what, which, Mat{p, cols, 0, 0}, rows, cols, 1, 1);
}

Out out_of(float *p) {
  if (is_act16(p)) return Out{act16(p), true};
  return Out{p, false};
}

void gemm_rm(const char *what, bool ta, bool tb, int m, int n, int k, float alpha,
             const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
  cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  GEMM_CHECK(cublasSgemm(cuda_blas(), ob, oa, n, m, k, &alpha, B, ldb, A, lda, &beta, C, ldc),
             "%s sgemm (m=%d n=%d k=%d lda=%d ldb=%d ldc=%d ta=%d tb=%d)", what, m, n, k, lda,
             ldb, ldc, ta, tb);
}

void gemm_rm16(const char *what, bool ta, bool tb, int m, int n, int k, float alpha,
               const __nv_bfloat16 *A, int lda, const __nv_bfloat16 *B, int ldb, float beta,
               Out C, int ldc) {
  cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  GEMM_CHECK(cublasGemmStridedBatchedEx(cuda_blas(), ob, oa, n, m, k, &alpha, B, CUDA_R_16BF, ldb,
                                          0, A, CUDA_R_16BF, lda, 0, &beta, C.p,
                                          C.bf16 ? CUDA_R_16BF : CUDA_R_32F, ldc, 0, 1,
                                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
             "%s bf16 gemm (m=%d n=%d k=%d lda=%d ldb=%d ldc=%d ta=%d tb=%d%s)", what, m, n, k,
             lda, ldb, ldc, ta, tb, C.bf16 ? " bf16 out" : "");
}

Mat mat_bf16(const char *what, int which, Mat X, int rows, int cols, int nb, int nh) {
  X = mat_act(X);
  if (!g_bf16 || X.p16) return X;
  X.p16 = packed_bf16(what, which, X, rows, cols, nb, nh);
  X.rows16 = rows, X.cols16 = cols;
  return X;
}

Mat mat_act(Mat X) {
  if (!X.p16 && is_act16(X.p)) X.p16 = act16(X.p), X.same16 = true;
  return X;
}

/* A bf16 operand of a batched product: matrix (b, h) at p + b sb + h sh,
 * leading dimension ld. */
struct Op16 {
  const __nv_bfloat16 *p;
  int ld;
  long long sb, sh;
};

/* X's bf16 matrices (rows x cols) for a product: X's own (a bf16
 * activation buffer), or the ones mat_bf16 packed, or packed now into
 * buffer which. */
static Op16 operand_bf16(const char *what, int which, Mat X, int rows, int cols, int nb, int nh) {
  if (X.p16 && X.same16) return Op16{(const __nv_bfloat16 *)X.p16, X.ld, X.sb, X.sh};
  long long per = (long long)rows * cols; /* packed: matrix i at i * per */
  if (!X.p16) return Op16{packed_bf16(what, which, X, rows, cols, nb, nh), cols, nh * per, per};
  if (X.rows16 != rows || X.cols16 != cols)
    die("ops: %s: operand packed as %d x %d, used as %d x %d", what, X.rows16, X.cols16, rows,
        cols);
  return Op16{(const __nv_bfloat16 *)X.p16, cols, nh * per, per};
}

/* ---- products over a two-level batch (attention: samples x heads) ---- */

/* out[w * count + i] = base_w + ((i / nh) sb_w + (i % nh) sh_w) elements. */
struct PtrSpec {
  const char *base;
  long long sb, sh;
  int elem_bytes;
};

static __global__ void grid_ptrs_kernel(const void **out, PtrSpec a, PtrSpec b, PtrSpec c,
                                        int nh, int count) {
  GRID_STRIDE(i, (size_t)count) {
    size_t bi = i / nh, hi = i % nh;
    out[i] = a.base + (bi * a.sb + hi * a.sh) * a.elem_bytes;
    out[count + i] = b.base + (bi * b.sb + hi * b.sh) * b.elem_bytes;
    out[2 * (size_t)count + i] = c.base + (bi * c.sb + hi * c.sh) * c.elem_bytes;
  }
}

/* Pointer arrays already on the device, by what they were made from: the
 * model's buffers never move, so a training step finds all of its arrays
 * here (6 per layer) and builds none. An array is a function of its key
 * alone, so an entry is never stale; a full cache rebuilds its oldest
 * entry in place (stream order keeps that after the products reading it). */
#define PTR_CACHE 256

struct PtrEntry {
  PtrSpec a, b, c;
  int nh, count;
  const void **buf;
};

static bool same_spec(const PtrSpec &x, const PtrSpec &y) {
  return x.base == y.base && x.sb == y.sb && x.sh == y.sh && x.elem_bytes == y.elem_bytes;
}

/* Device arrays of the A, B and C pointers of count products. */
static const void **grid_ptrs(const char *what, PtrSpec a, PtrSpec b, PtrSpec c, int nh,
                              int count) {
  static PtrEntry cache[PTR_CACHE];
  static int used, oldest;
  for (int i = 0; i < used; i++) {
    const PtrEntry &e = cache[i];
    if (e.nh == nh && e.count == count && same_spec(e.a, a) && same_spec(e.b, b) &&
        same_spec(e.c, c))
      return e.buf;
  }
  PtrEntry *e;
  if (used < PTR_CACHE) {
    e = &cache[used++];
    e->buf = (const void **)dev_alloc(3 * (size_t)count * sizeof *e->buf, "gemm pointer arrays");
  } else {
    e = &cache[oldest];
    oldest = (oldest + 1) % PTR_CACHE;
    if (e->count < count) {
      CUDA_CHECK(cudaDeviceSynchronize(), "%s pointer arrays (%d products)", what, count);
      dev_free((void *)e->buf, "gemm pointer arrays");
      e->buf = (const void **)dev_alloc(3 * (size_t)count * sizeof *e->buf, "gemm pointer arrays");
    }
  }
  e->a = a, e->b = b, e->c = c, e->nh = nh, e->count = count;
  grid_ptrs_kernel<<<grid_for((size_t)count, THREADS), THREADS>>>(e->buf, a, b, c, nh, count);
  LAUNCH_CHECK("%s pointer arrays (%d products)", what, count);
  return e->buf;
}

void gemm_rm_grid(const char *what, bool ta, bool tb, int m, int n, int k, float alpha, Mat A,
                  Mat B, float beta, Mat C, int nb, int nh) {
  cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  int count = nb * nh;
  C = mat_act(C);
  const bool c16 = C.same16;
  PtrSpec pc = {c16 ? (const char *)C.p16 : (const char *)C.p, C.sb, C.sh,
                c16 ? (int)sizeof(__nv_bfloat16) : (int)sizeof(float)};
  if (!g_bf16) {
    PtrSpec pa = {(const char *)A.p, A.sb, A.sh, (int)sizeof(float)};
    PtrSpec pb = {(const char *)B.p, B.sb, B.sh, (int)sizeof(float)};
    const void **p = grid_ptrs(what, pa, pb, pc, nh, count);
    GEMM_CHECK(cublasSgemmBatched(cuda_blas(), ob, oa, n, m, k, &alpha, (const float **)p + count,
                                    B.ld, (const float **)p, A.ld, &beta, (float **)p + 2 * count,
                                    C.ld, count),
                 "%s sgemm batched (m=%d n=%d k=%d lda=%d ldb=%d ldc=%d ta=%d tb=%d count=%d)",
                 what, m, n, k, A.ld, B.ld, C.ld, ta, tb, count);
    return;
  }
  int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
  const Op16 a = operand_bf16(what, 0, mat_act(A), ar, ac, nb, nh);
  const Op16 b = operand_bf16(what, 1, mat_act(B), br, bc, nb, nh);
  PtrSpec pa = {(const char *)a.p, a.sb, a.sh, (int)sizeof *a.p};
  PtrSpec pb = {(const char *)b.p, b.sb, b.sh, (int)sizeof *b.p};
  const void **p = grid_ptrs(what, pa, pb, pc, nh, count);
  GEMM_CHECK(cublasGemmBatchedEx(cuda_blas(), ob, oa, n, m, k, &alpha, p + count, CUDA_R_16BF,
                                   b.ld, p, CUDA_R_16BF, a.ld, &beta, (void *const *)(p + 2 * count),
                                   c16 ? CUDA_R_16BF : CUDA_R_32F, C.ld, count, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT),
               "%s bf16 gemm batched (m=%d n=%d k=%d ldc=%d ta=%d tb=%d count=%d%s)", what, m, n,
               k, C.ld, ta, tb, count, c16 ? " bf16 out" : "");
}
