/* The CPU backend's table, memory (plain host memory), elementwise ops and
 * dropout. Elementwise loops need no care for determinism: each element's
 * value depends on that element alone. */
#include <cblas.h> /* OpenBLAS's: openblas_set_num_threads */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops_check.h"
#include "ops_cpu_internal.h"
#include "util.h"

#define SQRT1_2 0.70710678118654752f

static void *cpu_alloc(size_t bytes) { return xcalloc(1, bytes ? bytes : 1); }
static void cpu_free(void *p) { free(p); }
static void cpu_zero(void *p, size_t bytes) { memset(p, 0, bytes); }
static void cpu_memcpy(void *dst, const void *src, size_t bytes) {
  if (bytes) memmove(dst, src, bytes);
}
static void cpu_sync(void) {}

static void cpu_set_tf32(int on) { (void)on; }

static void cpu_params_at(const float *w, size_t n) { (void)w, (void)n; }

static void cpu_set_bf16(int on) {
  if (on) die("ops: bf16 matrix products need the CUDA backend (run.device = cuda)");
}

static void cpu_device_info(DeviceInfo *out) {
  memset(out, 0, sizeof *out);
  snprintf(out->name, sizeof out->name, "CPU, %d OpenMP threads", omp_get_max_threads());
}

#define MARKS 4
static double g_marks[MARKS];

static int mark_slot(int slot) {
  if (slot < 0 || slot >= MARKS) die("ops: timing mark %d is outside [0, %d)", slot, MARKS);
  return slot;
}

static void cpu_mark(int slot) { g_marks[mark_slot(slot)] = now_seconds(); }

static double cpu_mark_ms(int from, int to) {
  return (g_marks[mark_slot(to)] - g_marks[mark_slot(from)]) * 1e3;
}

static void cpu_set_threads(int n) {
  if (n < 1) die("ops: thread count must be at least 1 (got %d)", n);
  omp_set_num_threads(n);
}

void cpu_colsum_acc(float *acc, const float *x, int rows, int c) {
  int nch = (c + COL_CHUNK - 1) / COL_CHUNK;
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < nch; ch++) {
    int lo = ch * COL_CHUNK, hi = lo + COL_CHUNK < c ? lo + COL_CHUNK : c;
    double s[COL_CHUNK] = {0};
    for (int r = 0; r < rows; r++) {
      const float *xr = x + (size_t)r * c + lo;
      /* each column's sum in row order, two columns a vector */
#pragma omp simd
      for (int j = 0; j < hi - lo; j++) s[j] += xr[j];
    }
    for (int j = lo; j < hi; j++) acc[j] += (float)s[j - lo];
  }
}

static void cpu_add(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

static void cpu_scale(float *x, size_t n, float s) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) x[i] *= s;
}

/* The GELU goes eight elements at a time through one vector loop, and a
 * last partial group through a padded copy, so that every element takes the
 * same code: libmvec's erff and the scalar one differ in the last bits, and
 * a scalar remainder would make the result depend on where a thread's or a
 * rank's rows end. */
#define GELU_GROUP 8

static void gelu_fwd_group(float *out, const float *x) {
#pragma omp simd
  for (int i = 0; i < GELU_GROUP; i++) out[i] = 0.5f * x[i] * (1.0f + erff(x[i] * SQRT1_2));
}

/* d/dx [x Phi(x)] = Phi(x) + x phi(x) */
static void gelu_bwd_group(float *dx, const float *dy, const float *x) {
  const float inv_sqrt_2pi = 0.3989422804014327f;
#pragma omp simd
  for (int i = 0; i < GELU_GROUP; i++) {
    float xi = x[i];
    float cdf = 0.5f * (1.0f + erff(xi * SQRT1_2));
    float pdf = inv_sqrt_2pi * expf(-0.5f * xi * xi);
    dx[i] = dy[i] * (cdf + xi * pdf);
  }
}

/* The last `rest` elements of src, zero-padded to a group. */
static void gelu_pad(float pad[GELU_GROUP], const float *src, size_t rest) {
  memset(pad, 0, GELU_GROUP * sizeof *pad);
  memcpy(pad, src, rest * sizeof *pad);
}

