/* The CUDA ops table against the CPU ops table (the reference): every op on
 * the same random inputs, run once on the CPU and twice on the GPU.
 *
 * Each output tensor prints one line: op, output, error, tolerance, PASS or
 * FAIL. The error is max_i |gpu_i - cpu_i| / max(max_i |cpu_i|, 1e-6):
 * relative to the largest magnitude in the reference tensor, so elements
 * near zero (cancellation in sums, GELU tails) are judged on the tensor's
 * scale. Two tolerances:
 *   TOL_EXACT (0): ops that only move data or do one IEEE add / multiply per
 *     element in the CPU's order (embed fwd, the position table's backward,
 *     gather fwd, add, scale, dropout, xent's counts): the GPU must give the
 *     same bits. The scatter-adds (the word and type tables' backward,
 *     gather bwd) add a row's hits in chunk partials on the GPU, another
 *     order than the CPU's: TOL_F32.
 *   TOL_TF32 (5e-3): the linear ops again with TF32 allowed (set_tf32): the
 *     inputs of each product lose 13 mantissa bits (2^-11 relative each), so
 *     a sum of K terms of mixed signs is off by about sqrt(K) 2^-11 of its
 *     largest term, ~5e-3 at worst for K = 192, against ~1e-1 for a real bug.
 *   TOL_BF16 (3e-2): every op again with set_bf16 on, on bf16 activation
 *     buffers: the inputs are bf16 values for both backends (so the CPU
 *     sees what the GPU stores), outputs are rounded to bf16 (2^-9
 *     relative), and the products multiply bf16 operands (the weights
 *     rounded too), so a sum of K <= 192 terms is off by up to about
 *     sqrt(K) 2^-9 of its largest term, ~3e-2 (twice that for attention,
 *     whose outputs go through two bf16 products and a bf16 intermediate); a
 *     real bug gives ~1e-1 or more.
 *   TOL_F32 (1e-5): everything else. GEMMs and reductions add in another
 *     order (error about sqrt(K) 2^-24 of the max for K <= 192 terms, i.e.
 *     ~1e-6), CUDA's erff / expf / tanhf differ from glibc's by a few ulp,
 *     and nvcc contracts a*b+c into FMAs where gcc (-std=c11) does not.
 *     10x above the expected error, far below what a wrong index, a missed
 *     mask or a lost += gives (~1e-1).
 * Every GPU output must also be bit-identical between the two GPU runs
 * (determinism), and accumulated outputs are pre-filled with random values
 * so += and = are told apart.
 *
 * Sizes are not multiples of 32 (B=3, S=37, H=48, 4 heads, V=101), inputs
 * are never zero, masks have zeros, labels have -1, gathers and embeddings
 * have duplicate indices. The seed comes from the clock and is printed;
 * BERTRAIN_TEST_SEED=N repeats a run. Exits 77 (skipped) without a GPU. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_info.h"
#include "ops.h"
#include "ops_cuda.h"
#include "rng.h"
#include "test_util.h"
#include "util.h"

#define TOL_EXACT 0.0
#define TOL_F32 1e-5
#define TOL_TF32 5e-3
#define TOL_BF16 3e-2

#define B 3
#define S 37
#define H 48
#define NH 4
#define HD 12
#define V 101
#define FFN (4 * H)
#define NTOK (B * S)
#define NPRED 15 /* gathered rows (MLM positions) */

static const Ops *CPU, *GPU;
static Rng R;

/* Run k = 0 is the CPU reference, runs 1 and 2 are the GPU. */
static const Ops *backend(int k) { return k == 0 ? CPU : GPU; }

/* ---- random inputs ---- */

static float uni(float lo, float hi) {
  float v;
  do v = lo + (hi - lo) * (float)rng_uniform(&R);
  while (v == 0.0f);
  return v;
}
/* While set: inputs are bf16 values (the GPU's bf16 activation buffers
 * hold them exactly), so that the CPU reference computes on the same ones. */
static int g_round16;

static float round_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  memcpy(&f, &u, sizeof f);
  return f;
}

static float *rnd(size_t n, float lo, float hi) {
  float *h = xmalloc((n ? n : 1) * sizeof *h);
  for (size_t i = 0; i < n; i++) {
    h[i] = uni(lo, hi);
    if (g_round16) h[i] = round_bf16(h[i]);
  }
  return h;
}
static int32_t *rnd_ids(size_t n, int limit) {
  int32_t *h = xmalloc((n ? n : 1) * sizeof *h);
  for (size_t i = 0; i < n; i++) h[i] = (int32_t)rng_below(&R, (uint32_t)limit);
  return h;
}
static DropoutKey rnd_key(uint64_t elem_offset) {
  DropoutKey k = {((uint64_t)rng_u32(&R) << 32) | rng_u32(&R), rng_u32(&R), rng_u32(&R) & 0xff,
                  elem_offset};
  return k;
}

/* ---- device buffers of one run, freed together ---- */

#define MAX_DEV 32
static void *g_dev[MAX_DEV];
static int g_ndev;

static void *track(void *p) {
  if (g_ndev == MAX_DEV) die("test_ops_cuda: too many device buffers");
  return g_dev[g_ndev++] = p;
}
static float *put(const Ops *o, const float *h, size_t n) {
  float *d = track(o->alloc(n * sizeof *d));
  if (h) o->to_device(d, h, n * sizeof *d);
  return d;
}
/* An activation (Ops.alloc_act: bf16 on the GPU while set_bf16 is on). */
static float *putA(const Ops *o, const float *h, size_t n) {
  float *d = track(o->alloc_act(n * sizeof *d));
  if (h) o->to_device(d, h, n * sizeof *d);
  return d;
}
static int32_t *put_ids(const Ops *o, const int32_t *h, size_t n) {
  int32_t *d = track(o->alloc(n * sizeof *d));
  o->to_device(d, h, n * sizeof *d);
  return d;
}
static float *get(const Ops *o, const float *d, size_t n) {
  float *h = xmalloc((n ? n : 1) * sizeof *h);
  o->to_host(h, d, n * sizeof *h);
  return h;
}
static void release(const Ops *o) {
  while (g_ndev) o->free(g_dev[--g_ndev]);
}

/* ---- comparison ---- */

/* While set (> 0): the tolerance of every comparison, for a GPU mode with
 * lower precision (bf16), and the suffix of the names printed. */
static double g_tol_override;
static const char *g_mode = "";

/* res[0] CPU, res[1] and res[2] GPU; frees all three. */
static void compare(const char *op_name, const char *out, float *res[3], size_t n, double tol) {
  char op[64];
  snprintf(op, sizeof op, "%s%s", op_name, g_mode);
  if (g_tol_override > 0) tol = g_tol_override;
  double refmax = 0.0, emax = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < n; i++)
    if (fabs(res[0][i]) > refmax) refmax = fabs(res[0][i]);
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)res[1][i] - res[0][i]);
    if (isnan(res[0][i]) || isnan(res[1][i])) e = isnan(res[0][i]) && isnan(res[1][i]) ? 0.0 : INFINITY;
    if (e > emax) emax = e, at = i;
  }
  double err = emax / (refmax > 1e-6 ? refmax : 1e-6);
  int same = memcmp(res[1], res[2], n * sizeof *res[1]) == 0;
  int pass = err <= tol && same;
  printf("%-18s %-7s err %.3e  tol %.0e  %s", op, out, err, tol, pass ? "PASS" : "FAIL");
  if (err > tol) printf("  (worst [%zu]: cpu %.9g gpu %.9g)", at, res[0][at], res[1][at]);
  if (!same) printf("  (the two GPU runs differ)");
  printf("\n");
  CHECK(err <= tol);
  CHECK(same);
  for (int k = 0; k < 3; k++) free(res[k]);
}

