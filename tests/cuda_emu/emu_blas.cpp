/* The emulator's cuBLAS and cuBLASLt: column-major GEMMs through OpenBLAS. Arguments are
 * checked as cuBLAS checks them (sizes, leading dimensions), and every
 * matrix must lie inside device memory. TF32 math and bf16 inputs are
 * converted to packed fp32 copies first (TF32: 10 mantissa bits, rounded
 * to nearest), then multiplied in fp32, which is what the tensor cores'
 * fp32 accumulation gives up to summation order. */
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "cublasLt.h"
#include "cublas_v2.h"
#include "cuda_bf16.h"
#include "emu_internal.h"

struct EmuBlas {
  cublasMath_t math;
};

namespace {

/* One operand: element (r, c) of batch b is at base[b * stride + c * ld + r]
 * (column-major), rows x cols as stored. */
struct Operand {
  const void *base;
  cudaDataType type;
  int rows, cols, ld;
  long long stride;
};

size_t type_bytes(cudaDataType t) { return t == CUDA_R_16BF ? 2 : 4; }

bool inside_device(const Operand &o, int batch) {
  if (o.rows == 0 || o.cols == 0 || batch == 0) return true;
  if (o.stride < 0) return false;
  size_t last = (size_t)(batch - 1) * (size_t)o.stride + (size_t)(o.cols - 1) * o.ld + o.rows;
  return emu_is_device_range(o.base, last * type_bytes(o.type)) != 0;
}

float tf32(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0xfffu + ((u >> 13) & 1u)) & ~0x1fffu;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* Batch b of o as packed fp32 (ld = rows), converted as the math mode says. */
void unpack(const Operand &o, int b, bool round_tf32, std::vector<float> &out) {
  out.resize((size_t)o.rows * o.cols);
  for (int c = 0; c < o.cols; c++)
    for (int r = 0; r < o.rows; r++) {
      size_t i = (size_t)b * (size_t)o.stride + (size_t)c * o.ld + r;
      float v = o.type == CUDA_R_16BF ? __bfloat162float(((const __nv_bfloat16 *)o.base)[i])
                                      : ((const float *)o.base)[i];
      out[(size_t)c * o.rows + r] = round_tf32 ? tf32(v) : v;
    }
}

float load(const void *base, cudaDataType t, size_t i) {
  return t == CUDA_R_16BF ? __bfloat162float(((const __nv_bfloat16 *)base)[i])
                          : ((const float *)base)[i];
}

void store(void *base, cudaDataType t, size_t i, float v) {
  if (t == CUDA_R_16BF) ((__nv_bfloat16 *)base)[i] = __float2bfloat16(v);
  else ((float *)base)[i] = v;
}

/* A bias added to every column before the result is rounded (cuBLASLt's
 * bias epilogue); none when p is NULL. */
struct Bias {
  const void *p;
  cudaDataType type;
};

/* C (m x n, column-major, of type tC) = alpha op(A) op(B) + beta C (+ bias):
 * the product in fp32, then rounded once to C's type, as the tensor cores'
 * fp32 accumulation and epilogue give. */
cublasStatus_t gemm_math(bool round, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                         int k, float alpha, Operand A, Operand B, float beta, void *C,
                         cudaDataType tC, int ldc, long long sC, int batch,
                         Bias bias = Bias{nullptr, CUDA_R_32F}) {
  if (m < 0 || n < 0 || k < 0 || batch < 0 || ta == CUBLAS_OP_C || tb == CUBLAS_OP_C)
    return CUBLAS_STATUS_INVALID_VALUE;
  A.rows = ta == CUBLAS_OP_N ? m : k, A.cols = ta == CUBLAS_OP_N ? k : m;
  B.rows = tb == CUBLAS_OP_N ? k : n, B.cols = tb == CUBLAS_OP_N ? n : k;
  if (A.ld < (A.rows > 1 ? A.rows : 1) || B.ld < (B.rows > 1 ? B.rows : 1) || ldc < (m > 1 ? m : 1))
    return CUBLAS_STATUS_INVALID_VALUE;
  Operand Co = {C, tC, m, n, ldc, sC};
  if (!inside_device(A, batch) || !inside_device(B, batch) || !inside_device(Co, batch)) {
    fprintf(stderr, "cuda emulator: a GEMM operand (m=%d n=%d k=%d batch=%d) is not inside device memory\n",
            m, n, k, batch);
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  std::vector<float> a, bm, c((size_t)m * n);
  for (int b = 0; b < batch; b++) {
    size_t at = (size_t)b * (size_t)sC;
    /* beta = 0: C is written, never read (it may hold NaN) */
    for (int j = 0; j < n; j++)
      for (int i = 0; i < m; i++)
        c[(size_t)j * m + i] = beta == 0.0f ? 0.0f : load(C, tC, at + (size_t)j * ldc + i);
    if (m > 0 && n > 0 && k > 0) {
      unpack(A, b, round, a);
      unpack(B, b, round, bm);
      cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                  tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, alpha, a.data(), A.rows,
                  bm.data(), B.rows, beta, c.data(), m);
    }
    for (int j = 0; j < n; j++)
      for (int i = 0; i < m; i++) {
        float v = c[(size_t)j * m + i];
        if (bias.p) v += load(bias.p, bias.type, i);
        store(C, tC, at + (size_t)j * ldc + i, v);
      }
  }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                    int k, float alpha, Operand A, Operand B, float beta, void *C,
                    cudaDataType tC, int ldc, long long sC, int batch) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  return gemm_math(h->math == CUBLAS_TF32_TENSOR_OP_MATH, ta, tb, m, n, k, alpha, A, B, beta, C,
                   tC, ldc, sC, batch);
}

