/* Row-wise ops: embeddings, layernorm, row gather, softmax cross-entropy.
 * Forward passes split rows over threads (each row is computed alone);
 * scatter-adds and column sums split columns and walk rows in order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops_check.h"
#include "ops_cpu_internal.h"
#include "util.h"

static void check_ids(const char *op, const char *what, const int32_t *ids, size_t n, int limit) {
  for (size_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= limit)
      die("ops: %s: %s %d at index %zu is outside [0, %d)", op, what, (int)ids[i], i, limit);
}

void cpu_embed_fwd(float *out, const int32_t *word_ids, const int32_t *type_ids,
                   const float *wte, const float *wpe, const float *wtt, int B, int S, int H,
                   int vocab, int ntypes) {
  size_t n = (size_t)B * S;
  check_ids("embed_fwd", "word id", word_ids, n, vocab);
  if (type_ids) check_ids("embed_fwd", "token type id", type_ids, n, ntypes);
#pragma omp parallel for schedule(static)
  for (size_t t = 0; t < n; t++) {
    const float *w = wte + (size_t)word_ids[t] * H;
    const float *ty = wtt + (size_t)(type_ids ? type_ids[t] : 0) * H;
    const float *ps = wpe + (t % (size_t)S) * H;
    float *o = out + t * H;
    for (int j = 0; j < H; j++) o[j] = (w[j] + ty[j]) + ps[j];
  }
}

void cpu_embed_bwd(float *dwte, float *dwpe, float *dwtt, const float *dout,
                   const int32_t *word_ids, const int32_t *type_ids, int B, int S, int H, int vocab,
                   int ntypes) {
  (void)vocab, (void)ntypes; /* the ids were checked by embed_fwd */
  size_t n = (size_t)B * S;
  int nch = (H + COL_CHUNK - 1) / COL_CHUNK;
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < nch; ch++) {
    int lo = ch * COL_CHUNK, hi = lo + COL_CHUNK < H ? lo + COL_CHUNK : H;
    for (size_t t = 0; t < n; t++) {
      const float *d = dout + t * H;
      float *w = dwte ? dwte + (size_t)word_ids[t] * H : NULL;
      float *ps = dwpe ? dwpe + (t % (size_t)S) * H : NULL;
      float *ty = dwtt ? dwtt + (size_t)(type_ids ? type_ids[t] : 0) * H : NULL;
      for (int j = lo; j < hi; j++) {
        if (w) w[j] += d[j];
        if (ps) ps[j] += d[j];
        if (ty) ty[j] += d[j];
      }
    }
  }
}

void cpu_layernorm_fwd(float *out, float *mean, float *rstd, const float *x, const float *gamma,
                       const float *beta, int n, int c, float eps) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < n; r++) {
    const float *xr = x + (size_t)r * c;
    float *o = out + (size_t)r * c;
    double s = 0.0;
    for (int j = 0; j < c; j++) s += xr[j];
    double mu = s / c, ss = 0.0;
    for (int j = 0; j < c; j++) ss += (xr[j] - mu) * (xr[j] - mu);
    float m = (float)mu, rs = (float)(1.0 / sqrt(ss / c + eps));
    for (int j = 0; j < c; j++) o[j] = (xr[j] - m) * rs * gamma[j] + beta[j];
    mean[r] = m;
    rstd[r] = rs;
  }
}

/* dgamma/dbeta first (column pass), then dx row by row, so dx may overwrite
 * dy: with xhat = (x - mean) rstd and g = dy gamma,
 * dx = rstd (g - mean(g) - xhat mean(g xhat)). */
void cpu_layernorm_bwd(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                       const float *mean, const float *rstd, const float *gamma, int n, int c) {
  int nch = (c + COL_CHUNK - 1) / COL_CHUNK;
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < nch; ch++) {
    int lo = ch * COL_CHUNK, hi = lo + COL_CHUNK < c ? lo + COL_CHUNK : c;
    double sg[COL_CHUNK] = {0}, sb[COL_CHUNK] = {0};
    for (int r = 0; r < n; r++) {
      const float *xr = x + (size_t)r * c + lo, *dr = dy + (size_t)r * c + lo;
      const float m = mean[r], rs = rstd[r];
      /* each column's sums in row order, two columns a vector */
#pragma omp simd
      for (int j = 0; j < hi - lo; j++) {
        sg[j] += dr[j] * ((xr[j] - m) * rs);
        sb[j] += dr[j];
      }
    }
    for (int j = lo; j < hi; j++) {
      if (dgamma) dgamma[j] += (float)sg[j - lo];
      if (dbeta) dbeta[j] += (float)sb[j - lo];
    }
  }
#pragma omp parallel for schedule(static)
  for (int r = 0; r < n; r++) {
    const float *xr = x + (size_t)r * c, *dr = dy + (size_t)r * c;
    float *o = dx + (size_t)r * c;
    float m = mean[r], rs = rstd[r];
    double s1 = 0.0, s2 = 0.0;
    for (int j = 0; j < c; j++) {
      float g = dr[j] * gamma[j];
      s1 += g;
      s2 += g * ((xr[j] - m) * rs);
    }
    float a = (float)(s1 / c), b = (float)(s2 / c);
#pragma omp simd
    for (int j = 0; j < c; j++) {
      float g = dr[j] * gamma[j];
      o[j] = rs * (g - a - ((xr[j] - m) * rs) * b);
    }
  }
}