/* Same zeros in the CPU and GPU results (dropout masks); the fraction
 * dropped near p for the inputs, which are never zero. */
static void check_mask(const char *op, float *res[3], size_t n, float p) {
  size_t diff = 0, zeros = 0;
  for (size_t i = 0; i < n; i++) {
    diff += (res[0][i] == 0.0f) != (res[1][i] == 0.0f);
    zeros += res[1][i] == 0.0f;
  }
  double frac = (double)zeros / n;
  printf("%-18s mask    %zu of %zu differ, dropped %.3f (p %.2f)  %s\n", op, diff, n, frac, p,
         diff == 0 && fabs(frac - p) < 0.05 ? "PASS" : "FAIL");
  CHECK(diff == 0);
  CHECK(fabs(frac - p) < 0.05);
}

/* ---- memory ---- */

/* act: on activation buffers (bf16 while set_bf16 is on; the inputs are
 * then bf16 values, so they come back exact). */
static void test_memory(int act) {
  const size_t n = 1001;
  float *h = rnd(n, -1, 1), *back = xmalloc(n * sizeof *back);
  void *(*alloc)(size_t) = act ? GPU->alloc_act : GPU->alloc;
  float *d = alloc(n * sizeof *d), *d2 = alloc(n * sizeof *d2);
  GPU->to_host(back, d, n * sizeof *back);
  int zeroed = 1;
  for (size_t i = 0; i < n; i++) zeroed &= back[i] == 0.0f;
  GPU->to_device(d, h, n * sizeof *h);
  GPU->copy(d2, d, n * sizeof *d);
  GPU->zero(d2 + 10, 20 * sizeof *d2);
  GPU->sync();
  GPU->set_threads(3);
  GPU->to_host(back, d2, n * sizeof *back);
  int moved = 1;
  for (size_t i = 0; i < n; i++) moved &= back[i] == (i >= 10 && i < 30 ? 0.0f : h[i]);
  printf("%-18s alloc zero-filled %s, to_device/copy/zero/to_host %s\n",
         act ? (g_round16 ? "memory/act/bf16" : "memory/act") : "memory", zeroed ? "PASS" : "FAIL",
         moved ? "PASS" : "FAIL");
  CHECK(zeroed);
  CHECK(moved);
  GPU->free(d);
  GPU->free(d2);
  free(h);
  free(back);
}

/* An op given a bf16 activation buffer and a plain one among its
 * activations dies naming the op, rather than reading one of them as the
 * other's type; so does set_bf16 while activation buffers exist. */
static void mix_call(void *arg) {
  float **p = arg;
  GPU->gelu_fwd(p[0], p[1], 16);
}
static void switch_call(void *arg) {
  (void)arg;
  GPU->set_bf16(0);
}
static void test_act_mixing(void) {
  float *p[2] = {putA(GPU, NULL, 16), put(GPU, NULL, 16)};
  char msg[512] = "", msg2[512] = "";
  int died = die_catch(mix_call, p, msg, sizeof msg) != 0 && strstr(msg, "gelu_fwd");
  int refused = die_catch(switch_call, NULL, msg2, sizeof msg2) != 0 && strstr(msg2, "set_bf16");
  printf("%-18s mixed kinds die: \"%s\"  %s\n", "activations/bf16", msg, died ? "PASS" : "FAIL");
  printf("%-18s switch with buffers dies: \"%s\"  %s\n", "activations/bf16", msg2,
         refused ? "PASS" : "FAIL");
  CHECK(died);
  CHECK(refused);
  release(GPU);
}

/* A bf16 activation buffer holds half its fp32 size on the device: a
 * buffer far larger than anything before raises the peak by about that. */
static void test_act_memory(void) {
  const size_t bytes = (size_t)64 << 20;
  DeviceInfo before, after;
  GPU->device_info(&before);
  void *a = GPU->alloc_act(bytes);
  GPU->device_info(&after);
  GPU->free(a);
  double grew = (double)after.peak_bytes - (double)before.peak_bytes;
  int half = grew > 0.4 * bytes && grew < 0.6 * bytes;
  printf("%-18s a %zu MiB buffer raised the peak by %.1f MiB  %s\n", "memory/act/bf16",
         bytes >> 20, grew / 1048576.0, half ? "PASS" : "FAIL");
  CHECK(half);
}

/* ---- linear ---- */

static void test_linear_fwd(int n, int in, int out, int bias) {
  float *x = rnd((size_t)n * in, -1, 1), *w = rnd((size_t)out * in, -1, 1), *b = rnd(out, -1, 1);
  float *y[3];
  for (int k = 0; k < 3; k++) {
    const Ops *o = backend(k);
    float *dy = putA(o, NULL, (size_t)n * out);
    o->linear_fwd(dy, putA(o, x, (size_t)n * in), put(o, w, (size_t)out * in),
                  bias ? put(o, b, out) : NULL, n, in, out);
    y[k] = get(o, dy, (size_t)n * out);
    release(o);
  }
  compare(bias ? "linear_fwd" : "linear_fwd/nob", "y", y, (size_t)n * out, TOL_F32);
  free(x), free(w), free(b);
}

/* want: bit 0 dx, bit 1 dw, bit 2 db. Outputs are pre-filled. */
static void test_linear_bwd(int n, int in, int out, int want, int acc) {
  size_t nx = (size_t)n * in, nw = (size_t)out * in;
  float *dy = rnd((size_t)n * out, -1, 1), *x = rnd(nx, -1, 1), *w = rnd(nw, -1, 1);
  float *dx0 = rnd(nx, -1, 1), *dw0 = rnd(nw, -1, 1), *db0 = rnd(out, -1, 1);
  float *dx[3], *dw[3], *db[3];
  for (int k = 0; k < 3; k++) {
    const Ops *o = backend(k);
    float *ddx = putA(o, dx0, nx), *ddw = put(o, dw0, nw), *ddb = put(o, db0, out);
    o->linear_bwd(want & 1 ? ddx : NULL, want & 2 ? ddw : NULL, want & 4 ? ddb : NULL,
                  putA(o, dy, (size_t)n * out), putA(o, x, nx), put(o, w, nw), n, in, out, acc);
    dx[k] = get(o, ddx, nx);
    dw[k] = get(o, ddw, nw);
    db[k] = get(o, ddb, out);
    release(o);
  }
  const char *name = acc ? "linear_bwd/acc" : "linear_bwd";
  compare(name, "dx", dx, nx, TOL_F32);
  compare(name, "dw", dw, nw, TOL_F32);
  compare(name, "db", db, out, TOL_F32);
  free(dy), free(x), free(w), free(dx0), free(dw0), free(db0);
}

/* Weights inside a registered parameter buffer (params_at), as the model
 * has them: in bf16 the CUDA backend multiplies by its bf16 copy of the
 * buffer, which must follow every change of the weights: a new upload,
 * optimizer steps (adamw, then lamb), a scale, a copy into the buffer. The
 * layer's output after each change must match the CPU's. */