/* Products from arrays of pointers, which must lie in device memory. */
cublasStatus_t gemm_pointers(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                             int n, int k, float alpha, const void *const A[], cudaDataType tA,
                             int lda, const void *const B[], cudaDataType tB, int ldb, float beta,
                             void *const C[], cudaDataType tC, int ldc, int batch) {
  if (batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
  size_t bytes = (size_t)batch * sizeof(void *);
  if (batch && (!emu_is_device_range(A, bytes) || !emu_is_device_range(B, bytes) ||
                !emu_is_device_range(C, bytes))) {
    fprintf(stderr, "cuda emulator: batched GEMM pointer arrays are not in device memory\n");
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  for (int i = 0; i < batch; i++) {
    cublasStatus_t st = gemm(h, ta, tb, m, n, k, alpha, Operand{A[i], tA, 0, 0, lda, 0},
                             Operand{B[i], tB, 0, 0, ldb, 0}, beta, C[i], tC, ldc, 0, 1);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
  }
  return CUBLAS_STATUS_SUCCESS;
}

/* The combinations bertrain uses: fp32 compute, A and B of one type, C
 * fp32 or (with bf16 inputs) bf16. */
bool supported_types(cudaDataType a, cudaDataType b, cudaDataType c, cublasComputeType_t compute) {
  return compute == CUBLAS_COMPUTE_32F && a == b &&
         (c == CUDA_R_32F || (c == CUDA_R_16BF && a == CUDA_R_16BF));
}

}  // namespace

extern "C" {

const char *cublasGetStatusString(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED (emulator)";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED (emulator)";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE (emulator)";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED (emulator)";
  }
  return "unknown cuBLAS status (emulator)";
}

cublasStatus_t cublasCreate(cublasHandle_t *h) {
  *h = new EmuBlas{CUBLAS_DEFAULT_MATH};
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t) {
  return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  h->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetAtomicsMode(cublasHandle_t h, cublasAtomicsMode_t) {
  return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

/* Only host pointers for alpha and beta are emulated. */
cublasStatus_t cublasSetPointerMode(cublasHandle_t h, cublasPointerMode_t mode) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  return mode == CUBLAS_POINTER_MODE_HOST ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float *alpha, const float *A, int lda,
                           const float *B, int ldb, const float *beta, float *C, int ldc) {
  emu_count_gemm();
  return gemm(h, ta, tb, m, n, k, *alpha, Operand{A, CUDA_R_32F, 0, 0, lda, 0},
              Operand{B, CUDA_R_32F, 0, 0, ldb, 0}, *beta, C, CUDA_R_32F, ldc, 0, 1);
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta,
                                         cublasOperation_t tb, int m, int n, int k,
                                         const float *alpha, const float *A, int lda,
                                         long long sA, const float *B, int ldb, long long sB,
                                         const float *beta, float *C, int ldc, long long sC,
                                         int batch) {
  emu_count_gemm();
  return gemm(h, ta, tb, m, n, k, *alpha, Operand{A, CUDA_R_32F, 0, 0, lda, sA},
              Operand{B, CUDA_R_32F, 0, 0, ldb, sB}, *beta, C, CUDA_R_32F, ldc, sC, batch);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta,
                                          cublasOperation_t tb, int m, int n, int k,
                                          const void *alpha, const void *A, cudaDataType typeA,
                                          int lda, long long sA, const void *B,
                                          cudaDataType typeB, int ldb, long long sB,
                                          const void *beta, void *C, cudaDataType typeC,
                                          int ldc, long long sC, int batch,
                                          cublasComputeType_t compute, cublasGemmAlgo_t) {
  emu_count_gemm();
  if (!supported_types(typeA, typeB, typeC, compute)) return CUBLAS_STATUS_NOT_SUPPORTED;
  return gemm(h, ta, tb, m, n, k, *(const float *)alpha, Operand{A, typeA, 0, 0, lda, sA},
              Operand{B, typeB, 0, 0, ldb, sB}, *(const float *)beta, C, typeC, ldc, sC, batch);
}

cublasStatus_t cublasSgemmBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                  int m, int n, int k, const float *alpha,
                                  const float *const A[], int lda, const float *const B[],
                                  int ldb, const float *beta, float *const C[], int ldc,
                                  int batch) {
  emu_count_gemm();
  return gemm_pointers(h, ta, tb, m, n, k, *alpha, (const void *const *)A, CUDA_R_32F, lda,
                       (const void *const *)B, CUDA_R_32F, ldb, *beta, (void *const *)C,
                       CUDA_R_32F, ldc, batch);
}

cublasStatus_t cublasGemmBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                   int m, int n, int k, const void *alpha, const void *const A[],
                                   cudaDataType typeA, int lda, const void *const B[],
                                   cudaDataType typeB, int ldb, const void *beta,
                                   void *const C[], cudaDataType typeC, int ldc, int batch,
                                   cublasComputeType_t compute, cublasGemmAlgo_t) {
  emu_count_gemm();
  if (!supported_types(typeA, typeB, typeC, compute)) return CUBLAS_STATUS_NOT_SUPPORTED;
  return gemm_pointers(h, ta, tb, m, n, k, *(const float *)alpha, A, typeA, lda, B, typeB, ldb,
                       *(const float *)beta, C, typeC, ldc, batch);
}

