/* Matrix products with a bias epilogue, through cuBLASLt: the product adds
 * the bias itself (the linear forward) or reduces the bias gradient itself
 * (the linear backward), which saves the separate passes over the output.
 * Column-major, as cuBLAS. When cuBLASLt has no algorithm for a kind of
 * epilogue, it says so once and the caller keeps to the plain path. */
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

/* The descriptors of one product, made and freed per call. */
typedef struct LtDescs {
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t a, b, d;
  cublasLtMatmulPreference_t pref;
} LtDescs;

static void lt_set(const LtProduct *p, cublasLtMatmulDescAttributes_t attr, const void *v,
                   size_t bytes, cublasLtMatmulDesc_t op) {
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, attr, v, bytes),
               "%s cublasLtMatmulDescSetAttribute(%d)", p->what, (int)attr);
}

static void lt_describe(const LtProduct *p, LtDescs *d) {
  cublasComputeType_t compute =
      cuda_tf32() && !p->bf16 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&d->op, compute, CUDA_R_32F), "%s cublasLtMatmulDescCreate",
               p->what);
  cublasOperation_t ta = p->ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = p->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasLtEpilogue_t epi = p->epilogue == LT_BIAS ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_BGRADB;
  const void *bias = p->bias;
  lt_set(p, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta, d->op);
  lt_set(p, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb, d->op);
  lt_set(p, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi, d->op);
  lt_set(p, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias, d->op);
  cudaDataType in = p->bf16 ? CUDA_R_16BF : CUDA_R_32F;
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d->a, in, p->ta ? p->k : p->m, p->ta ? p->m : p->k, p->lda),
               "%s cublasLtMatrixLayoutCreate (A)", p->what);
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d->b, in, p->tb ? p->n : p->k, p->tb ? p->k : p->n, p->ldb),
               "%s cublasLtMatrixLayoutCreate (B)", p->what);
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d->d, CUDA_R_32F, p->m, p->n, p->ldd),
               "%s cublasLtMatrixLayoutCreate (D)", p->what);
  size_t ws = LT_WORKSPACE_BYTES;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&d->pref), "%s cublasLtMatmulPreferenceCreate", p->what);
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(d->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                    &ws, sizeof ws),
               "%s cublasLtMatmulPreferenceSetAttribute", p->what);
}

static void lt_free(LtDescs *d) {
  cublasLtMatmulPreferenceDestroy(d->pref);
  cublasLtMatrixLayoutDestroy(d->d);
  cublasLtMatrixLayoutDestroy(d->b);
  cublasLtMatrixLayoutDestroy(d->a);
  cublasLtMatmulDescDestroy(d->op);
}

int lt_matmul(const LtProduct *p) {
  static int refused[2]; /* per epilogue kind: once refused, not asked again */
  int kind = p->epilogue == LT_BIAS ? 0 : 1;
  if (refused[kind]) return 0;
  LtDescs d;
  lt_describe(p, &d);
  cublasLtMatmulHeuristicResult_t r;
  int found = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_handle(), d.op, d.a, d.b, d.d, d.d, d.pref,
                                                     1, &r, &found);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
    info("cuda: cuBLASLt has no %s epilogue for %s (m=%d n=%d k=%d%s): %s; the bias takes "
         "separate passes", kind == 0 ? "bias" : "bias-gradient", p->what, p->m, p->n, p->k,
         p->bf16 ? ", bf16" : "", st != CUBLAS_STATUS_SUCCESS ? cublasGetStatusString(st) : "none found");
    refused[kind] = 1;
    lt_free(&d);
    return 0;
  }
  const float alpha = 1.0f, beta = p->beta;
  CUBLAS_CHECK(cublasLtMatmul(lt_handle(), d.op, &alpha, p->A, d.a, p->B, d.b, &beta, p->D, d.d,
                              p->D, d.d, &r.algo, lt_workspace(), LT_WORKSPACE_BYTES, 0),
               "%s cublasLtMatmul (m=%d n=%d k=%d lda=%d ldb=%d ldd=%d ta=%d tb=%d%s)", p->what,
               p->m, p->n, p->k, p->lda, p->ldb, p->ldd, p->ta, p->tb, p->bf16 ? " bf16" : "");
  lt_free(&d);
  return 1;
}