static void test_weight_copy(void) {
  const int n = NTOK, in = H, out = FFN, woff = 64;
  const size_t nw = (size_t)out * in, np = woff + nw + 100;
  float *x = rnd((size_t)n * in, -1, 1), *dy = rnd((size_t)n * out, -1, 1);
  float *p0 = rnd(np, -1, 1), *p1 = rnd(np, -1, 1), *g = rnd(np, -1, 1);
  ParamRange r[2] = {{0, woff, 0}, {woff, nw, 1}};
  /* big steps: a stale copy shows */
  OptParams op = {.lr = 0.3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-6f, .weight_decay = 0.01f,
                  .grad_scale = 1.0f, .step = 1, .bias_correction = 1};
  enum { CHANGES = 6 };
  float *y[CHANGES][3], *dx[3];
  for (int k = 0; k < 3; k++) {
    const Ops *o = backend(k);
    float *P = put(o, p0, np), *dg = put(o, g, np), *dm = put(o, NULL, np), *dv = put(o, NULL, np);
    float *other = put(o, p1, np), *dx_d = putA(o, NULL, (size_t)n * in);
    float *dy_d = putA(o, dy, (size_t)n * out);
    float *x_d = putA(o, x, (size_t)n * in), *y_d = putA(o, NULL, (size_t)n * out);
    o->params_at(P, np);
    for (int c = 0; c < CHANGES; c++) {
      if (c == 1) o->to_device(P, p1, np * sizeof *P);
      if (c == 2) o->adamw(P, dg, dm, dv, r, 2, &op);
      if (c == 3) o->lamb(P, dg, dm, dv, r, 2, &op);
      if (c == 4) o->scale(P + woff, nw, 0.5f);
      if (c == 5) o->copy(P, other, np * sizeof *P);
      o->linear_fwd(y_d, x_d, P + woff, P, n, in, out);
      y[c][k] = get(o, y_d, (size_t)n * out);
    }
    o->linear_bwd(dx_d, NULL, NULL, dy_d, x_d, P + woff, n, in, out, 0);
    dx[k] = get(o, dx_d, (size_t)n * in);
    o->params_at(NULL, 0);
    release(o);
  }
  const char *what[CHANGES] = {"y", "y/upload", "y/adamw", "y/lamb", "y/scale", "y/copy"};
  for (int c = 0; c < CHANGES; c++) compare("weights in params", what[c], y[c], (size_t)n * out, TOL_F32);
  compare("weights in params", "dx", dx, (size_t)n * in, TOL_F32);
  free(x), free(dy), free(p0), free(p1), free(g);
}

/* ---- embeddings and gathers ---- */

/* gelu_bwd with the bias sums (in place, as the model): dx and dbias
 * against the CPU's, and dx against gelu_bwd without them. */
static void test_gelu_bias(int rows, int c) {
  size_t n = (size_t)rows * c;
  float *x = rnd(n, -3, 3), *dy = rnd(n, -1, 1), *b0 = rnd(c, -1, 1);
  float *dx[3], *db[3], *plain[3];
  for (int k = 0; k < 3; k++) {
    const Ops *o = backend(k);
    float *dX = putA(o, x, n), *dY = putA(o, dy, n), *dA = putA(o, NULL, n), *dB = put(o, b0, c);
    o->gelu_bwd(dA, NULL, dY, dX, n, 0);
    o->gelu_bwd(dY, dB, dY, dX, n, c);
    dx[k] = get(o, dY, n);
    db[k] = get(o, dB, c);
    plain[k] = get(o, dA, n);
    release(o);
  }
  int same = 1;
  for (int k = 0; k < 3; k++) same &= memcmp(dx[k], plain[k], n * sizeof(float)) == 0;
  char name[40];
  snprintf(name, sizeof name, "gelu_bwd+bias %dx%d", rows, c);
  printf("%-18s dx      the same as without the sums  %s\n", name, same ? "PASS" : "FAIL");
  CHECK(same);
  compare(name, "dx", dx, n, TOL_F32);
  compare(name, "dbias", db, c, TOL_F32);
  for (int k = 0; k < 3; k++) free(plain[k]);
  free(x), free(dy), free(b0);
}

/* ntypes: BERT's 2 (a column sum per type on the GPU), or more than it
 * takes that way (a scatter-add). */
static void test_embed(int with_types, int ntypes) {
  const int npos = S + 3;
  int32_t *ids = rnd_ids(NTOK, V), *types = rnd_ids(NTOK, ntypes);
  ids[7] = ids[3] = ids[0]; /* duplicates for the scatter-add */
  ids[NTOK - 1] = ids[1];
  float *wte = rnd((size_t)V * H, -1, 1), *wpe = rnd((size_t)npos * H, -1, 1);
  float *wtt = rnd((size_t)ntypes * H, -1, 1), *dout = rnd((size_t)NTOK * H, -1, 1);
  float *out[3], *gte[3], *gpe[3], *gtt[3];
  for (int k = 0; k < 3; k++) {
    const Ops *o = backend(k);
    float *dout_d = putA(o, NULL, (size_t)NTOK * H);
    int32_t *di = put_ids(o, ids, NTOK), *dt = with_types ? put_ids(o, types, NTOK) : NULL;
    o->embed_fwd(dout_d, di, dt, put(o, wte, (size_t)V * H), put(o, wpe, (size_t)npos * H),
                 put(o, wtt, (size_t)ntypes * H), B, S, H, V, ntypes);
    out[k] = get(o, dout_d, (size_t)NTOK * H);
    /* gradient tables pre-filled with the weights: += must keep them */
    float *dte = put(o, wte, (size_t)V * H), *dpe = put(o, wpe, (size_t)npos * H);
    float *dtt = put(o, wtt, (size_t)ntypes * H);
    o->embed_bwd(dte, dpe, dtt, putA(o, dout, (size_t)NTOK * H), di, dt, B, S, H, V, ntypes);
    gte[k] = get(o, dte, (size_t)V * H);
    gpe[k] = get(o, dpe, (size_t)npos * H);
    gtt[k] = get(o, dtt, (size_t)ntypes * H);
    release(o);
  }
  char fn[32], bn[32];
  snprintf(fn, sizeof fn, "embed_fwd%s", with_types ? (ntypes > 2 ? "/6typ" : "") : "/notyp");
  snprintf(bn, sizeof bn, "embed_bwd%s", with_types ? (ntypes > 2 ? "/6typ" : "") : "/notyp");
  compare(fn, "out", out, (size_t)NTOK * H, TOL_EXACT);
  compare(bn, "dwte", gte, (size_t)V * H, TOL_F32);
  compare(bn, "dwpe", gpe, (size_t)npos * H, TOL_F32);
  compare(bn, "dwtt", gtt, (size_t)ntypes * H, TOL_F32);
  free(ids), free(types), free(wte), free(wpe), free(wtt), free(dout);
}

static void test_gather(void) {
  int32_t *idx = rnd_ids(NPRED, NTOK);
  idx[4] = idx[2] = idx[0]; /* duplicates: gather_bwd must add them all */
  float *x = rnd((size_t)NTOK * H, -1, 1), *dout = rnd((size_t)NPRED * H, -1, 1);
  float *dx0 = rnd((size_t)NTOK * H, -1, 1);
  float *out[3], *dx[3];
  for (int k = 0; k < 3; k++) {
    const Ops *o = backend(k);
    float *dout_d = putA(o, NULL, (size_t)NPRED * H), *ddx = putA(o, dx0, (size_t)NTOK * H);
    int32_t *di = put_ids(o, idx, NPRED);
    o->gather_fwd(dout_d, putA(o, x, (size_t)NTOK * H), di, NPRED, NTOK, H);
    o->gather_bwd(ddx, putA(o, dout, (size_t)NPRED * H), di, NPRED, NTOK, H);
    out[k] = get(o, dout_d, (size_t)NPRED * H);
    dx[k] = get(o, ddx, (size_t)NTOK * H);
    release(o);
  }
  compare("gather_fwd", "out", out, (size_t)NPRED * H, TOL_EXACT);
  compare("gather_bwd", "dx", dx, (size_t)NTOK * H, TOL_F32);
  free(idx), free(x), free(dout), free(dx0);
}

