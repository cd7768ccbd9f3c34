/* Linear layers through cuBLAS sgemm, and the deterministic column sums
 * for bias gradients. cuBLAS is column-major: a row-major matrix is its
 * transpose there, so row-major C = op(A) op(B) is computed as column-major
 * C^T = op(B)^T op(A)^T, i.e. the same call with A and B (and m and n)
 * swapped and the transpose flags kept. */
#include <cuda_bf16.h>

#include "ops_cuda_internal.cuh"

/* bf16 matrix products (set_bf16): both inputs are rounded to bf16 into
 * packed buffers of their own (the shared scratch may hold an operand) and
 * multiplied on the tensor cores with fp32 accumulation and an fp32
 * result, as autocast does; weights, activations and optimizer state stay
 * fp32. */
static int g_bf16;

void cuda_set_bf16(int on) { g_bf16 = on; }
int cuda_bf16(void) { return g_bf16; }

/* Buffers 0 and 1: the two operands of a product; 2 and 3: operands
 * converted once for two products (linear_bwd's dy; attention's dP and dC). */
__nv_bfloat16 *bf16_buffer(int which, size_t n) {
  static __nv_bfloat16 *buf[4];
  static size_t cap[4];
  if (n > cap[which]) {
    /* earlier products may still be reading the old buffer */
    CUDA_CHECK(cudaDeviceSynchronize(), "bf16 operand buffer (%zu elements)", n);
    dev_free(buf[which], "bf16 operand buffer");
    buf[which] = (__nv_bfloat16 *)dev_alloc(n * sizeof(__nv_bfloat16), "bf16 operand buffer");
    cap[which] = n;
  }
  return buf[which];
}

/* Four bf16 values, stored with one 8-byte write. */
struct alignas(8) Bf16x4 {
  __nv_bfloat16 v[4];
};

/* dst[i] = bf16(src[i]) for a contiguous run of n floats: four per thread
 * (src 16-byte and dst 8-byte aligned), the tail by block 0. */
