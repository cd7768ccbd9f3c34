/* Matrix products through OpenBLAS: linear layers and self-attention.
 * OpenBLAS's results depend on its thread count and on the shape of each
 * call (edge tiles take other kernels), so it runs single-threaded (set in
 * ops_cpu()) and products are cut into fixed GEMM_TILE_M x GEMM_TILE_N tiles
 * of the result that OpenMP spreads over threads: the tiles, and so every
 * bit of the result, do not depend on the thread count. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops_check.h"
#include "ops_cpu_internal.h"
#include "util.h"

#define GEMM_TILE_M 128
#define GEMM_TILE_N 256

/* Row-major C[m,n] = alpha op(A) op(B) + beta C, tile by tile. */
static void gemm_tiled(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, float alpha,
                       const float *a, int lda, const float *b, int ldb, float beta, float *c,
                       int ldc) {
  int tm = (m + GEMM_TILE_M - 1) / GEMM_TILE_M, tn = (n + GEMM_TILE_N - 1) / GEMM_TILE_N;
#pragma omp parallel for schedule(dynamic, 1)
  for (int t = 0; t < tm * tn; t++) {
    int i0 = t / tn * GEMM_TILE_M, j0 = t % tn * GEMM_TILE_N;
    int mi = m - i0 < GEMM_TILE_M ? m - i0 : GEMM_TILE_M;
    int nj = n - j0 < GEMM_TILE_N ? n - j0 : GEMM_TILE_N;
    /* rows i0.. of op(A) and columns j0.. of op(B) */
    const float *at = ta == CblasNoTrans ? a + (size_t)i0 * lda : a + i0;
    const float *bt = tb == CblasNoTrans ? b + j0 : b + (size_t)j0 * ldb;
    cblas_sgemm(CblasRowMajor, ta, tb, mi, nj, k, alpha, at, lda, bt, ldb, beta,
                c + (size_t)i0 * ldc + j0, ldc);
  }
}

void cpu_linear_fwd(float *y, const float *x, const float *w, const float *b, int n, int in,
                    int out) {
  ops_check_dims("linear_fwd", n, in, out);
  float beta = 0.0f;
  if (b) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++) memcpy(y + (size_t)r * out, b, (size_t)out * sizeof *y);
    beta = 1.0f;
  }
  gemm_tiled(CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, beta, y, out);
}

void cpu_linear_bwd(float *dx, float *dw, float *db, const float *dy, const float *x,
                    const float *w, int n, int in, int out, int accumulate_dx) {
  ops_check_dims("linear_bwd", n, in, out);
  if (dx)
    gemm_tiled(CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, w, in,
               accumulate_dx ? 1.0f : 0.0f, dx, in);
  if (dw)
    gemm_tiled(CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in, 1.0f, dw, in);
  if (db) cpu_colsum_acc(db, dy, n, out);
}

/* Where one (sample, head) block lives in the [B,S,ld] and [B,nh,S,S] layouts. */
typedef struct Head {
  size_t qkv;   /* offset of row 0 of this head in q/k/v */
  size_t ctx;   /* offset in the contiguous [B,S,nh*hd] context */
  size_t probs; /* offset of the S x S block in probs */
} Head;

static Head head_at(int bh, int S, int nh, int hd, int ld) {
  int b = bh / nh, h = bh % nh;
  Head o;
  o.qkv = (size_t)b * S * ld + (size_t)h * hd;
  o.ctx = (size_t)b * S * nh * hd + (size_t)h * hd;
  o.probs = (size_t)bh * S * S;
  return o;
}

static void softmax_rows(float *P, const int32_t *mask_row, int S) {
  for (int i = 0; i < S; i++) {
    float *row = P + (size_t)i * S;
    float mx = -INFINITY;
    for (int j = 0; j < S; j++) {
      if (mask_row && mask_row[j] == 0) row[j] += ATTN_MASK_NEG;
      if (row[j] > mx) mx = row[j];
    }
    double sum = 0.0;
    for (int j = 0; j < S; j++) {
      row[j] = expf(row[j] - mx);
      sum += row[j];
    }
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < S; j++) row[j] *= inv;
  }
}