/* gather_bwd (the embedding backward's scatter too) with many hits on a few
 * rows, in runs and interleaved, over n tokens: 300 is two of the GPU's
 * chunks (256 tokens), 9000 is more chunks than a warp has lanes, with
 * thousands of hits on each of three rows (as a token-type table has). */
static void test_scatter_runs(int n, int rows) {
  const int32_t pick[6] = {5, 133, 261, 389, 6, 5};
  int32_t *idx = xmalloc(n * sizeof *idx);
  for (int i = 0; i < n; i++)
    idx[i] = rows < 6 ? (int32_t)rng_below(&R, rows) : i % 7 < 4 ? 5 : pick[rng_below(&R, 6)];
  float *dout = rnd((size_t)n * H, -1, 1), *dx0 = rnd((size_t)rows * H, -1, 1);
  float *dx[3];
  for (int k = 0; k < 3; k++) {
    const Ops *o = backend(k);
    float *ddx = putA(o, dx0, (size_t)rows * H);
    o->gather_bwd(ddx, putA(o, dout, (size_t)n * H), put_ids(o, idx, n), n, rows, H);
    dx[k] = get(o, ddx, (size_t)rows * H);
    release(o);
  }
  compare(rows < 6 ? "gather_bwd/chunks" : "gather_bwd/runs", "dx", dx, (size_t)rows * H, TOL_F32);
  free(idx), free(dout), free(dx0);
}

/* ---- layernorm ---- */

static void test_layernorm(int n, int c) {
  size_t nc = (size_t)n * c;
  float *x = rnd(nc, 1, 4), *gamma = rnd(c, 0.5f, 1.5f), *beta = rnd(c, -1, 1);
  float *dy = rnd(nc, -1, 1), *dg0 = rnd(c, -1, 1), *db0 = rnd(c, -1, 1);
  float *out[3], *mean[3], *rstd[3], *dx[3], *dxa[3], *dg[3], *db[3];
  for (int k = 0; k < 3; k++) {
    const Ops *o = backend(k);
    float *dout = putA(o, NULL, nc), *dm = put(o, NULL, n), *dr = put(o, NULL, n);
    float *dx_d = putA(o, x, nc), *dgam = put(o, gamma, c);
    o->layernorm_fwd(dout, dm, dr, dx_d, dgam, put(o, beta, c), n, c, 1e-12f);
    out[k] = get(o, dout, nc);
    mean[k] = get(o, dm, n);
    rstd[k] = get(o, dr, n);
    /* the backward on the CPU's saved statistics, so both see one input */
    o->to_device(dm, mean[0], n * sizeof(float));
    o->to_device(dr, rstd[0], n * sizeof(float));
    float *ddy = putA(o, dy, nc), *ddx = putA(o, NULL, nc);
    float *ddg = put(o, dg0, c), *ddb = put(o, db0, c);
    o->layernorm_bwd(ddx, ddg, ddb, ddy, dx_d, dm, dr, dgam, n, c);
    dx[k] = get(o, ddx, nc);
    dg[k] = get(o, ddg, c);
    db[k] = get(o, ddb, c);
    /* aliased dx = dy, as the model calls it; parameter grads skipped */
    o->layernorm_bwd(ddy, NULL, NULL, ddy, dx_d, dm, dr, dgam, n, c);
    dxa[k] = get(o, ddy, nc);
    release(o);
  }
  char name[32];
  snprintf(name, sizeof name, "layernorm c=%d", c);
  compare(name, "out", out, nc, TOL_F32);
  compare(name, "mean", mean, n, TOL_F32);
  compare(name, "rstd", rstd, n, TOL_F32);
  compare(name, "dx", dx, nc, TOL_F32);
  compare(name, "dx=dy", dxa, nc, TOL_F32);
  compare(name, "dgamma", dg, c, TOL_F32);
  compare(name, "dbeta", db, c, TOL_F32);
  free(x), free(gamma), free(beta), free(dy), free(dg0), free(db0);
}

/* The fused sub-block end: sum = dropout(y) + res (exact: one product and
 * one add per element, as the CPU's passes), out = LayerNorm(sum); sum
 * written over y as the model calls it. p = 0: no dropout. Its backward:
 * dx over dy, dbranch = dropout'(dx), dgamma and dbeta accumulated. */
static unsigned long long launches(const Ops *o) {
  DeviceInfo di;
  o->device_info(&di);
  return di.launches;
}

/* evict: forwards of more other keys than the GPU keeps flags for, between
 * the forward and its backward. Returns the launches of the GPU's (first)
 * backward. */
static unsigned long long test_residual_ln(int n, int c, float p, int evict) {
  size_t nc = (size_t)n * c;
  unsigned long long bwd_launches = 0;
  float *y = rnd(nc, -2, 2), *res = rnd(nc, -2, 2), *gamma = rnd(c, 0.5f, 1.5f);
  float *beta = rnd(c, -1, 1), *dy = rnd(nc, -1, 1), *dg0 = rnd(c, -1, 1), *db0 = rnd(c, -1, 1);
  DropoutKey key = rnd_key(4321); /* not a multiple of 4 */
  float *out[3], *sum[3], *mean[3], *rstd[3], *dx[3], *dbr[3], *dg[3], *db[3];
  for (int k = 0; k < 3; k++) {
    const Ops *o = backend(k);
    float *dout = putA(o, NULL, nc), *dm = put(o, NULL, n), *dr = put(o, NULL, n);
    float *dys = putA(o, y, nc), *dgam = put(o, gamma, c);
    o->residual_ln_fwd(dout, dys, dm, dr, dys, putA(o, res, nc), dgam, put(o, beta, c), n, c,
                       1e-12f, p, key);
    out[k] = get(o, dout, nc);
    sum[k] = get(o, dys, nc);
    mean[k] = get(o, dm, n);
    rstd[k] = get(o, dr, n);
    /* the backward on the CPU's sum and statistics; dx written over dy */
    o->to_device(dys, sum[0], nc * sizeof(float));
    o->to_device(dm, mean[0], n * sizeof(float));
    o->to_device(dr, rstd[0], n * sizeof(float));
    float *ddy = putA(o, dy, nc), *dbranch = putA(o, NULL, nc);
    float *ddg = put(o, dg0, c), *ddb = put(o, db0, c);
    if (evict) {
      float *eo = putA(o, NULL, nc), *es = putA(o, NULL, nc), *er = putA(o, res, nc);
      for (int e = 0; e < 70; e++) {
        DropoutKey other = key;
        other.step += 1 + e;
        o->residual_ln_fwd(eo, es, dm, dr, er, er, dgam, dgam, n, c, 1e-12f, p, other);
      }
      o->to_device(dm, mean[0], n * sizeof(float));
      o->to_device(dr, rstd[0], n * sizeof(float));
    }
    unsigned long long before = launches(o);
    o->residual_ln_bwd(ddy, dbranch, ddg, ddb, ddy, dys, dm, dr, dgam, n, c, p, key);
    if (k == 1) bwd_launches = launches(o) - before;
    dx[k] = get(o, ddy, nc);
    dbr[k] = get(o, dbranch, nc);
    dg[k] = get(o, ddg, c);
    db[k] = get(o, ddb, c);
    release(o);
  }
  char name[48];
  snprintf(name, sizeof name, "residual_ln c=%d p=%.1f%s", c, p, evict ? " evict" : "");
  compare(name, "sum", sum, nc, TOL_EXACT);
  compare(name, "out", out, nc, TOL_F32);
  compare(name, "mean", mean, n, TOL_F32);
  compare(name, "rstd", rstd, n, TOL_F32);
  compare(name, "dx", dx, nc, TOL_F32);
  compare(name, "dbranch", dbr, nc, TOL_F32);
  compare(name, "dgamma", dg, c, TOL_F32);
  compare(name, "dbeta", db, c, TOL_F32);
  free(y), free(res), free(gamma), free(beta), free(dy), free(dg0), free(db0);
  return bwd_launches;
}

