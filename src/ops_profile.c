/* bench --profile: see ops_profile.h. */
#include "ops_profile.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct ProfEntry {
  char key[80];
  double seconds, flops, bytes;
  long calls;
} ProfEntry;

/* The least work an op does: FLOPs of its products, and bytes of its
 * tensors read and written once each (the floor of its memory traffic). */
typedef struct Work {
  double flops, bytes;
} Work;

/* Bytes of an activation element as the backend stores it. */
static double g_act_bytes = 4.0;

#define MAX_ENTRIES 256

static const Ops *g_inner;
static ProfEntry g_entries[MAX_ENTRIES];
static int g_count;

/* Timing marks 2 and 3 (bench's steps use 0 and 1): the op's time on the
 * device's clock. */
static void prof_begin(void) { g_inner->mark(2); }

/* Adds the op's time and work to the entry "op shape". */
static void prof_end(Work w, const char *op, const char *shape_fmt, ...) PRINTF_LIKE(3, 4);

static void prof_end(Work w, const char *op, const char *shape_fmt, ...) {
  g_inner->mark(3);
  double dt = g_inner->mark_ms(2, 3) * 1e-3;
  char key[80];
  int n = snprintf(key, sizeof key, "%s ", op);
  va_list ap;
  va_start(ap, shape_fmt);
  if (n > 0 && (size_t)n < sizeof key) vsnprintf(key + n, sizeof key - (size_t)n, shape_fmt, ap);
  va_end(ap);
  int i = 0;
  while (i < g_count && strcmp(g_entries[i].key, key) != 0) i++;
  if (i == g_count) {
    if (g_count == MAX_ENTRIES) i = MAX_ENTRIES - 1; /* the rest share the last line */
    else snprintf(g_entries[g_count++].key, sizeof g_entries[0].key, "%s", key);
  }
  g_entries[i].seconds += dt;
  g_entries[i].flops += w.flops;
  g_entries[i].bytes += w.bytes;
  g_entries[i].calls++;
}

/* One wrapper per op: time the inner op under a key of its name and
 * shape, with its work: FLOPs, and activation elements and fp32 elements
 * (parameters, gradients, optimizer state) read plus written. */
#define TIMED(call, flops, act, f32, ...)                                              \
  do {                                                                                 \
    prof_begin();                                                                      \
    g_inner->call;                                                                     \
    Work w_ = {(double)(flops), g_act_bytes * (double)(act) + 4.0 * (double)(f32)};    \
    prof_end(w_, __VA_ARGS__);                                                         \
  } while (0)