/* Heads are independent, so they are spread over threads with one S x S
 * scratch block per thread; each head's products have fixed shapes. */
void cpu_attn_fwd(float *ctx, float *probs, const float *q, const float *k, const float *v,
                  int ld, const int32_t *mask, int B, int S, int nh, int hd, float p,
                  DropoutKey key) {
  ops_check_attn("attn_fwd", ld, B, S, nh, hd, p);
  const float scale = 1.0f / sqrtf((float)hd);
  const int H = nh * hd;
#pragma omp parallel
  {
    float *scratch = p > 0.0f ? xmalloc((size_t)S * S * sizeof *scratch) : NULL;
#pragma omp for schedule(static)
    for (int bh = 0; bh < B * nh; bh++) {
      Head o = head_at(bh, S, nh, hd, ld);
      float *P = probs + o.probs;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, S, S, hd, scale, q + o.qkv, ld,
                  k + o.qkv, ld, 0.0f, P, S);
      softmax_rows(P, mask ? mask + (size_t)(bh / nh) * S : NULL, S);
      const float *Pd = P;
      if (scratch) {
        cpu_drop_run(scratch, P, (size_t)S * S, p, key, key.elem_offset + o.probs);
        Pd = scratch;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, S, hd, S, 1.0f, Pd, S, v + o.qkv,
                  ld, 0.0f, ctx + o.ctx, H);
    }
    free(scratch);
  }
}

/* With Pd = dropout(P): dV = Pd^T dC; dPd = dC V^T; dP = dropout'(dPd);
 * dScores = P * (dP - rowsum(P * dP)); dQ = dScores K / sqrt(hd);
 * dK = dScores^T Q / sqrt(hd). */
void cpu_attn_bwd(float *dq, float *dk, float *dv, const float *dctx, const float *probs,
                  const float *q, const float *k, const float *v, int ld, int B, int S, int nh,
                  int hd, float p, DropoutKey key) {
  ops_check_attn("attn_bwd", ld, B, S, nh, hd, p);
  const float scale = 1.0f / sqrtf((float)hd);
  const int H = nh * hd;
#pragma omp parallel
  {
    float *pd = p > 0.0f ? xmalloc((size_t)S * S * sizeof *pd) : NULL;
    float *dP = xmalloc((size_t)S * S * sizeof *dP);
#pragma omp for schedule(static)
    for (int bh = 0; bh < B * nh; bh++) {
      Head o = head_at(bh, S, nh, hd, ld);
      const float *P = probs + o.probs, *dC = dctx + o.ctx;
      uint64_t e0 = key.elem_offset + o.probs;
      const float *Pd = P;
      if (pd) {
        cpu_drop_run(pd, P, (size_t)S * S, p, key, e0);
        Pd = pd;
      }
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, S, hd, S, 1.0f, Pd, S, dC, H, 0.0f,
                  dv + o.qkv, ld);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, S, S, hd, 1.0f, dC, H, v + o.qkv, ld,
                  0.0f, dP, S);
      if (pd) cpu_drop_run(dP, dP, (size_t)S * S, p, key, e0);
      for (int i = 0; i < S; i++) {
        const float *pr = P + (size_t)i * S;
        float *dr = dP + (size_t)i * S;
        double dot = 0.0;
        for (int j = 0; j < S; j++) dot += (double)pr[j] * dr[j];
        float fdot = (float)dot;
        for (int j = 0; j < S; j++) dr[j] = pr[j] * (dr[j] - fdot);
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, S, hd, S, scale, dP, S, k + o.qkv,
                  ld, 0.0f, dq + o.qkv, ld);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, S, hd, S, scale, dP, S, q + o.qkv, ld,
                  0.0f, dk + o.qkv, ld);
    }
    free(pd);
    free(dP);
  }
}