static void cpu_gelu_fwd(float *out, const float *x, size_t n) {
  const size_t groups = n / GELU_GROUP, done = groups * GELU_GROUP, rest = n - done;
#pragma omp parallel for schedule(static)
  for (size_t g = 0; g < groups; g++) gelu_fwd_group(out + g * GELU_GROUP, x + g * GELU_GROUP);
  if (rest) {
    float xs[GELU_GROUP], ys[GELU_GROUP];
    gelu_pad(xs, x + done, rest);
    gelu_fwd_group(ys, xs);
    memcpy(out + done, ys, rest * sizeof *ys);
  }
}

static void cpu_gelu_bwd(float *dx, float *dbias, const float *dy, const float *x, size_t n, int c) {
  ops_check_rows("gelu_bwd", dbias, n, c);
  const size_t groups = n / GELU_GROUP, done = groups * GELU_GROUP, rest = n - done;
#pragma omp parallel for schedule(static)
  for (size_t g = 0; g < groups; g++) {
    const size_t o = g * GELU_GROUP;
    gelu_bwd_group(dx + o, dy + o, x + o);
  }
  if (rest) {
    float xs[GELU_GROUP], dys[GELU_GROUP], dxs[GELU_GROUP];
    gelu_pad(xs, x + done, rest);
    gelu_pad(dys, dy + done, rest);
    gelu_bwd_group(dxs, dys, xs);
    memcpy(dx + done, dxs, rest * sizeof *dxs);
  }
  if (dbias) cpu_colsum_acc(dbias, dx, (int)(n / (size_t)c), c);
}

static void cpu_tanh_fwd(float *out, const float *x, size_t n) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) out[i] = tanhf(x[i]);
}

static void cpu_tanh_bwd(float *dx, const float *dy, const float *y, size_t n) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

/* Each Philox call serves four consecutive elements (a block, e / 4); the
 * run's first and last blocks may be partial. DROP_BLOCKS blocks are drawn
 * at a time, in a loop the compiler vectorises (four blocks at once), and
 * the mask is applied without a branch: together about 2.5 times faster
 * than a block and a test at a time (dropout was a fifth of a CPU
 * fine-tuning step). */
#define DROP_BLOCKS 16

/* The words of blocks b0 .. b0 + DROP_BLOCKS - 1, in element order. */
static void drop_words(uint32_t w[4 * DROP_BLOCKS], DropoutKey k, uint64_t b0) {
  uint32_t by_word[4][DROP_BLOCKS];
#pragma omp simd
  for (int b = 0; b < DROP_BLOCKS; b++) {
    const philox4x32_ctr_t r = dropout_block(k.seed, k.step, k.tensor, b0 + (uint64_t)b);
    by_word[0][b] = r.v[0], by_word[1][b] = r.v[1];
    by_word[2][b] = r.v[2], by_word[3][b] = r.v[3];
  }
  for (int b = 0; b < DROP_BLOCKS; b++)
    for (int j = 0; j < 4; j++) w[4 * b + j] = by_word[j][b];
}

void cpu_drop_run(float *out, const float *x, size_t n, float p, DropoutKey k, uint64_t e0) {
  const float s = 1.0f / (1.0f - p);
  const uint32_t t = dropout_threshold(p);
  uint32_t w[4 * DROP_BLOCKS];
  for (size_t i = 0, m; i < n; i += m) {
    const uint64_t e = e0 + i;
    drop_words(w, k, e >> 2);
    const uint32_t *wi = w + (e & 3);
    m = min_size(4 * DROP_BLOCKS - (e & 3), n - i);
    /* A dropped element is +0 whatever x holds (x * 0 would keep a NaN and
     * a sign), as a select; the bit mask lets the loop vectorise where a
     * float select would not (-ftrapping-math). */
#pragma omp simd
    for (size_t j = 0; j < m; j++) {
      const float v = x[i + j] * s;
      uint32_t bits;
      memcpy(&bits, &v, sizeof bits);
      bits &= -(uint32_t)((wi[j] >> 8) >= t);
      memcpy(out + i + j, &bits, sizeof bits);
    }
  }
}

/* The tasks take chunks of a fixed size, so the work split does not depend
 * on the thread count (the mask never does). */