static __global__ void to_bf16_flat_kernel(__nv_bfloat16 *dst, const float *src, size_t n) {
  const size_t quads = n / 4;
  GRID_STRIDE(q, quads) {
    float4 f = reinterpret_cast<const float4 *>(src)[q];
    Bf16x4 b = {{__float2bfloat16(f.x), __float2bfloat16(f.y), __float2bfloat16(f.z),
                 __float2bfloat16(f.w)}};
    reinterpret_cast<Bf16x4 *>(dst)[q] = b;
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
  if ((uintptr_t)src % 16 == 0 && (uintptr_t)dst % 8 == 0)
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

/* a16: A already packed as bf16 (then A is not read), or NULL. */
Mat mat_bf16(const char *what, int which, Mat X, int rows, int cols, int nb, int nh) {
  if (!g_bf16) return X;
  X.p16 = packed_bf16(what, which, X, rows, cols, nb, nh);
  X.rows16 = rows, X.cols16 = cols;
  return X;
}

/* A bf16 operand of a batched product: matrix (b, h) at p + b sb + h sh,
 * leading dimension ld. */
struct Op16 {
  const __nv_bfloat16 *p;
  int ld;
  long long sb, sh;
};

/* X's bf16 matrices (rows x cols) for a product: its copy, or the ones
 * mat_bf16 packed, or packed now into buffer which. */
static Op16 operand_bf16(const char *what, int which, Mat X, int rows, int cols, int nb, int nh) {
  if (X.p16 && X.same16) return Op16{(const __nv_bfloat16 *)X.p16, X.ld, X.sb, X.sh};
  long long per = (long long)rows * cols; /* packed: matrix i at i * per */
  if (!X.p16) return Op16{packed_bf16(what, which, X, rows, cols, nb, nh), cols, nh * per, per};
  if (X.rows16 != rows || X.cols16 != cols)
    die("ops: %s: operand packed as %d x %d, used as %d x %d", what, X.rows16, X.cols16, rows,
        cols);
  return Op16{(const __nv_bfloat16 *)X.p16, cols, nh * per, per};
}

Mat mat_copy_bf16(const char *what, Mat X, size_t span) {
  if (!g_bf16) return X;
  const __nv_bfloat16 *c = bf16_copy_make(what, X.p, span);
  if (c) X.p16 = c, X.same16 = true;
  return X;
}

/* a16, b16: A or B already packed as bf16 (then not read), or NULL. */
static void gemm_bf16(const char *what, bool ta, bool tb, int m, int n, int k, float alpha,
                      const float *A, const __nv_bfloat16 *a16, int lda, long long sA,
                      const float *B, const __nv_bfloat16 *b16, int ldb, long long sB,
                      float beta, float *C, int ldc, long long sC, int batch) {
  cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
  const __nv_bfloat16 *a = a16 ? a16 : packed_bf16(what, 0, Mat{A, lda, sA, 0}, ar, ac, batch, 1);
  const __nv_bfloat16 *b = b16 ? b16 : packed_bf16(what, 1, Mat{B, ldb, sB, 0}, br, bc, batch, 1);
  GEMM_CHECK(cublasGemmStridedBatchedEx(cuda_blas(), ob, oa, n, m, k, &alpha, b, CUDA_R_16BF, bc,
                                          (long long)br * bc, a, CUDA_R_16BF, ac,
                                          (long long)ar * ac, &beta, C, CUDA_R_32F, ldc, sC,
                                          batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "%s bf16 gemm (m=%d n=%d k=%d ldc=%d ta=%d tb=%d batch=%d)", what, m, n, k, ldc,
               ta, tb, batch);
}

void gemm_rm(const char *what, bool ta, bool tb, int m, int n, int k, float alpha,
             const float *A, int lda, long long sA, const float *B, int ldb, long long sB,
             float beta, float *C, int ldc, long long sC, int batch) {
  if (g_bf16) {
    gemm_bf16(what, ta, tb, m, n, k, alpha, A, NULL, lda, sA, B, NULL, ldb, sB, beta, C, ldc, sC,
              batch);
    return;
  }
  cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (batch == 1)
    GEMM_CHECK(cublasSgemm(cuda_blas(), ob, oa, n, m, k, &alpha, B, ldb, A, lda, &beta, C, ldc),
                 "%s sgemm (m=%d n=%d k=%d lda=%d ldb=%d ldc=%d ta=%d tb=%d)", what, m, n, k, lda,
                 ldb, ldc, ta, tb);
  else
    GEMM_CHECK(cublasSgemmStridedBatched(cuda_blas(), ob, oa, n, m, k, &alpha, B, ldb, sB, A,
                                           lda, sA, &beta, C, ldc, sC, batch),
                 "%s sgemm batched (m=%d n=%d k=%d lda=%d ldb=%d ldc=%d ta=%d tb=%d batch=%d)",
                 what, m, n, k, lda, ldb, ldc, ta, tb, batch);
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
  PtrSpec pc = {(const char *)C.p, C.sb, C.sh, (int)sizeof(float)};
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
  const Op16 a = operand_bf16(what, 0, A, ar, ac, nb, nh);
  const Op16 b = operand_bf16(what, 1, B, br, bc, nb, nh);
  PtrSpec pa = {(const char *)a.p, a.sb, a.sh, (int)sizeof *a.p};
  PtrSpec pb = {(const char *)b.p, b.sb, b.sh, (int)sizeof *b.p};
  const void **p = grid_ptrs(what, pa, pb, pc, nh, count);
  GEMM_CHECK(cublasGemmBatchedEx(cuda_blas(), ob, oa, n, m, k, &alpha, p + count, CUDA_R_16BF,
                                   b.ld, p, CUDA_R_16BF, a.ld, &beta, (void *const *)(p + 2 * count),
                                   CUDA_R_32F, C.ld, count, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT),
               "%s bf16 gemm batched (m=%d n=%d k=%d ldc=%d ta=%d tb=%d count=%d)", what, m, n, k,
               C.ld, ta, tb, count);
}

static __global__ void bias_rows_kernel(float *y, const float *b, size_t total, int out) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
       i += (size_t)gridDim.x * blockDim.x)
    y[i] = b[i % (size_t)out];
}

/* part[chunk, j] = sum of x[r, j] over the rows r of chunk, in row order. */
static __global__ void colsum_part_kernel(double *part, const float *x, int rows, int c) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= c) return;
  int r0 = blockIdx.y * ROW_CHUNK, r1 = min(rows, r0 + ROW_CHUNK);
  double s = 0.0;
  for (int r = r0; r < r1; r++) s += x[(size_t)r * c + j];
  part[(size_t)blockIdx.y * c + j] = s;
}