static void p_linear_fwd(float *y, const float *x, const float *w, const float *b, int n, int in,
                         int out) {
  TIMED(linear_fwd(y, x, w, b, n, in, out), 2.0 * n * in * out,
        (double)n * in + (double)n * out, (double)out * in, "linear_fwd", "%d x %d -> %d", n, in, out);
}
static void p_linear_bwd(float *dx, float *dw, float *db, const float *dy, const float *x,
                         const float *w, int n, int in, int out, int acc) {
  TIMED(linear_bwd(dx, dw, db, dy, x, w, n, in, out, acc),
        ((dx ? 2.0 : 0.0) + (dw ? 2.0 : 0.0)) * n * in * out,
        (double)n * out + (dx ? (double)n * in : 0.0) + (dw ? (double)n * in : 0.0),
        (dx ? (double)out * in : 0.0) + (dw ? 2.0 * out * in : 0.0), "linear_bwd", "%d x %d -> %d%s", n,
        in, out, dx ? "" : " (no dx)");
}
static void p_embed_fwd(float *out, const int32_t *wid, const int32_t *tid, const float *wte,
                        const float *wpe, const float *wtt, int B, int S, int H, int vocab,
                        int ntypes) {
  TIMED(embed_fwd(out, wid, tid, wte, wpe, wtt, B, S, H, vocab, ntypes), 0,
        (double)B * S * H, 3.0 * B * S * H, "embed_fwd",
        "%d x %d x %d", B, S, H);
}
static void p_embed_bwd(float *dwte, float *dwpe, float *dwtt, const float *dout,
                        const int32_t *wid, const int32_t *tid, int B, int S, int H,
                        int vocab, int ntypes) {
  TIMED(embed_bwd(dwte, dwpe, dwtt, dout, wid, tid, B, S, H, vocab, ntypes), 0, (double)B * S * H,
        (double)B * S * H, "embed_bwd", "%d x %d x %d", B,
        S, H);
}
static void p_layernorm_fwd(float *out, float *mean, float *rstd, const float *x,
                            const float *gamma, const float *beta, int n, int c, float eps) {
  TIMED(layernorm_fwd(out, mean, rstd, x, gamma, beta, n, c, eps), 0, 2.0 * n * c, 0,
        "layernorm_fwd", "%d x %d",
        n, c);
}
static void p_layernorm_bwd(float *dx, float *dgamma, float *dbeta, const float *dy,
                            const float *x, const float *mean, const float *rstd,
                            const float *gamma, int n, int c) {
  TIMED(layernorm_bwd(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, n, c), 0, 3.0 * n * c, 0,
        "layernorm_bwd",
        "%d x %d", n, c);
}
static void p_residual_ln_fwd(float *out, float *sum, float *mean, float *rstd, const float *y,
                              const float *res, const float *gamma, const float *beta, int n,
                              int c, float eps, float p, DropoutKey key) {
  TIMED(residual_ln_fwd(out, sum, mean, rstd, y, res, gamma, beta, n, c, eps, p, key), 0,
        4.0 * n * c, 0, "residual_ln_fwd", "%d x %d", n, c);
}
static void p_residual_ln_bwd(float *dx, float *dbranch, float *dgamma, float *dbeta,
                              const float *dy, const float *sum, const float *mean,
                              const float *rstd, const float *gamma, int n, int c, float p,
                              DropoutKey key) {
  TIMED(residual_ln_bwd(dx, dbranch, dgamma, dbeta, dy, sum, mean, rstd, gamma, n, c, p, key), 0,
        (dbranch ? 4.0 : 3.0) * n * c, 0, "residual_ln_bwd", "%d x %d", n, c);
}
static void p_add(float *out, const float *a, const float *b, size_t n) {
  TIMED(add(out, a, b, n), 0, 3.0 * n, 0, "add", "%zu", n);
}
static void p_gelu_fwd(float *out, const float *x, size_t n) {
  TIMED(gelu_fwd(out, x, n), 0, 2.0 * n, 0, "gelu_fwd", "%zu", n);
}
static void p_gelu_bwd(float *dx, float *dbias, const float *dy, const float *x, size_t n, int c) {
  TIMED(gelu_bwd(dx, dbias, dy, x, n, c), 0, 3.0 * n, 0, "gelu_bwd", "%zu%s", n,
        dbias ? " + bias" : "");
}
static void p_tanh_fwd(float *out, const float *x, size_t n) {
  TIMED(tanh_fwd(out, x, n), 0, 2.0 * n, 0, "tanh_fwd", "%zu", n);
}
static void p_tanh_bwd(float *dx, const float *dy, const float *y, size_t n) {
  TIMED(tanh_bwd(dx, dy, y, n), 0, 3.0 * n, 0, "tanh_bwd", "%zu", n);
}
static void p_scale(float *x, size_t n, float s) { TIMED(scale(x, n, s), 0, 2.0 * n, 0, "scale", "%zu", n); }
static void p_dropout_fwd(float *out, const float *x, size_t n, float p, DropoutKey k) {
  TIMED(dropout_fwd(out, x, n, p, k), 0, 2.0 * n, 0, "dropout_fwd", "%zu", n);
}
static void p_dropout_bwd(float *dx, const float *dy, size_t n, float p, DropoutKey k) {
  TIMED(dropout_bwd(dx, dy, n, p, k), 0, 2.0 * n, 0, "dropout_bwd", "%zu", n);
}
static void p_attn_fwd(float *ctx, float *probs, const float *q, const float *k, const float *v,
                       int ld, const int32_t *mask, int B, int S, int nh, int hd, float p,
                       DropoutKey key) {
  TIMED(attn_fwd(ctx, probs, q, k, v, ld, mask, B, S, nh, hd, p, key),
        4.0 * B * S * S * nh * hd, 4.0 * B * S * nh * hd + 2.0 * B * nh * S * S, 0, "attn_fwd",
        "B=%d S=%d heads=%d x %d", B, S, nh, hd);
}
static void p_attn_bwd(float *dq, float *dk, float *dv, const float *dctx, const float *probs,
                       const float *q, const float *k, const float *v, int ld, int B, int S,
                       int nh, int hd, float p, DropoutKey key) {
  TIMED(attn_bwd(dq, dk, dv, dctx, probs, q, k, v, ld, B, S, nh, hd, p, key),
        8.0 * B * S * S * nh * hd, 7.0 * B * S * nh * hd + 3.0 * B * nh * S * S, 0, "attn_bwd",
        "B=%d S=%d heads=%d x %d", B, S, nh, hd);
}
static void p_gather_fwd(float *out, const float *x, const int32_t *idx, int n, int rows, int c) {
  TIMED(gather_fwd(out, x, idx, n, rows, c), 0, 2.0 * n * c, 0, "gather_fwd", "%d of %d x %d", n, rows, c);
}
static void p_gather_bwd(float *dx, const float *dout, const int32_t *idx, int n, int rows,
                         int c) {
  TIMED(gather_bwd(dx, dout, idx, n, rows, c), 0, 3.0 * n * c, 0, "gather_bwd", "%d of %d x %d", n, rows, c);
}
static void p_xent_fwd(float *out, const float *logits, const int32_t *labels, int n, int v,
                       int ld) {
  TIMED(xent_fwd(out, logits, labels, n, v, ld), 0, (double)n * v, 0, "xent_fwd", "%d x %d", n, v);
}
static void p_xent_bwd(float *dl, float *out, const float *logits, const int32_t *labels, int n,
                       int v, int ld, float scale) {
  TIMED(xent_bwd(dl, out, logits, labels, n, v, ld, scale), 0, (double)n * v + (double)n * ld, 0,
        "xent_bwd", "%d x %d", n, v);
}
/* The optimizer reads w, g, m, v and writes w, m, v over the ranges. */
static double range_elems(const ParamRange *r, int nr) {
  double n = 0;
  for (int i = 0; i < nr; i++) n += (double)r[i].count;
  return n;
}