/* The GPU keeps a forward's dropout flags for its backward (register
 * kernels): one launch fewer than when they had to be drawn again, and the
 * same results either way (test_residual_ln compares both). */
static void test_kept_bits(void) {
  unsigned long long kept = test_residual_ln(NTOK, 768, 0.1f, 0);
  unsigned long long drawn = test_residual_ln(NTOK, 768, 0.1f, 1);
  int ok = drawn == kept + 1;
  printf("%-18s bwd launches: %llu after its forward, %llu after 70 others  %s\n", "kept bits",
         kept, drawn, ok ? "PASS" : "FAIL");
  CHECK(ok);
}

/* ---- elementwise and dropout ---- */

enum { EW_ADD, EW_SCALE, EW_GELU_FWD, EW_GELU_BWD, EW_TANH_FWD, EW_TANH_BWD };

/* In place where the model calls the op in place (add out = a, scale,
 * tanh_fwd, gelu_bwd / tanh_bwd dx = dy); gelu_fwd out of place. */
/* off: the tensors start off elements into their buffers (1: not aligned
 * for the GPU's 16-byte accesses). */
static void test_elementwise(int op, const char *name, double tol, int off) {
  const size_t n = (size_t)NTOK * H + 3;
  float *a = rnd(n + off, -5, 5), *b = rnd(n + off, -1, 1), *res[3];
  if (op == EW_TANH_BWD) /* a is y = tanh(x), in (-1, 1) */
    for (size_t i = 0; i < n + off; i++) a[i] = tanhf(a[i]);
  for (int k = 0; k < 3; k++) {
    const Ops *o = backend(k);
    float *da = putA(o, a, n + off) + off, *dbb = putA(o, b, n + off) + off;
    float *dout = putA(o, NULL, n + off) + off, *r = da;
    switch (op) {
      case EW_ADD: o->add(da, da, dbb, n); break;
      case EW_SCALE: o->scale(da, n, 0.37f); break;
      case EW_GELU_FWD: o->gelu_fwd(dout, da, n), r = dout; break;
      case EW_GELU_BWD: o->gelu_bwd(dbb, NULL, dbb, da, n, 0), r = dbb; break;
      case EW_TANH_FWD: o->tanh_fwd(da, da, n); break;
      case EW_TANH_BWD: o->tanh_bwd(dbb, dbb, da, n), r = dbb; break;
    }
    res[k] = get(o, r, n);
    release(o);
  }
  char full[40];
  snprintf(full, sizeof full, "%s%s", name, off ? "/unaligned" : "");
  compare(full, "out", res, n, tol);
  free(a), free(b);
}

/* quads: the elements start a Philox block and are whole blocks (the GPU's
 * vector path); else an odd offset and a tail. */
static void test_dropout(int bwd, int in_place, float p, int quads) {
  const size_t n = (size_t)NTOK * H + (quads ? 0 : 3);
  float *x = rnd(n, -1, 1), *res[3];
  DropoutKey key = rnd_key(quads ? 12344 : 12345);
  for (int k = 0; k < 3; k++) {
    const Ops *o = backend(k);
    float *dx = putA(o, x, n), *dout = in_place ? dx : putA(o, NULL, n);
    if (bwd) o->dropout_bwd(dout, dx, n, p, key);
    else o->dropout_fwd(dout, dx, n, p, key);
    res[k] = get(o, dout, n);
    release(o);
  }
  char name[32];
  snprintf(name, sizeof name, "%s%s%s p=%.1f", bwd ? "dropout_bwd" : "dropout_fwd",
           in_place ? "/ip" : "", quads ? "/q" : "", p);
  if (p > 0.0f) check_mask(name, res, n, p);
  else {
    int copied = memcmp(res[1], x, n * sizeof *x) == 0;
    printf("%-18s copy    %s\n", name, copied ? "PASS" : "FAIL");
    CHECK(copied);
  }
  compare(name, "out", res, n, TOL_EXACT);
  free(x);
}

/* ---- attention ---- */

/* Backend k's marks of dropped probabilities (sign bits, ops.h): none, or
 * exactly the dropout mask. Takes the marks off probs (to compare) and
 * returns the CPU's probabilities with them, the backward's input. */
static float *check_marks(const char *op, int k, float *probs, const float *cpu, size_t n,
                          float p, DropoutKey key) {
  float *in = xmalloc(n * sizeof *in);
  size_t marks = 0, wrong = 0;
  for (size_t i = 0; i < n; i++) {
    int marked = signbit(probs[i]) != 0,
        dropped = p > 0.0f && !dropout_keep(key.seed, key.step, key.tensor, key.elem_offset + i, p);
    marks += marked;
    wrong += marked != dropped;
    in[i] = marked ? -cpu[i] : cpu[i];
    probs[i] = fabsf(probs[i]);
  }
  if (k > 0) {
    int ok = marks == 0 || wrong == 0;
    char name[64];
    snprintf(name, sizeof name, "%s%s", op, g_mode);
    printf("%-18s marks   %zu marked, %zu differ from the mask  %s\n", name, marks,
           marks ? wrong : 0, ok ? "PASS" : "FAIL");
    CHECK(ok);
  }
  return in;
}

/* packed: Q, K, V are thirds of one [b*s, 3H] buffer (ld = 3H), with a
 * padding mask and dropout; otherwise separate buffers, no mask, no dropout.
 * nh heads of hd (hidden nh hd): with bf16, S 64 or 128 and
 * hd 32 or 64, the GPU takes its one-kernel path (attention_fused.cu). */
