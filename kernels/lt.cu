/* Matrix products with a bias epilogue, through cuBLASLt: the product adds
 * the bias itself (the linear forward), which saves a pass over the output.
 * Column-major, as cuBLAS. When cuBLASLt has no algorithm for the
 * epilogue, it says so once and the caller keeps to the plain path. The
 * descriptors and the chosen algorithm are kept per shape, so a training
 * step asks the heuristic nothing after its first step. */
#include <string.h>

#include <cublasLt.h>

#include "ops_cuda_internal.cuh"

#define LT_WORKSPACE_BYTES ((size_t)32 << 20)

static cublasLtHandle_t lt_handle(void) {
  static cublasLtHandle_t h;
  if (!h) CUBLAS_CHECK(cublasLtCreate(&h), "cublasLtCreate");
  return h;
}

static void *lt_workspace(void) {
  static void *ws;
  if (!ws) ws = dev_alloc(LT_WORKSPACE_BYTES, "cuBLASLt workspace");
  return ws;
}

/* The descriptors of one shape of product and the algorithm found for it. */
typedef struct LtDescs {
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t a, b, d;
  cublasLtMatmulPreference_t pref;
  cublasLtMatmulAlgo_t algo;
  /* the shape: what makes two products the same to cuBLASLt */
  int ta, tb, m, n, k, lda, ldb, ldd, bf16, d16, tf32;
  uint32_t align_a, align_b, align_d, align_bias;
} LtDescs;

#define LT_CACHE 64
static LtDescs g_cache[LT_CACHE];
static int g_cached;

/* The alignment of p in bytes, up to 256. cuBLASLt's heuristic assumes 256
 * unless told otherwise, and an algorithm picked on that assumption may
 * fault on a matrix that starts inside a buffer (a view of a weight or an
 * activation), so every product states its pointers' alignment. */
static uint32_t align_of(const void *p) {
  uintptr_t a = (uintptr_t)p;
  return a == 0 || (a & 255) == 0 ? 256u : (uint32_t)(a & (~a + 1));
}

static void lt_set(const LtProduct *p, cublasLtMatmulDescAttributes_t attr, const void *v,
                   size_t bytes, cublasLtMatmulDesc_t op) {
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, attr, v, bytes),
               "%s cublasLtMatmulDescSetAttribute(%d)", p->what, (int)attr);
}

static void lt_describe(const LtProduct *p, LtDescs *d) {
  d->ta = p->ta, d->tb = p->tb, d->m = p->m, d->n = p->n, d->k = p->k;
  d->lda = p->lda, d->ldb = p->ldb, d->ldd = p->ldd, d->bf16 = p->bf16, d->d16 = p->d16;
  d->tf32 = cuda_tf32();
  d->align_a = align_of(p->A), d->align_b = align_of(p->B), d->align_d = align_of(p->D);
  d->align_bias = align_of(p->bias);
  cublasComputeType_t compute =
      cuda_tf32() && !p->bf16 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&d->op, compute, CUDA_R_32F), "%s cublasLtMatmulDescCreate",
               p->what);
  cublasOperation_t ta = p->ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = p->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
  lt_set(p, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta, d->op);
  lt_set(p, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb, d->op);
  lt_set(p, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi, d->op);
  /* the heuristic reads the bias pointer's alignment, which is part of the
   * shape (align_bias) */
  const void *bias = p->bias;
  lt_set(p, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias, d->op);
  cudaDataType in = p->bf16 ? CUDA_R_16BF : CUDA_R_32F;
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d->a, in, p->ta ? p->k : p->m, p->ta ? p->m : p->k, p->lda),
               "%s cublasLtMatrixLayoutCreate (A)", p->what);
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d->b, in, p->tb ? p->n : p->k, p->tb ? p->k : p->n, p->ldb),
               "%s cublasLtMatrixLayoutCreate (B)", p->what);
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d->d, p->d16 ? CUDA_R_16BF : CUDA_R_32F, p->m, p->n,
                                          p->ldd),
               "%s cublasLtMatrixLayoutCreate (D)", p->what);
  size_t ws = LT_WORKSPACE_BYTES;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&d->pref), "%s cublasLtMatmulPreferenceCreate", p->what);
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(d->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                    &ws, sizeof ws),
               "%s cublasLtMatmulPreferenceSetAttribute", p->what);
  const uint32_t align[4] = {d->align_a, d->align_b, d->align_d, d->align_d}; /* C is D */
  for (int i = 0; i < 4; i++)
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
                     d->pref,
                     (cublasLtMatmulPreferenceAttributes_t)(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES + i),
                     &align[i], sizeof align[i]),
                 "%s cublasLtMatmulPreferenceSetAttribute (alignment of %c)", p->what, "ABCD"[i]);
}