static void p_adamw(float *w, const float *g, float *m, float *v, const ParamRange *r, int nr,
                    const OptParams *o) {
  TIMED(adamw(w, g, m, v, r, nr, o), 0, 0, 7.0 * range_elems(r, nr), "adamw", "%d ranges", nr);
}
static void p_lamb(float *w, const float *g, float *m, float *v, const ParamRange *r, int nr,
                   const OptParams *o) {
  TIMED(lamb(w, g, m, v, r, nr, o), 0, 0, 7.0 * range_elems(r, nr), "lamb", "%d ranges", nr);
}
static void p_sumsq(float *out, const float *x, size_t n) {
  TIMED(sumsq(out, x, n), 0, 0, (double)n, "sumsq", "%zu", n);
}

const Ops *ops_profiled(const Ops *inner, int act_bytes) {
  static Ops t;
  g_inner = inner;
  g_act_bytes = act_bytes;
  t = *inner; /* memory, sync, settings, timing marks: the inner ones */
  t.linear_fwd = p_linear_fwd;
  t.linear_bwd = p_linear_bwd;
  t.embed_fwd = p_embed_fwd;
  t.embed_bwd = p_embed_bwd;
  t.layernorm_fwd = p_layernorm_fwd;
  t.layernorm_bwd = p_layernorm_bwd;
  t.residual_ln_fwd = p_residual_ln_fwd;
  t.residual_ln_bwd = p_residual_ln_bwd;
  t.add = p_add;
  t.gelu_fwd = p_gelu_fwd;
  t.gelu_bwd = p_gelu_bwd;
  t.tanh_fwd = p_tanh_fwd;
  t.tanh_bwd = p_tanh_bwd;
  t.scale = p_scale;
  t.dropout_fwd = p_dropout_fwd;
  t.dropout_bwd = p_dropout_bwd;
  t.attn_fwd = p_attn_fwd;
  t.attn_bwd = p_attn_bwd;
  t.gather_fwd = p_gather_fwd;
  t.gather_bwd = p_gather_bwd;
  t.xent_fwd = p_xent_fwd;
  t.xent_bwd = p_xent_bwd;
  t.adamw = p_adamw;
  t.lamb = p_lamb;
  t.sumsq = p_sumsq;
  ops_profile_reset();
  return &t;
}

void ops_profile_reset(void) {
  memset(g_entries, 0, sizeof g_entries);
  g_count = 0;
}

static int by_time(const void *a, const void *b) {
  double x = ((const ProfEntry *)a)->seconds, y = ((const ProfEntry *)b)->seconds;
  return (x < y) - (x > y);
}

void ops_profile_print(FILE *f, int steps) {
  double total = 0;
  for (int i = 0; i < g_count; i++) total += g_entries[i].seconds;
  qsort(g_entries, (size_t)g_count, sizeof *g_entries, by_time);
  fprintf(f, "profile: ops by time on the device's clock (each op timed alone), per step;\n"
             "profile: TFLOP/s of the products, GB/s of the op's tensors read and written once "
             "(activations %.0f bytes an element)\n", g_act_bytes);
  fprintf(f, "profile: %9s %6s %7s %8s %8s  %s\n", "ms", "share", "calls", "TFLOP/s", "GB/s",
          "op and shape");
  for (int i = 0; i < g_count; i++) {
    const ProfEntry *e = &g_entries[i];
    char tf[16] = "-";
    if (e->flops > 0 && e->seconds > 0) snprintf(tf, sizeof tf, "%.1f", e->flops / e->seconds / 1e12);
    fprintf(f, "profile: %9.3f %5.1f%% %7.1f %8s %8.0f  %s\n", e->seconds * 1e3 / steps,
            total > 0 ? 100 * e->seconds / total : 0.0, (double)e->calls / steps, tf,
            e->seconds > 0 ? e->bytes / e->seconds / 1e9 : 0.0, e->key);
  }
  fprintf(f, "profile: %9.3f %5.1f%% %7s  all ops\n", total * 1e3 / steps, 100.0, "");
}