static void dropout_apply(float *out, const float *x, size_t n, float p, DropoutKey k) {
  ops_check_dropout("dropout", p);
  if (p == 0.0f) {
    if (out != x) cpu_memcpy(out, x, n * sizeof *out);
    return;
  }
  const size_t chunk = 4096, nch = n_blocks(n, chunk);
#pragma omp parallel for schedule(static)
  for (size_t c = 0; c < nch; c++) {
    const size_t lo = c * chunk;
    cpu_drop_run(out + lo, x + lo, min_size(n, lo + chunk) - lo, p, k, k.elem_offset + lo);
  }
}

static void cpu_dropout_fwd(float *out, const float *x, size_t n, float p, DropoutKey k) {
  dropout_apply(out, x, n, p, k);
}
static void cpu_dropout_bwd(float *dx, const float *dy, size_t n, float p, DropoutKey k) {
  dropout_apply(dx, dy, n, p, k);
}

/* The three passes the fused op stands for, in the same order. */
static void cpu_residual_ln_fwd(float *out, float *sum, float *mean, float *rstd, const float *y,
                                const float *res, const float *gamma, const float *beta, int n,
                                int c, float eps, float p, DropoutKey key) {
  if (ops_no_work("residual_ln_fwd", n, c, 1)) return;
  size_t nc = (size_t)n * (size_t)c;
  dropout_apply(sum, y, nc, p, key);
  cpu_add(sum, sum, res, nc);
  cpu_layernorm_fwd(out, mean, rstd, sum, gamma, beta, n, c, eps);
}

static void cpu_residual_ln_bwd(float *dx, float *dbranch, float *dgamma, float *dbeta,
                                const float *dy, const float *sum, const float *mean,
                                const float *rstd, const float *gamma, int n, int c, float p,
                                DropoutKey key) {
  cpu_layernorm_bwd(dx, dgamma, dbeta, dy, sum, mean, rstd, gamma, n, c);
  if (dbranch) dropout_apply(dbranch, dx, (size_t)n * (size_t)c, p, key);
}

static const Ops OPS_CPU = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .alloc_act = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .to_device = cpu_memcpy,
    .to_host = cpu_memcpy,
    .copy = cpu_memcpy,
    .sync = cpu_sync,
    .set_threads = cpu_set_threads,
    .set_tf32 = cpu_set_tf32,
    .set_bf16 = cpu_set_bf16,
    .params_at = cpu_params_at,
    .device_info = cpu_device_info,
    .mark = cpu_mark,
    .mark_ms = cpu_mark_ms,
    .linear_fwd = cpu_linear_fwd,
    .linear_bwd = cpu_linear_bwd,
    .embed_fwd = cpu_embed_fwd,
    .embed_bwd = cpu_embed_bwd,
    .layernorm_fwd = cpu_layernorm_fwd,
    .layernorm_bwd = cpu_layernorm_bwd,
    .residual_ln_fwd = cpu_residual_ln_fwd,
    .residual_ln_bwd = cpu_residual_ln_bwd,
    .add = cpu_add,
    .gelu_fwd = cpu_gelu_fwd,
    .gelu_bwd = cpu_gelu_bwd,
    .tanh_fwd = cpu_tanh_fwd,
    .tanh_bwd = cpu_tanh_bwd,
    .scale = cpu_scale,
    .dropout_fwd = cpu_dropout_fwd,
    .dropout_bwd = cpu_dropout_bwd,
    .attn_fwd = cpu_attn_fwd,
    .attn_bwd = cpu_attn_bwd,
    .gather_fwd = cpu_gather_fwd,
    .gather_bwd = cpu_gather_bwd,
    .xent_fwd = cpu_xent_fwd,
    .xent_bwd = cpu_xent_bwd,
    .adamw = cpu_adamw,
    .lamb = cpu_lamb,
    .sumsq = cpu_sumsq,
};

/* OpenBLAS stays single-threaded: threads come from OpenMP over fixed tiles
 * (see ops_cpu_linear.c), which keeps results independent of thread count. */
const Ops *ops_cpu(void) {
  static int blas_set;
  if (!blas_set) {
    openblas_set_num_threads(1);
    blas_set = 1;
  }
  return &OPS_CPU;
}