static void lt_free(LtDescs *d) {
  CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(d->pref), "cublasLtMatmulPreferenceDestroy");
  CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(d->d), "cublasLtMatrixLayoutDestroy (D)");
  CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(d->b), "cublasLtMatrixLayoutDestroy (B)");
  CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(d->a), "cublasLtMatrixLayoutDestroy (A)");
  CUBLAS_CHECK(cublasLtMatmulDescDestroy(d->op), "cublasLtMatmulDescDestroy");
}

static int same_shape(const LtDescs *d, const LtProduct *p) {
  return d->ta == p->ta && d->tb == p->tb && d->m == p->m &&
         d->n == p->n && d->k == p->k && d->lda == p->lda && d->ldb == p->ldb &&
         d->ldd == p->ldd && d->bf16 == p->bf16 && d->d16 == p->d16 && d->tf32 == cuda_tf32() &&
         d->align_a == align_of(p->A) && d->align_b == align_of(p->B) &&
         d->align_d == align_of(p->D) && d->align_bias == align_of(p->bias);
}

/* The cached descriptors for p's shape, made (with the heuristic's pick)
 * on first use; NULL when cuBLASLt has no algorithm for it. */
static LtDescs *lt_shape(const LtProduct *p) {
  for (int i = 0; i < g_cached; i++)
    if (same_shape(&g_cache[i], p)) return &g_cache[i];
  LtDescs d;
  lt_describe(p, &d);
  cublasLtMatmulHeuristicResult_t r;
  int found = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_handle(), d.op, d.a, d.b, d.d, d.d, d.pref,
                                                     1, &r, &found);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
    info("cuda: cuBLASLt has no bias epilogue for %s (m=%d n=%d k=%d%s%s): %s; the bias takes "
         "a separate pass", p->what, p->m, p->n, p->k, p->bf16 ? ", bf16" : "",
         p->d16 ? " into bf16" : "",
         st != CUBLAS_STATUS_SUCCESS ? cublasGetStatusString(st) : "none found");
    lt_free(&d);
    return NULL;
  }
  d.algo = r.algo;
  if (g_cached == LT_CACHE) { /* full: the oldest shape makes room */
    lt_free(&g_cache[0]);
    memmove(g_cache, g_cache + 1, (LT_CACHE - 1) * sizeof *g_cache);
    g_cached--;
  }
  g_cache[g_cached] = d;
  return &g_cache[g_cached++];
}

int lt_matmul(const LtProduct *p) {
  /* per output type: once refused, not asked again */
  static int refused[2];
  const int kind = p->d16 ? 1 : 0;
  if (refused[kind]) return 0;
  /* the epilogue reads the bias vector 16 bytes at a time */
  if ((uintptr_t)p->bias % 16 != 0) return 0;
  LtDescs *d = lt_shape(p);
  if (!d) {
    refused[kind] = 1;
    return 0;
  }
  const void *bias = p->bias;
  lt_set(p, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias, d->op);
  const float alpha = 1.0f, beta = p->beta;
  GEMM_CHECK(cublasLtMatmul(lt_handle(), d->op, &alpha, p->A, d->a, p->B, d->b, &beta, p->D,
                              d->d, p->D, d->d, &d->algo, lt_workspace(), LT_WORKSPACE_BYTES, 0),
               "%s cublasLtMatmul (m=%d n=%d k=%d lda=%d ldb=%d ldd=%d ta=%d tb=%d%s%s)", p->what,
               p->m, p->n, p->k, p->lda, p->ldb, p->ldd, p->ta, p->tb, p->bf16 ? " bf16" : "",
               p->d16 ? " into bf16" : "");
  return 1;
}