void cpu_gather_fwd(float *out, const float *x, const int32_t *idx, int n, int rows, int c) {
  check_ids("gather_fwd", "row", idx, (size_t)n, rows);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; i++)
    memcpy(out + (size_t)i * c, x + (size_t)idx[i] * c, (size_t)c * sizeof *out);
}

void cpu_gather_bwd(float *dx, const float *dout, const int32_t *idx, int n, int rows, int c) {
  check_ids("gather_bwd", "row", idx, (size_t)n, rows);
  int nch = (c + COL_CHUNK - 1) / COL_CHUNK;
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < nch; ch++) {
    int lo = ch * COL_CHUNK, hi = lo + COL_CHUNK < c ? lo + COL_CHUNK : c;
    for (int i = 0; i < n; i++) {
      float *d = dx + (size_t)idx[i] * c;
      const float *g = dout + (size_t)i * c;
      for (int j = lo; j < hi; j++) d[j] += g[j];
    }
  }
}

static void check_labels(const char *op, const int32_t *labels, int n, int v) {
  for (int i = 0; i < n; i++)
    if (labels[i] >= v) die("ops: %s: label %d of row %d is not below %d classes", op, (int)labels[i], i, v);
}

/* Row maximum (its first index in *arg) and log of the sum of exp(x - max):
 * a float exp per logit, as the CUDA kernel, summed in double. */
static float row_max_lse(const float *x, int v, int *arg, double *log_sum) {
  float mx = x[0];
  int a = 0;
  for (int j = 1; j < v; j++)
    if (x[j] > mx) mx = x[j], a = j;
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int j = 0; j < v; j++) s += expf(x[j] - mx);
  *arg = a;
  *log_sum = log(s);
  return mx;
}

/* Row i's loss from its maximum mx (first at arg) and log-sum-exp ls, xl
 * the label's logit; and whether the first argmax is the label. */
static void put_row_loss(double *loss, int *hit, int i, float mx, int arg, double ls, float xl,
                         int label) {
  loss[i] = (double)mx + ls - xl;
  hit[i] = arg == label;
}

/* out = { mean of the counted rows' losses, hits, counted rows }, summed in
 * row order. */
static void xent_total(float *out, const double *loss, const int *hit, const int32_t *labels,
                       int n) {
  double total = 0.0;
  int count = 0, correct = 0;
  for (int i = 0; i < n; i++) {
    total += loss[i];
    correct += hit[i];
    count += labels[i] >= 0;
  }
  out[0] = count ? (float)(total / count) : 0.0f;
  out[1] = (float)correct;
  out[2] = (float)count;
}

void cpu_xent_fwd(float *out, const float *logits, const int32_t *labels, int n, int v, int ld) {
  ops_check_xent("xent_fwd", n, v, ld);
  check_labels("xent_fwd", labels, n, v);
  double *loss = xmalloc((size_t)n * sizeof *loss);
  int *hit = xmalloc((size_t)n * sizeof *hit);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; i++) {
    loss[i] = 0.0;
    hit[i] = 0;
    if (labels[i] < 0) continue;
    const float *x = logits + (size_t)i * ld;
    int arg;
    double ls;
    float mx = row_max_lse(x, v, &arg, &ls);
    put_row_loss(loss, hit, i, mx, arg, ls, x[labels[i]], labels[i]);
  }
  xent_total(out, loss, hit, labels, n);
  free(loss);
  free(hit);
}

void cpu_xent_bwd(float *dlogits, float *out, const float *logits, const int32_t *labels, int n,
                  int v, int ld, float scale) {
  ops_check_xent("xent_bwd", n, v, ld);
  check_labels("xent_bwd", labels, n, v);
  double *loss = out ? xmalloc((size_t)n * sizeof *loss) : NULL;
  int *hit = out ? xmalloc((size_t)n * sizeof *hit) : NULL;
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; i++) {
    const float *x = logits + (size_t)i * ld;
    float *d = dlogits + (size_t)i * ld;
    if (loss) loss[i] = 0.0, hit[i] = 0;
    if (labels[i] < 0) {
      memset(d, 0, (size_t)ld * sizeof *d);
      continue;
    }
    int arg;
    double ls;
    float mx = row_max_lse(x, v, &arg, &ls);
    /* before d, which may be x, is written */
    if (loss) put_row_loss(loss, hit, i, mx, arg, ls, x[labels[i]], labels[i]);
    const float lse = (float)(mx + ls); /* in float: ~1e-6 relative, as on the GPU */
#pragma omp simd
    for (int j = 0; j < v; j++) d[j] = scale * expf(x[j] - lse);
    memset(d + v, 0, (size_t)(ld - v) * sizeof *d);
    d[labels[i]] -= scale;
  }
  if (out) xent_total(out, loss, hit, labels, n);
  free(loss);
  free(hit);
}