static void test_attention_heads(int b, int s, int packed, int nh, int hd) {
  const int hid = nh * hd, ld = packed ? 3 * hid : hid;
  const float p = packed ? 0.1f : 0.0f;
  const size_t ntok = (size_t)b * s, nqkv = ntok * ld, np = (size_t)b * nh * s * s;
  float *q = rnd(nqkv, -1, 1), *kk = rnd(nqkv, -1, 1), *v = rnd(nqkv, -1, 1);
  float *dctx = rnd(ntok * hid, -1, 1), *dq0 = rnd(nqkv, -1, 1);
  /* V's rows share a large part (an offset per column), so that a row of dP
   * = dC V^T has a large common part, which the softmax backward's
   * rowsum(P dP) must take out: with zero-mean V that term is small, and a
   * wrong one would pass unseen */
  float *vv = packed ? q : v;
  const int v0 = packed ? 2 * hid : 0;
  for (size_t t = 0; t < ntok; t++)
    for (int c = 0; c < hid; c++) {
      float *e = &vv[t * ld + v0 + c];
      *e += 1.0f + 0.25f * (float)(c % 4);
      if (g_round16) *e = round_bf16(*e);
    }
  int32_t *mask = xmalloc(ntok * sizeof *mask);
  for (int i = 0; i < b; i++) /* sample i keeps its first s - 2 - 5i positions */
    for (int j = 0; j < s; j++) mask[(size_t)i * s + j] = j < s - 2 - 5 * i;
  /* S = 128: whole Philox blocks per 4 elements of a row, as in training;
   * other S: an odd offset, blocks split across them */
  DropoutKey key = rnd_key(s == 128 ? 768 : 777);
  char name[40];
  snprintf(name, sizeof name, "attn%s S=%d", packed ? "/qkv" : "", s);
  if (hd != HD) snprintf(name + strlen(name), sizeof name - strlen(name), " hd=%d", hd);
  float *ctx[3], *probs[3], *dq[3], *dk[3], *dv[3];
  for (int k = 0; k < 3; k++) {
    const Ops *o = backend(k);
    float *dctx_out = putA(o, NULL, ntok * hid), *dprobs = putA(o, NULL, np);
    float *qkv = packed ? putA(o, q, nqkv) : NULL;
    const float *dqd = packed ? qkv : putA(o, q, nqkv);
    const float *dkd = packed ? qkv + hid : putA(o, kk, nqkv);
    const float *dvd = packed ? qkv + 2 * hid : putA(o, v, nqkv);
    o->attn_fwd(dctx_out, dprobs, dqd, dkd, dvd, ld, packed ? put_ids(o, mask, ntok) : NULL, b, s,
                nh, hd, p, key);
    ctx[k] = get(o, dctx_out, ntok * hid);
    probs[k] = get(o, dprobs, np);
    /* the backward on the CPU's probabilities with this backend's marks of
     * the dropped ones (ops.h); gradients pre-filled, as they must be
     * overwritten */
    float *in = check_marks(name, k, probs[k], probs[0], np, p, key);
    o->to_device(dprobs, in, np * sizeof(float));
    free(in);
    float *g1 = putA(o, dq0, nqkv), *g2 = packed ? g1 : putA(o, dq0, nqkv);
    float *g3 = packed ? g1 : putA(o, dq0, nqkv);
    float *gq = g1, *gk = packed ? g1 + hid : g2, *gv = packed ? g1 + 2 * hid : g3;
    o->attn_bwd(gq, gk, gv, putA(o, dctx, ntok * hid), dprobs, dqd, dkd, dvd, ld, b, s, nh, hd, p,
                key);
    dq[k] = get(o, g1, nqkv);
    dk[k] = get(o, g2, nqkv);
    dv[k] = get(o, g3, nqkv);
    release(o);
  }
  compare(name, "probs", probs, np, TOL_F32);
  compare(name, "ctx", ctx, ntok * hid, TOL_F32);
  if (packed) {
    compare(name, "dqkv", dq, nqkv, TOL_F32); /* all three are thirds of this one */
    for (int k = 0; k < 3; k++) free(dk[k]), free(dv[k]);
  } else {
    compare(name, "dq", dq, nqkv, TOL_F32);
    compare(name, "dk", dk, nqkv, TOL_F32);
    compare(name, "dv", dv, nqkv, TOL_F32);
  }
  free(q), free(kk), free(v), free(dctx), free(dq0), free(mask);
}

static void test_attention(int b, int s, int packed) { test_attention_heads(b, s, packed, NH, HD); }

/* ---- cross-entropy ---- */

/* labels: -1 on every 4th row; on every 3rd row the label's logit is the
 * row maximum (correct), on rows 1 mod 5 the maximum is tied between an
 * index below the label and the label (first argmax: not correct). Rows
 * of stride ld: the columns past v hold 50, which would move the loss if
 * read, and come back 0 in dlogits. */
static void test_xent(int n, int v, int ld, int all_ignored) {
  size_t nv = (size_t)n * ld;
  float *logits = rnd(nv, -3, 3);
  int32_t *labels = rnd_ids(n, v);
  for (int i = 0; i < n; i++) {
    float *row = logits + (size_t)i * ld;
    for (int j = v; j < ld; j++) row[j] = 50.0f;
    if (i % 3 == 0) row[labels[i]] = 5.0f;
    if (i % 5 == 1 && labels[i] > 0) row[labels[i]] = row[labels[i] / 2] = 6.0f;
    if (i % 4 == 2 || all_ignored) labels[i] = -1;
  }
  float *out[3], *dl[3], *dla[3], *bwd_out[3];
  float scale = 1.0f;
  for (int k = 0; k < 3; k++) {
    const Ops *o = backend(k);
    float *dlog = putA(o, logits, nv), *dout = put(o, NULL, 3), *dgrad = putA(o, logits, nv);
    int32_t *dlab = put_ids(o, labels, n);
    o->xent_fwd(dout, dlog, dlab, n, v, ld);
    out[k] = get(o, dout, 3);
    if (k == 0) scale = out[0][2] > 0 ? 1.0f / out[0][2] : 1.0f;
    o->xent_bwd(dgrad, NULL, dlog, dlab, n, v, ld, scale);
    dl[k] = get(o, dgrad, nv);
    /* in place, as the CLS head, with the losses as the model takes them */
    float *dout2 = put(o, NULL, 3);
    o->xent_bwd(dlog, dout2, dlog, dlab, n, v, ld, scale);
    dla[k] = get(o, dlog, nv);
    bwd_out[k] = get(o, dout2, 3);
    release(o);
  }
  char name[32];
  snprintf(name, sizeof name, "xent%s v=%d%s", all_ignored ? "/none" : "", v, ld > v ? "+" : "");
  int counts_equal = out[1][1] == out[0][1] && out[1][2] == out[0][2] &&
                     out[2][1] == out[1][1] && out[2][2] == out[1][2];
  printf("%-18s counts  cpu %g/%g gpu %g/%g (correct/counted)  %s\n", name, out[0][1], out[0][2],
         out[1][1], out[1][2], counts_equal ? "PASS" : "FAIL");
  CHECK(counts_equal);
  int same = 1;
  for (int k = 0; k < 3; k++) same &= memcmp(bwd_out[k], out[k], 3 * sizeof(float)) == 0;
  printf("%-18s losses  xent_bwd's out is xent_fwd's, on each backend  %s\n", name,
         same ? "PASS" : "FAIL");
  CHECK(same);
  if (!all_ignored) CHECK(out[0][1] > 0 && out[0][1] < out[0][2]); /* the test means something */
  float *loss[3];
  for (int k = 0; k < 3; k++) {
    loss[k] = xmalloc(sizeof(float));
    loss[k][0] = out[k][0];
    free(out[k]), free(bwd_out[k]);
  }
  if (ld > v) {
    int pad_zero = 1;
    for (int k = 0; k < 3; k++)
      for (int i = 0; i < n; i++)
        for (int j = v; j < ld; j++)
          pad_zero &= dl[k][(size_t)i * ld + j] == 0.0f && dla[k][(size_t)i * ld + j] == 0.0f;
    printf("%-18s pad     dlogits 0 past column %d of %d, each backend  %s\n", name, v, ld,
           pad_zero ? "PASS" : "FAIL");
    CHECK(pad_zero);
  }
  compare(name, "loss", loss, 1, TOL_F32);
  compare(name, "dlogits", dl, nv, TOL_F32);
  compare(name, "dl=l", dla, nv, TOL_F32);
  free(logits), free(labels);
}

/* ---- optimizer ---- */

/* Two steps (the second without grad scaling) over ranges r of buffers of
 * n elements; elements outside every range must stay untouched. */