/* ---- cuBLASLt ---- */

}  // extern "C"

struct EmuLt {
  int unused;
};
struct EmuLtDesc {
  cublasComputeType_t compute;
  cublasOperation_t ta, tb;
  cublasLtEpilogue_t epilogue;
  void *bias; /* of D's type, as cuBLASLt's default */
};
struct EmuLtLayout {
  cudaDataType type;
  uint64_t rows, cols;
  int64_t ld;
};
struct EmuLtPref {
  size_t workspace;
  uint32_t align[4]; /* A, B, C, D: the alignment the algorithm may assume */
};

namespace {

/* The pointers are as aligned as the algorithm assumes (its preference's
 * alignments, kept in algo data[0..3]), and the bias 16 bytes; a mismatch
 * is reported, since on a GPU it may fault instead. */
bool lt_aligned(const cublasLtMatmulAlgo_t *algo, const void *A, const void *B, const void *C,
                const void *D, const void *bias) {
  const void *p[4] = {A, B, C, D};
  for (int i = 0; i < 4; i++)
    if ((uintptr_t)p[i] % algo->data[i] != 0) {
      fprintf(stderr, "cuda emulator: cublasLtMatmul: matrix %c at %p is not %u-byte aligned, "
              "as its algorithm assumes\n", "ABCD"[i], p[i], (unsigned)algo->data[i]);
      return false;
    }
  if (bias && (uintptr_t)bias % 16 != 0) {
    fprintf(stderr, "cuda emulator: cublasLtMatmul: bias at %p is not 16-byte aligned\n", bias);
    return false;
  }
  return true;
}

/* The layouts fit m, n, k and the transposes, C and D alike, and the
 * epilogue is one the emulator knows. */
bool lt_consistent(const EmuLtDesc *op, const EmuLtLayout *a, const EmuLtLayout *b,
                   const EmuLtLayout *c, const EmuLtLayout *d) {
  uint64_t m = d->rows, n = d->cols, k = op->ta == CUBLAS_OP_N ? a->cols : a->rows;
  bool ok = (op->ta == CUBLAS_OP_N ? a->rows : a->cols) == m;
  ok &= (op->tb == CUBLAS_OP_N ? b->rows : b->cols) == k;
  ok &= (op->tb == CUBLAS_OP_N ? b->cols : b->rows) == n;
  ok &= c->rows == m && c->cols == n && c->type == d->type;
  ok &= a->type == b->type && (d->type == CUDA_R_32F || (d->type == CUDA_R_16BF && a->type == CUDA_R_16BF));
  ok &= op->epilogue == CUBLASLT_EPILOGUE_DEFAULT || op->epilogue == CUBLASLT_EPILOGUE_BIAS;
  return ok;
}

}  // namespace

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
  *h = new EmuLt{0};
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
  if (scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  *d = new EmuLtDesc{compute, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT, nullptr};
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  delete d;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d,
                                              cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t bytes) {
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB:
      if (bytes != sizeof(cublasOperation_t)) return CUBLAS_STATUS_INVALID_VALUE;
      memcpy(attr == CUBLASLT_MATMUL_DESC_TRANSA ? &d->ta : &d->tb, buf, bytes);
      return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
      if (bytes != sizeof(cublasLtEpilogue_t)) return CUBLAS_STATUS_INVALID_VALUE;
      memcpy(&d->epilogue, buf, bytes);
      return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
      if (bytes != sizeof(void *)) return CUBLAS_STATUS_INVALID_VALUE;
      memcpy(&d->bias, buf, bytes);
      return CUBLAS_STATUS_SUCCESS;
  }
  return CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
  if (ld < (int64_t)(rows > 1 ? rows : 1)) return CUBLAS_STATUS_INVALID_VALUE;
  *l = new EmuLtLayout{type, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete l;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
  *p = new EmuLtPref{0, {256, 256, 256, 256}};
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete p;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void *buf, size_t bytes) {
  if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {
    if (bytes != sizeof(size_t)) return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(&p->workspace, buf, bytes);
    return CUBLAS_STATUS_SUCCESS;
  }
  int which = (int)attr - (int)CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES;
  if (which < 0 || which > 3 || bytes != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
  memcpy(&p->align[which], buf, bytes);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t op,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[],
                                              int *found) {
  *found = 0;
  if (!h || !pref || requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
  if (!lt_consistent(op, a, b, c, d)) return CUBLAS_STATUS_INVALID_VALUE;
  const char *refuse = getenv("BERTRAIN_EMU_LT");
  if (refuse && strcmp(refuse, "refuse") == 0) return CUBLAS_STATUS_NOT_SUPPORTED;
  memset(&results[0], 0, sizeof results[0]);
  for (int i = 0; i < 4; i++) results[0].algo.data[i] = pref->align[i];
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].wavesCount = 1.0f;
  *found = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t op, const void *alpha,
                              const void *A, cublasLtMatrixLayout_t a, const void *B,
                              cublasLtMatrixLayout_t b, const void *beta, const void *C,
                              cublasLtMatrixLayout_t c, void *D, cublasLtMatrixLayout_t d,
                              const cublasLtMatmulAlgo_t *algo, void *, size_t, cudaStream_t) {
  emu_count_gemm();
  if (!h || !algo || !lt_consistent(op, a, b, c, d)) return CUBLAS_STATUS_INVALID_VALUE;
  if (!lt_aligned(algo, A, B, C, D, op->bias)) return CUBLAS_STATUS_INVALID_VALUE;
  int m = (int)d->rows, n = (int)d->cols, k = (int)(op->ta == CUBLAS_OP_N ? a->cols : a->rows);
  size_t eb = type_bytes(d->type);
  if (C != D) { /* D starts as C, then the product goes on top (beta) */
    Operand Co = {C, c->type, m, n, (int)c->ld, 0};
    if (!inside_device(Co, 1)) return CUBLAS_STATUS_INVALID_VALUE;
    for (int j = 0; j < n; j++)
      memcpy((char *)D + (size_t)j * d->ld * eb, (const char *)C + (size_t)j * c->ld * eb,
             (size_t)m * eb);
  }
  /* the bias has D's type */
  if (op->epilogue == CUBLASLT_EPILOGUE_BIAS &&
      (!op->bias || !emu_is_device_range(op->bias, (size_t)m * eb)))
    return CUBLAS_STATUS_INVALID_VALUE;
  Bias bias = {op->epilogue == CUBLASLT_EPILOGUE_BIAS ? op->bias : nullptr, d->type};
  cublasStatus_t st = gemm_math(op->compute == CUBLAS_COMPUTE_32F_FAST_TF32, op->ta, op->tb, m, n,
                                k, *(const float *)alpha,
                                Operand{A, a->type, 0, 0, (int)a->ld, 0},
                                Operand{B, b->type, 0, 0, (int)b->ld, 0}, *(const float *)beta,
                                D, d->type, (int)d->ld, 0, 1, bias);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