/* acc[j] += sum of the chunk partials, in chunk order. */
static __global__ void colsum_finish_kernel(float *acc, const double *part, int nchunks, int c) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= c) return;
  double s = 0.0;
  for (int ch = 0; ch < nchunks; ch++) s += part[(size_t)ch * c + j];
  acc[j] += (float)s;
}

/* acc[j] += column sums of x[rows, c]. */
static void colsum_acc(const char *what, float *acc, const float *x, int rows, int c) {
  int nchunks = (int)ceil_div((size_t)rows, ROW_CHUNK);
  if (nchunks > 65535) die("ops: %s: %d rows are too many for the column sum", what, rows);
  double *part = (double *)cuda_scratch((size_t)nchunks * c * sizeof(double));
  dim3 grid((unsigned)ceil_div((size_t)c, THREADS), (unsigned)nchunks);
  colsum_part_kernel<<<grid, THREADS>>>(part, x, rows, c);
  LAUNCH_CHECK("%s colsum_part (rows=%d c=%d)", what, rows, c);
  colsum_finish_kernel<<<(unsigned)ceil_div((size_t)c, THREADS), THREADS>>>(acc, part, nchunks, c);
  LAUNCH_CHECK("%s colsum_finish (rows=%d c=%d)", what, rows, c);
}

/* A contiguous rows x cols operand p of a linear layer (weight, input or
 * output gradient) as bf16: its bf16 copy when there is a valid one
 * (bf16_copies.cu), else converted now: an input x into a copy that is
 * kept (the backward's weight gradient multiplies it again), anything
 * else into buffer which. */
static const __nv_bfloat16 *linear_bf16(const char *what, int which, const float *p, int rows,
                                        int cols, bool keep = false) {
  size_t n = (size_t)rows * cols;
  const __nv_bfloat16 *c = keep ? bf16_copy_make(what, p, n) : bf16_copy_of(p, n);
  return c ? c : packed_bf16(what, which, Mat{p, cols, 0, 0}, rows, cols, 1, 1);
}

/* y = x W^T + b with the bias added by the product (cuBLASLt); 0 when
 * cuBLASLt refuses. Column-major: y^T [out, n] = W [out, in] x^T. */
static int linear_fwd_lt(float *y, const float *x, const float *w, const float *b, int n, int in,
                         int out) {
  LtProduct p = {"linear_fwd", true, false, out, n, in, w, in, x, in, false, 0.0f, y, out,
                 LT_BIAS, (float *)b};
  if (g_bf16) {
    p.A = linear_bf16("linear_fwd w", 0, w, out, in);
    p.B = linear_bf16("linear_fwd x", 1, x, n, in, true);
    p.bf16 = true;
  }
  return lt_matmul(&p);
}

void cuda_linear_fwd(float *y, const float *x, const float *w, const float *b, int n, int in,
                     int out) {
  ops_check_dims("linear_fwd", n, in, out);
  WRITES(y, (size_t)n * out);
  if (b && linear_fwd_lt(y, x, w, b, n, in, out)) return;
  float beta = 0.0f;
  if (b) {
    size_t total = (size_t)n * out;
    bias_rows_kernel<<<grid_for(total, THREADS), THREADS>>>(y, b, total, out);
    LAUNCH_CHECK("linear_fwd bias (n=%d out=%d)", n, out);
    beta = 1.0f;
  }
  if (g_bf16)
    gemm_bf16("linear_fwd", false, true, n, out, in, 1.0f, x,
              linear_bf16("linear_fwd x", 0, x, n, in, true), in, 0, w,
              linear_bf16("linear_fwd w", 1, w, out, in), in, 0, beta, y, out, 0, 1);
  else
    gemm_rm("linear_fwd", false, true, n, out, in, 1.0f, x, in, 0, w, in, 0, beta, y, out, 0, 1);
}

