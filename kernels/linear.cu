/* Linear layers through cuBLAS sgemm, and the deterministic column sums
 * for bias gradients. cuBLAS is column-major: a row-major matrix is its
 * transpose there, so row-major C = op(A) op(B) is computed as column-major
 * C^T = op(B)^T op(A)^T, i.e. the same call with A and B (and m and n)
 * swapped and the transpose flags kept. */
#include "ops_cuda_internal.cuh"

void gemm_rm(const char *what, bool ta, bool tb, int m, int n, int k, float alpha,
             const float *A, int lda, long long sA, const float *B, int ldb, long long sB,
             float beta, float *C, int ldc, long long sC, int batch) {
  cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (batch == 1)
    CUBLAS_CHECK(cublasSgemm(cuda_blas(), ob, oa, n, m, k, &alpha, B, ldb, A, lda, &beta, C, ldc),
                 "%s sgemm (m=%d n=%d k=%d lda=%d ldb=%d ldc=%d ta=%d tb=%d)", what, m, n, k, lda,
                 ldb, ldc, ta, tb);
  else
    CUBLAS_CHECK(cublasSgemmStridedBatched(cuda_blas(), ob, oa, n, m, k, &alpha, B, ldb, sB, A,
                                           lda, sA, &beta, C, ldc, sC, batch),
                 "%s sgemm batched (m=%d n=%d k=%d lda=%d ldb=%d ldc=%d ta=%d tb=%d batch=%d)",
                 what, m, n, k, lda, ldb, ldc, ta, tb, batch);
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

void cuda_linear_fwd(float *y, const float *x, const float *w, const float *b, int n, int in,
                     int out) {
  cuda_check_dims("linear_fwd", n, in, out);
  float beta = 0.0f;
  if (b) {
    size_t total = (size_t)n * out;
    bias_rows_kernel<<<grid_for(total, THREADS), THREADS>>>(y, b, total, out);
    LAUNCH_CHECK("linear_fwd bias (n=%d out=%d)", n, out);
    beta = 1.0f;
  }
  gemm_rm("linear_fwd", false, true, n, out, in, 1.0f, x, in, 0, w, in, 0, beta, y, out, 0, 1);
}

void cuda_linear_bwd(float *dx, float *dw, float *db, const float *dy, const float *x,
                     const float *w, int n, int in, int out, int accumulate_dx) {
  cuda_check_dims("linear_bwd", n, in, out);
  if (dx)
    gemm_rm("linear_bwd dx", false, false, n, in, out, 1.0f, dy, out, 0, w, in, 0,
            accumulate_dx ? 1.0f : 0.0f, dx, in, 0, 1);
  if (dw) gemm_rm("linear_bwd dw", true, false, out, in, n, 1.0f, dy, out, 0, x, in, 0, 1.0f, dw, in, 0, 1);
  if (db) colsum_acc("linear_bwd db", db, dy, n, out);
}