static void run_optimizer(const char *name, int lamb, int bias_correction, const ParamRange *r,
                          int nr, size_t n) {
  float *w0 = rnd(n, -1, 1), *g1 = rnd(n, -1, 1), *g2 = rnd(n, -1, 1);
  OptParams o1 = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-6f, .weight_decay = 0.01f,
                  .grad_scale = 0.5f, .step = 1, .bias_correction = bias_correction};
  OptParams o2 = o1;
  o2.step = 2;
  o2.grad_scale = 1.0f;
  float *w[3], *m[3], *v[3];
  for (int k = 0; k < 3; k++) {
    const Ops *o = backend(k);
    float *dw = put(o, w0, n), *dm = put(o, NULL, n), *dv = put(o, NULL, n);
    float *dg1 = put(o, g1, n), *dg2 = put(o, g2, n);
    if (lamb) {
      o->lamb(dw, dg1, dm, dv, r, nr, &o1);
      o->lamb(dw, dg2, dm, dv, r, nr, &o2);
    } else {
      o->adamw(dw, dg1, dm, dv, r, nr, &o1);
      o->adamw(dw, dg2, dm, dv, r, nr, &o2);
    }
    w[k] = get(o, dw, n);
    m[k] = get(o, dm, n);
    v[k] = get(o, dv, n);
    release(o);
  }
  char *inside = xcalloc(n, 1);
  for (int t = 0; t < nr; t++) memset(inside + r[t].offset, 1, r[t].count);
  int gaps = 1;
  for (size_t i = 0; i < n; i++)
    if (!inside[i]) gaps &= w[1][i] == w0[i] && m[1][i] == 0.0f && v[1][i] == 0.0f;
  printf("%-18s gaps    untouched  %s\n", name, gaps ? "PASS" : "FAIL");
  CHECK(gaps);
  compare(name, "w", w, n, TOL_F32);
  compare(name, "m", m, n, TOL_F32);
  compare(name, "v", v, n, TOL_F32);
  free(inside), free(w0), free(g1), free(g2);
}

static void test_optimizer(int lamb, int bias_correction, size_t big) {
  /* gaps between the ranges and after them */
  ParamRange r[3] = {{0, 1000, 1}, {1100, 3000, 0}, {4200, big, 1}};
  char name[32];
  snprintf(name, sizeof name, "%s%s", lamb ? "lamb" : "adamw", bias_correction ? "" : "/nobc");
  run_optimizer(name, lamb, bias_correction, r, 3, 4200 + big + 50);
}

/* Clipping on the device (OptParams.grad_sumsq): two steps, each clipped
 * to norm 10 by the backend's own sum of squares; then a step with a norm
 * that is not finite must change nothing. */
static void test_optimizer_clip(int lamb) {
  ParamRange r[3] = {{0, 1000, 1}, {1100, 3000, 0}, {4200, 5000, 1}};
  const size_t n = 9250;
  float *w0 = rnd(n, -1, 1), *g1 = rnd(n, -1, 1), *g2 = rnd(n, -1, 1), inf = INFINITY;
  OptParams op = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-6f,
                  .weight_decay = 0.01f, .grad_scale = 1.0f, .step = 1, .bias_correction = 1,
                  .max_norm = 10.0f};
  float *w[3], *m[3], *v[3];
  int kept = 1;
  for (int k = 0; k < 3; k++) {
    const Ops *o = backend(k);
    void (*step)(float *, const float *, float *, float *, const ParamRange *, int,
                 const OptParams *) = lamb ? o->lamb : o->adamw;
    float *dw = put(o, w0, n), *dm = put(o, NULL, n), *dv = put(o, NULL, n);
    float *dg1 = put(o, g1, n), *dg2 = put(o, g2, n), *sq = put(o, NULL, 1);
    op.grad_sumsq = sq;
    op.step = 1;
    o->sumsq(sq, dg1, n);
    step(dw, dg1, dm, dv, r, 3, &op);
    op.step = 2;
    o->sumsq(sq, dg2, n);
    step(dw, dg2, dm, dv, r, 3, &op);
    w[k] = get(o, dw, n);
    m[k] = get(o, dm, n);
    v[k] = get(o, dv, n);
    o->to_device(sq, &inf, sizeof inf);
    op.step = 3;
    step(dw, dg1, dm, dv, r, 3, &op);
    float *w3 = get(o, dw, n), *m3 = get(o, dm, n), *v3 = get(o, dv, n);
    kept &= memcmp(w3, w[k], n * sizeof *w3) == 0 && memcmp(m3, m[k], n * sizeof *m3) == 0 &&
            memcmp(v3, v[k], n * sizeof *v3) == 0;
    free(w3), free(m3), free(v3);
    release(o);
  }
  const char *name = lamb ? "lamb/clip" : "adamw/clip";
  printf("%-18s skip    an infinite norm changes nothing  %s\n", name, kept ? "PASS" : "FAIL");
  CHECK(kept);
  compare(name, "w", w, n, TOL_F32);
  compare(name, "m", m, n, TOL_F32);
  compare(name, "v", v, n, TOL_F32);
  free(w0), free(g1), free(g2);
}

/* More ranges than one launch takes (the CUDA backend launches per 128):
 * small ranges of varied sizes with gaps, some empty, some over one 4096-
 * element norm block, decay mixed. */
static void test_optimizer_many(int lamb) {
  enum { NR = 300 };
  ParamRange r[NR];
  size_t n = 0;
  for (int t = 0; t < NR; t++) {
    size_t count = 1 + rng_below(&R, 300);
    if (t % 50 == 7) count = 4097 + rng_below(&R, 5000);
    if (t % 37 == 5) count = 0;
    n += rng_below(&R, 3) * 17; /* a gap, or none */
    r[t].offset = n, r[t].count = count, r[t].decay = t % 3 != 0;
    n += count;
  }
  n += 33;
  run_optimizer(lamb ? "lamb/300 ranges" : "adamw/300 ranges", lamb, 1, r, NR, n);
}

/* The CUDA backend updates all ranges at once, so overlapping ones are refused. */
static void overlap_call(void *arg) {
  float *d = arg;
  ParamRange r[2] = {{0, 100, 1}, {50, 100, 1}};
  OptParams o = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-6f, .weight_decay = 0.01f,
                 .grad_scale = 1.0f, .step = 1, .bias_correction = 1};
  GPU->adamw(d, d + 200, d + 400, d + 600, r, 2, &o);
}

static void test_optimizer_overlap(void) {
  float *d = put(GPU, NULL, 800);
  char msg[512] = "";
  int died = die_catch(overlap_call, d, msg, sizeof msg) != 0;
  int named = strstr(msg, "adamw") && strstr(msg, "disjoint");
  printf("%-18s overlap dies: \"%s\"  %s\n", "adamw", msg, died && named ? "PASS" : "FAIL");
  CHECK(died);
  CHECK(named);
  release(GPU);
}

/* off: x starts off floats into its buffer (1: not 16-byte aligned). */
static void test_sumsq(size_t n, size_t off) {
  float *x = rnd(n + off, -1, 1), *res[3];
  for (int k = 0; k < 3; k++) {
    const Ops *o = backend(k);
    float *out = put(o, NULL, 1);
    o->sumsq(out, put(o, x, n + off) + off, n);
    res[k] = get(o, out, 1);
    release(o);
  }
  char name[40];
  snprintf(name, sizeof name, "sumsq n=%zu%s", n, off ? " +1" : "");
  compare(name, "out", res, 1, TOL_F32);
  free(x);
}

/* ---- bad ids found on the device ---- */

typedef struct BadCall {
  int xent, to_host; /* found at a sync, or at a read of the output */
  float *out, *x;
  int32_t *idx;
} BadCall;

static void bad_call(void *arg) {
  BadCall *c = arg;
  if (c->xent) GPU->xent_fwd(c->out, c->x, c->idx, 4, 5, 5);
  else GPU->gather_fwd(c->out, c->x, c->idx, 4, 5, 2);
  float first;
  if (c->to_host) GPU->to_host(&first, c->out, sizeof first);
  else GPU->sync();
}