/* One of linear_bwd's products, C = op(dy) B + beta C, with dy16 and b16
 * the bf16 copies of dy and B when there are. */
static void bwd_product(const char *what, bool ta, int m, int n, int k, const float *dy,
                        const __nv_bfloat16 *dy16, int ldy, const float *B,
                        const __nv_bfloat16 *b16, int ldb, float beta, float *C, int ldc) {
  if (g_bf16)
    gemm_bf16(what, ta, false, m, n, k, 1.0f, dy, dy16, ldy, 0, B, b16, ldb, 0, beta, C, ldc, 0, 1);
  else
    gemm_rm(what, ta, false, m, n, k, 1.0f, dy, ldy, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

/* A buffer for the bias-gradient epilogue's sums (it writes, db adds). */
static float *lt_sums(int out) {
  static float *buf;
  static size_t cap;
  if ((size_t)out > cap) {
    CUDA_CHECK(cudaDeviceSynchronize(), "bias-gradient sums (%d)", out);
    dev_free(buf, "bias-gradient sums");
    buf = (float *)dev_alloc((size_t)out * sizeof *buf, "bias-gradient sums");
    cap = (size_t)out;
  }
  return buf;
}

/* dW += dy^T x and db += column sums of dy in one product (cuBLASLt's
 * bias-gradient epilogue; its sums are then added to db); 0 when cuBLASLt
 * refuses. Column-major: dW^T [in, out] += x^T [in, n] dy [n, out]. With
 * bf16 products the sums are of the bf16 dy, as under autocast. */
static int linear_dw_db_lt(float *dw, float *db, const float *dy, const __nv_bfloat16 *dy16,
                           const float *x, int n, int in, int out) {
  float *sums = lt_sums(out);
  LtProduct p = {"linear_bwd dw", false, true, in, out, n, x, in, dy, out, false, 1.0f, dw, in,
                 LT_BGRADB, sums};
  if (g_bf16) {
    p.A = linear_bf16("linear_bwd x", 1, x, n, in);
    p.B = dy16 ? dy16 : linear_bf16("linear_bwd dy", 2, dy, n, out);
    p.bf16 = true;
  }
  if (!lt_matmul(&p)) return 0;
  cuda_add(db, db, sums, (size_t)out);
  return 1;
}

void cuda_linear_bwd(float *dx, float *dw, float *db, const float *dy, const float *x,
                     const float *w, int n, int in, int out, int accumulate_dx) {
  ops_check_dims("linear_bwd", n, in, out);
  if (dx) WRITES(dx, (size_t)n * in);
  if (dw) WRITES(dw, (size_t)out * in);
  if (db) WRITES(db, out);
  /* bf16: dy [n, out] is the A operand of both products (as is, and
   * transposed), so it is converted once (or not at all: its copy) */
  const __nv_bfloat16 *dy16 =
      g_bf16 && ((dx && dw) || bf16_copy_of(dy, (size_t)n * out))
          ? linear_bf16("linear_bwd dy", 2, dy, n, out) : NULL;
  if (dx)
    bwd_product("linear_bwd dx", false, n, in, out, dy, dy16, out, w,
                g_bf16 ? linear_bf16("linear_bwd w", 1, w, out, in) : NULL, in,
                accumulate_dx ? 1.0f : 0.0f, dx, in);
  if (dw && db && linear_dw_db_lt(dw, db, dy, dy16, x, n, in, out)) return;
  if (dw)
    bwd_product("linear_bwd dw", true, out, in, n, dy, dy16, out, x,
                g_bf16 ? linear_bf16("linear_bwd x", 1, x, n, in) : NULL, in, 1.0f, dw, in);
  if (db) colsum_acc("linear_bwd db", db, dy, n, out);
}