static void test_bad_ids(int xent, int to_host) {
  int32_t ids[4] = {0, 3, xent ? 5 : 7, 1};
  float zeros[20] = {0};
  BadCall c = {xent, to_host, put(GPU, NULL, 20), put(GPU, zeros, 20), put_ids(GPU, ids, 4)};
  char msg[512] = "";
  int died = die_catch(bad_call, &c, msg, sizeof msg) != 0;
  const char *op = xent ? "xent_fwd" : "gather_fwd";
  int named = strstr(msg, op) && strstr(msg, xent ? "label 5" : "row 7");
  printf("%-18s bad id  dies%s: \"%s\"  %s\n", op, to_host ? " at to_host" : "", msg,
         died && named ? "PASS" : "FAIL");
  CHECK(died);
  CHECK(named);
  release(GPU);
  GPU->sync(); /* the record was cleared: nothing more to report */
}

/* Every op that takes activations, against the CPU. */
static void test_act_ops(void) {
  test_linear_fwd(NTOK, H, 3 * H, 1);
  test_linear_fwd(NPRED, H, V, 0);
  test_linear_fwd(NTOK, FFN, H, 1);
  test_linear_fwd(NTOK, 37, 5, 1); /* bf16 conversions with a tail of 1 to 3 */
  /* bf16 rows that are not whole 16 bytes, even and odd: small, and large
   * as the decoder's (over a million outputs take a padded product) */
  test_linear_fwd(NPRED, H, V + 1, 1);
  test_linear_fwd(1024, 16, 1026, 1);
  test_linear_fwd(1040, 16, 1009, 1);
  test_linear_bwd(NTOK, H, FFN, 7, 1);
  test_linear_bwd(NTOK, FFN, H, 7, 0);
  test_linear_bwd(NPRED, H, V, 2 | 4, 0);
  test_linear_bwd(B, H, 3, 1, 0);
  /* the bias sums over several row chunks (the last one part) and column
   * tiles: whole 16-byte rows, and odd rows (scalar in fp32, padded in bf16) */
  test_linear_bwd(1000, 16, 600, 2 | 4, 1);
  test_linear_bwd(300, 16, 1009, 4, 0);
  test_embed(1, 2);
  test_embed(0, 2);
  test_embed(1, 6);
  test_gather();
  test_scatter_runs(300, 3 * 128 + 20);
  test_scatter_runs(9000, 3);
  test_layernorm(NTOK, H);
  test_layernorm(7, 300); /* rows longer than a warp's pass */
  test_layernorm(NTOK, 768); /* BERT-base rows: whole packs in every lane, in registers */
  test_layernorm(33 * 64 + 5, H); /* more column-sum chunks than a warp has lanes */
  test_layernorm(NTOK, 2048); /* bf16: rows in registers, the column sums apart */
  test_residual_ln(NTOK, H, 0.1f, 0);
  test_residual_ln(7, 300, 0.3f, 0);
  test_residual_ln(NTOK, H, 0.0f, 0);
  test_residual_ln(NTOK, 256, 0.1f, 0);
  test_residual_ln(5 * 64 + 5, 768, 0.1f, 0); /* BERT-base rows over chunks, the last one part */
  test_kept_bits();
  test_elementwise(EW_ADD, "add", TOL_EXACT, 0);
  test_elementwise(EW_SCALE, "scale", TOL_EXACT, 0);
  test_elementwise(EW_GELU_FWD, "gelu_fwd", TOL_F32, 0);
  test_elementwise(EW_GELU_BWD, "gelu_bwd", TOL_F32, 0);
  test_elementwise(EW_TANH_FWD, "tanh_fwd", TOL_F32, 0);
  test_elementwise(EW_TANH_BWD, "tanh_bwd", TOL_F32, 0);
  test_elementwise(EW_GELU_BWD, "gelu_bwd", TOL_F32, 1);
  test_gelu_bias(NTOK, FFN);
  test_gelu_bias(300, 200); /* several row chunks */
  test_gelu_bias(NTOK, 101); /* rows of part packs: an element a lane */
  test_dropout(0, 0, 0.1f, 0);
  test_dropout(0, 1, 0.1f, 0);
  test_dropout(1, 1, 0.3f, 0);
  test_dropout(0, 0, 0.0f, 0);
  test_dropout(0, 0, 0.1f, 1);
  test_dropout(1, 1, 0.3f, 1);
  double tol = g_tol_override;
  if (tol > 0) g_tol_override = 2 * tol; /* attention chains two bf16 products */
  test_attention(B, S, 1);
  test_attention(2, 150, 0); /* rows longer than a warp's pass, no dropout */
  test_attention(2, 64, 1);  /* rows of whole 16-byte packs */
  test_attention(2, 128, 1); /* register rows: one quad per lane, every lane busy */
  test_attention(1, 200, 1); /* register rows: two quads on some lanes */
  test_attention(1, 260, 0); /* register rows: three quads on some lanes, no mask */
  /* BERT's heads (bf16: the one-kernel path at S 64 and 128): training's
   * shape, a shorter S (fewer of each lane's octet slots used), hd 32; and
   * S 96, which takes the batched products */
  test_attention_heads(2, 128, 1, 2, 64);
  test_attention_heads(2, 64, 1, 1, 64);
  test_attention_heads(2, 64, 1, 2, 32);
  test_attention_heads(1, 96, 1, 1, 64);
  g_tol_override = tol;
  test_xent(40, V, V, 0);
  test_xent(7, 1000, 1000, 0);
  test_xent(5, V, V, 1);
  test_xent(33, 1001, 1008, 0); /* the decoder's padded rows: whole 16 bytes */
  test_xent(9, V, V + 3, 0);    /* a stride that starts rows anywhere */
}

int main(void) {
  char why[256] = "";
  int count = cuda_device_count(why, sizeof why);
  if (count < 1) {
    printf("skipped: no CUDA device (%s)\n", count < 0 ? why : "cudaGetDeviceCount found none");
    return 77;
  }
  uint64_t seed;
  const char *env = getenv("BERTRAIN_TEST_SEED");
  if (env) seed = strtoull(env, NULL, 10);
  else {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    seed = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
  }
  printf("seed %llu (BERTRAIN_TEST_SEED=%llu repeats this run)\n", (unsigned long long)seed,
         (unsigned long long)seed);
  rng_init(&R, seed, 0x0c0da, 0);
  CPU = ops_cpu();
  GPU = ops_cuda();

  test_memory(0);
  test_memory(1);
  test_act_ops();
  /* TF32 products: a linear product again. */
  GPU->set_tf32(1);
  g_tol_override = TOL_TF32;
  g_mode = "/tf32";
  test_linear_fwd(NTOK, FFN, H, 1);
  GPU->set_tf32(0);
  /* bf16: every op again on bf16 activation buffers, inputs that are bf16
   * values, and bf16 products. */
  GPU->set_bf16(1);
  g_round16 = 1;
  g_tol_override = TOL_BF16;
  g_mode = "/bf16";
  test_memory(1);
  test_act_memory();
  test_act_mixing();
  test_act_ops();
  test_weight_copy();
  GPU->set_bf16(0);
  g_round16 = 0;
  g_tol_override = 0;
  g_mode = "";
  test_optimizer(0, 1, 5000);
  test_optimizer(1, 1, 5000);
  test_optimizer(1, 0, ((size_t)1 << 20) + 5000); /* more norm partials than threads */
  test_optimizer_many(0);
  test_optimizer_many(1);
  test_optimizer_clip(0);
  test_optimizer_clip(1);
  test_optimizer_overlap();
  test_sumsq(5331, 0);
  test_sumsq(((size_t)1 << 20) + 4097, 0);
  test_sumsq(70001, 1);
  test_sumsq(0, 0);
  test_bad_ids(0, 0);
  test_bad_ids(1, 0);
  test_bad_ids(0, 1);
  return test_finish();
}
