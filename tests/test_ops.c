/* The ops table (CPU backend): every backward against central finite
 * differences of its forward, optimizer steps against hand computations, the
 * dropout mask as a pure function of (seed, step, tensor, element), and
 * bit-identical results with 1 and 2 threads.
 *
 * Finite differences: L = sum(out * w) with fixed random w, summed in double
 * from the float forward; each input element is moved by +-FD_EPS (the
 * actual float step is used as the denominator). The check passes when
 * |fd - analytic| / |analytic| (2-norms over the tensor) < FD_TOL and no
 * element is off by more than FD_TOL_ELEM * max|analytic|. Float rounding
 * in L is about 1e-6 relative, so with FD_EPS = 1e-2 the expected error is
 * ~1e-4 (measured: below 1e-4); the tolerances leave a margin of 10x.
 *
 * The test goes through to_device / to_host only, so a GPU backend can run it. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "dropout_rng.h"
#include "ops.h"
#include "rng.h"
#include "test_util.h"

#define FD_EPS 1e-2
#define FD_TOL 1e-3
#define FD_TOL_ELEM 1e-3

static const Ops *O;
static Rng R;

/* ---- host / device helpers ---- */

static float *host_rand(size_t n, float lo, float hi) {
  float *h = malloc(n * sizeof *h);
  for (size_t i = 0; i < n; i++) h[i] = lo + (hi - lo) * (float)rng_uniform(&R);
  return h;
}
static float *dev(const float *h, size_t n) {
  float *d = O->alloc(n * sizeof *d);
  if (h) O->to_device(d, h, n * sizeof *d);
  return d;
}
static int32_t *dev_ids(const int32_t *h, size_t n) {
  int32_t *d = O->alloc(n * sizeof *d);
  O->to_device(d, h, n * sizeof *d);
  return d;
}
static void up(float *d, const float *h, size_t n) { O->to_device(d, h, n * sizeof *d); }
static float *down(const float *d, size_t n) {
  float *h = malloc(n * sizeof *h);
  O->to_host(h, d, n * sizeof *h);
  return h;
}
static double dot_w(const float *d_out, const float *wts, size_t n) {
  float *h = down(d_out, n);
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += (double)h[i] * wts[i];
  free(h);
  return s;
}

/* Central differences of loss() with respect to every element of the host
 * array param (the loss uploads it), against the analytic gradient grad. */
static void fd_check(const char *name, float *param, size_t n, const float *grad,
                     double (*loss)(void)) {
  double err2 = 0.0, g2 = 0.0, gmax = 0.0, emax = 0.0;
  for (size_t i = 0; i < n; i++) {
    float keep = param[i], hi = (float)(keep + FD_EPS), lo = (float)(keep - FD_EPS);
    param[i] = hi;
    double lp = loss();
    param[i] = lo;
    double lm = loss();
    param[i] = keep;
    if (i + 1 == n) loss(); /* leave the device copy unperturbed */
    double fd = (lp - lm) / ((double)hi - lo), e = fabs(fd - grad[i]);
    err2 += e * e;
    g2 += (double)grad[i] * grad[i];
    if (fabs(grad[i]) > gmax) gmax = fabs(grad[i]);
    if (e > emax) emax = e;
  }
  double rel = sqrt(err2) / (sqrt(g2) > 1e-30 ? sqrt(g2) : 1e-30);
  int ok = g2 > 0.0 && rel < FD_TOL && emax <= FD_TOL_ELEM * gmax;
  if (ok) t_passed++;
  else t_failed++;
  fprintf(ok ? stdout : stderr, "%s fd %-22s n=%-4zu rel err %.2e, max elem err %.2e (|g|max %.3g)\n",
          ok ? "ok  " : "FAIL", name, n, rel, emax, gmax);
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
  return m;
}

/* ---- linear ---- */

static struct {
  int n, in, out;
  float *x, *w, *b, *wts;    /* host */
  float *dx, *dw, *db, *dy;  /* device */
  float *dX, *dW, *dB, *dYo; /* device copies of x, w, b and the output */
} L;

static double linear_loss(void) {
  up(L.dX, L.x, (size_t)L.n * L.in);
  up(L.dW, L.w, (size_t)L.out * L.in);
  up(L.dB, L.b, (size_t)L.out);
  O->linear_fwd(L.dYo, L.dX, L.dW, L.dB, L.n, L.in, L.out);
  return dot_w(L.dYo, L.wts, (size_t)L.n * L.out);
}

static void test_linear(void) {
  L.n = 10, L.in = 12, L.out = 7;
  size_t nx = (size_t)L.n * L.in, nw = (size_t)L.out * L.in, ny = (size_t)L.n * L.out;
  L.x = host_rand(nx, -1, 1), L.w = host_rand(nw, -1, 1), L.b = host_rand(L.out, -1, 1);
  L.wts = host_rand(ny, -1, 1);
  L.dX = dev(NULL, nx), L.dW = dev(NULL, nw), L.dB = dev(NULL, L.out), L.dYo = dev(NULL, ny);
  L.dx = dev(NULL, nx), L.dw = dev(NULL, nw), L.db = dev(NULL, L.out), L.dy = dev(L.wts, ny);
  linear_loss();
  /* y against a host product */
  float *y = down(L.dYo, ny);
  double worst = 0.0;
  for (int r = 0; r < L.n; r++)
    for (int o = 0; o < L.out; o++) {
      double s = L.b[o];
      for (int i = 0; i < L.in; i++) s += (double)L.x[r * L.in + i] * L.w[o * L.in + i];
      worst = fmax(worst, fabs(s - y[r * L.out + o]));
    }
  CHECK(worst < 1e-5);
  free(y);

  O->linear_bwd(L.dx, L.dw, L.db, L.dy, L.dX, L.dW, L.n, L.in, L.out, 0);
  float *gx = down(L.dx, nx), *gw = down(L.dw, nw), *gb = down(L.db, L.out);
  fd_check("linear dx", L.x, nx, gx, linear_loss);
  fd_check("linear dW", L.w, nw, gw, linear_loss);
  fd_check("linear db", L.b, L.out, gb, linear_loss);

  /* a second backward: dW, db accumulate; dx accumulates only when asked */
  O->linear_bwd(L.dx, L.dw, L.db, L.dy, L.dX, L.dW, L.n, L.in, L.out, 1);
  float *gx2 = down(L.dx, nx), *gw2 = down(L.dw, nw), *gb2 = down(L.db, L.out);
  double e = 0.0;
  for (size_t i = 0; i < nx; i++) e = fmax(e, fabs(gx2[i] - 2.0 * gx[i]));
  for (size_t i = 0; i < nw; i++) e = fmax(e, fabs(gw2[i] - 2.0 * gw[i]));
  for (int i = 0; i < L.out; i++) e = fmax(e, fabs(gb2[i] - 2.0 * gb[i]));
  CHECK(e < 1e-5);
  O->linear_bwd(L.dx, NULL, NULL, L.dy, L.dX, L.dW, L.n, L.in, L.out, 0);
  free(gx2);
  gx2 = down(L.dx, nx);
  CHECK(max_abs_diff(gx2, gx, nx) == 0.0);
  /* without a bias */
  O->linear_fwd(L.dYo, L.dX, L.dW, NULL, L.n, L.in, L.out);
  y = down(L.dYo, ny);
  double s = 0.0;
  for (int i = 0; i < L.in; i++) s += (double)L.x[L.in + i] * L.w[2 * L.in + i];
  CHECK(fabs(y[L.out + 2] - s) < 1e-5);
  free(y);
  free(gx), free(gw), free(gb), free(gx2), free(gw2), free(gb2);
  free(L.x), free(L.w), free(L.b), free(L.wts);
  O->free(L.dX), O->free(L.dW), O->free(L.dB), O->free(L.dYo);
  O->free(L.dx), O->free(L.dw), O->free(L.db), O->free(L.dy);
}

/* ---- embeddings ---- */

enum { EB = 2, ES = 5, EH = 12, EV = 11, ET = 2, EP = 7 };
static struct {
  int32_t word[EB * ES], type[EB * ES];
  float *wte, *wpe, *wtt, *wts;
  float *dwte, *dwpe, *dwtt, *dout;
  int32_t *dword, *dtype;
} E;

static double embed_loss(void) {
  up(E.dwte, E.wte, EV * EH);
  up(E.dwpe, E.wpe, EP * EH);
  up(E.dwtt, E.wtt, ET * EH);
  O->embed_fwd(E.dout, E.dword, E.dtype, E.dwte, E.dwpe, E.dwtt, EB, ES, EH, EV, ET);
  return dot_w(E.dout, E.wts, EB * ES * EH);
}

static void test_embeddings(void) {
  const int32_t word[EB * ES] = {3, 7, 3, 0, 10, 2, 3, 9, 7, 1};
  const int32_t type[EB * ES] = {0, 0, 1, 1, 1, 0, 0, 0, 1, 1};
  memcpy(E.word, word, sizeof word);
  memcpy(E.type, type, sizeof type);
  E.wte = host_rand(EV * EH, -1, 1), E.wpe = host_rand(EP * EH, -1, 1);
  E.wtt = host_rand(ET * EH, -1, 1), E.wts = host_rand(EB * ES * EH, -1, 1);
  E.dwte = dev(NULL, EV * EH), E.dwpe = dev(NULL, EP * EH), E.dwtt = dev(NULL, ET * EH);
  E.dout = dev(NULL, EB * ES * EH);
  E.dword = dev_ids(E.word, EB * ES), E.dtype = dev_ids(E.type, EB * ES);
  embed_loss();
  float *out = down(E.dout, EB * ES * EH);
  int t = 6, j = 5; /* sample 1, position 1 */
  float want = (E.wte[E.word[t] * EH + j] + E.wtt[E.type[t] * EH + j]) + E.wpe[1 * EH + j];
  CHECK(out[t * EH + j] == want);
  free(out);

  float *gte = dev(NULL, EV * EH), *gpe = dev(NULL, EP * EH), *gtt = dev(NULL, ET * EH);
  float *dy = dev(E.wts, EB * ES * EH);
  O->embed_bwd(gte, gpe, gtt, dy, E.dword, E.dtype, EB, ES, EH, EV, ET);
  float *hte = down(gte, EV * EH), *hpe = down(gpe, EP * EH), *htt = down(gtt, ET * EH);
  fd_check("embed word table", E.wte, EV * EH, hte, embed_loss);
  fd_check("embed position table", E.wpe, EP * EH, hpe, embed_loss);
  fd_check("embed type table", E.wtt, ET * EH, htt, embed_loss);
  /* word 3 appears three times: its gradient is the sum in token order */
  float s = ((E.wts[0 * EH + 4] + E.wts[2 * EH + 4]) + E.wts[6 * EH + 4]);
  CHECK(hte[3 * EH + 4] == s);
  CHECK(hte[4 * EH + 4] == 0.0f && hpe[6 * EH + 0] == 0.0f); /* unused rows */

  /* type ids NULL means all type 0 */
  O->embed_fwd(E.dout, E.dword, NULL, E.dwte, E.dwpe, E.dwtt, EB, ES, EH, EV, ET);
  out = down(E.dout, EB * ES * EH);
  CHECK(out[2 * EH + 1] == (E.wte[3 * EH + 1] + E.wtt[0 * EH + 1]) + E.wpe[2 * EH + 1]);
  free(out);
  free(hte), free(hpe), free(htt);
  O->free(gte), O->free(gpe), O->free(gtt), O->free(dy);
  free(E.wte), free(E.wpe), free(E.wtt), free(E.wts);
  O->free(E.dwte), O->free(E.dwpe), O->free(E.dwtt), O->free(E.dout);
  O->free(E.dword), O->free(E.dtype);
}

/* ---- layernorm ---- */

static struct {
  int n, c;
  float *x, *g, *b, *wts;
  float *dX, *dG, *dB, *dOut, *dMean, *dRstd;
} N;

static double ln_loss(void) {
  up(N.dX, N.x, (size_t)N.n * N.c);
  up(N.dG, N.g, N.c);
  up(N.dB, N.b, N.c);
  O->layernorm_fwd(N.dOut, N.dMean, N.dRstd, N.dX, N.dG, N.dB, N.n, N.c, 1e-12f);
  return dot_w(N.dOut, N.wts, (size_t)N.n * N.c);
}

static void test_layernorm(void) {
  N.n = 10, N.c = 13;
  size_t nx = (size_t)N.n * N.c;
  N.x = host_rand(nx, -2, 2), N.g = host_rand(N.c, 0.5f, 1.5f), N.b = host_rand(N.c, -1, 1);
  N.wts = host_rand(nx, -1, 1);
  N.dX = dev(NULL, nx), N.dG = dev(NULL, N.c), N.dB = dev(NULL, N.c), N.dOut = dev(NULL, nx);
  N.dMean = dev(NULL, N.n), N.dRstd = dev(NULL, N.n);
  ln_loss();
  /* row 3 against a host computation */
  float *out = down(N.dOut, nx);
  double mu = 0.0, var = 0.0;
  for (int j = 0; j < N.c; j++) mu += N.x[3 * N.c + j];
  mu /= N.c;
  for (int j = 0; j < N.c; j++) var += pow(N.x[3 * N.c + j] - mu, 2);
  var /= N.c;
  double want = (N.x[3 * N.c + 4] - mu) / sqrt(var + 1e-12) * N.g[4] + N.b[4];
  CHECK(fabs(out[3 * N.c + 4] - want) < 1e-5);
  free(out);

  float *dx = dev(NULL, nx), *dg = dev(NULL, N.c), *db = dev(NULL, N.c), *dy = dev(N.wts, nx);
  O->layernorm_bwd(dx, dg, db, dy, N.dX, N.dMean, N.dRstd, N.dG, N.n, N.c);
  float *hx = down(dx, nx), *hg = down(dg, N.c), *hb = down(db, N.c);
  fd_check("layernorm dx", N.x, nx, hx, ln_loss);
  fd_check("layernorm dgamma", N.g, N.c, hg, ln_loss);
  fd_check("layernorm dbeta", N.b, N.c, hb, ln_loss);
  /* dx may overwrite dy */
  O->layernorm_bwd(dy, dg, db, dy, N.dX, N.dMean, N.dRstd, N.dG, N.n, N.c);
  float *hy = down(dy, nx), *hg2 = down(dg, N.c);
  CHECK(memcmp(hy, hx, nx * sizeof *hx) == 0);
  CHECK(fabs(hg2[2] - 2.0 * hg[2]) < 1e-5); /* accumulated */
  free(hx), free(hg), free(hb), free(hy), free(hg2);
  O->free(dx), O->free(dg), O->free(db), O->free(dy);
  free(N.x), free(N.g), free(N.b), free(N.wts);
  O->free(N.dX), O->free(N.dG), O->free(N.dB), O->free(N.dOut), O->free(N.dMean), O->free(N.dRstd);
}

/* ---- elementwise: gelu, tanh, dropout ---- */

enum { EN = 37 };
static struct {
  int kind; /* 0 gelu, 1 tanh, 2 dropout */
  float *x, *wts;
  float *dX, *dOut;
  DropoutKey key;
} W;

static double elem_loss(void) {
  up(W.dX, W.x, EN);
  if (W.kind == 0) O->gelu_fwd(W.dOut, W.dX, EN);
  if (W.kind == 1) O->tanh_fwd(W.dOut, W.dX, EN);
  if (W.kind == 2) O->dropout_fwd(W.dOut, W.dX, EN, 0.3f, W.key);
  return dot_w(W.dOut, W.wts, EN);
}

static void test_elementwise(void) {
  W.x = host_rand(EN, -3, 3), W.wts = host_rand(EN, -1, 1);
  W.dX = dev(NULL, EN), W.dOut = dev(NULL, EN);
  W.key = (DropoutKey){.seed = 42, .step = 3, .tensor = 7, .elem_offset = 1001};
  float *dy = dev(W.wts, EN), *dx = dev(NULL, EN);
  const char *names[3] = {"gelu", "tanh", "dropout"};
  for (W.kind = 0; W.kind < 3; W.kind++) {
    elem_loss();
    if (W.kind == 0) O->gelu_bwd(dx, NULL, dy, W.dX, EN, 0);
    if (W.kind == 1) O->tanh_bwd(dx, dy, W.dOut, EN);
    if (W.kind == 2) O->dropout_bwd(dx, dy, EN, 0.3f, W.key);
    float *g = down(dx, EN);
    fd_check(names[W.kind], W.x, EN, g, elem_loss);
    free(g);
  }
  /* values: gelu(1) = Phi(1), tanh, add, scale */
  float one = 1.0f, r;
  O->to_device(W.dX, &one, sizeof one);
  O->gelu_fwd(W.dOut, W.dX, 1);
  O->to_host(&r, W.dOut, sizeof r);
  CHECK(fabs(r - 0.8413447460685429) < 1e-6);
  O->tanh_fwd(W.dOut, W.dX, 1);
  O->to_host(&r, W.dOut, sizeof r);
  CHECK(fabs(r - tanh(1.0)) < 1e-6);
  up(W.dX, W.x, EN);
  O->add(dx, W.dX, dy, EN);
  O->scale(dx, EN, 0.5f);
  float *a = down(dx, EN);
  int same = 1;
  for (int i = 0; i < EN; i++) same &= a[i] == (W.x[i] + W.wts[i]) * 0.5f;
  CHECK(same);
  free(a);
  O->free(dy), O->free(dx), O->free(W.dX), O->free(W.dOut);
  free(W.x), free(W.wts);
}

/* Each GELU value depends on its input alone, not on where it sits in the
 * call (a vector loop with a scalar remainder would differ in the last bits
 * at the end of each call, so with the rank count and the thread chunks). */
static void test_gelu_position(void) {
  enum { N = 1003, SHIFT = 5 };
  float *h = host_rand(N, -4, 4), *dyh = host_rand(N, -1, 1);
  float *x = dev(h, N), *dy = dev(dyh, N), *y = dev(NULL, N), *y2 = dev(NULL, N);
  int same = 1;
  for (int dir = 0; dir < 2; dir++) {
    if (dir == 0) {
      O->gelu_fwd(y, x, N);
      O->gelu_fwd(y2, x + SHIFT, N - SHIFT);
    } else {
      O->gelu_bwd(y, NULL, dy, x, N, 0);
      O->gelu_bwd(y2, NULL, dy + SHIFT, x + SHIFT, N - SHIFT, 0);
    }
    float *a = down(y, N), *b = down(y2, N - SHIFT);
    same &= memcmp(a + SHIFT, b, (N - SHIFT) * sizeof *a) == 0;
    free(a), free(b);
  }
  CHECK(same);
  O->free(x), O->free(dy), O->free(y), O->free(y2);
  free(h), free(dyh);
}

/* The GELU against a double reference over [-8, 8], forward and backward:
 * within a few float ulps of the larger of the value and 1 (the vector erff
 * and expf are within 2 and 3 ulp; for x below about -2, 1 + erff cancels,
 * so the error is absolute there, for scalar and vector erff alike). */
static void test_gelu_accuracy(void) {
  enum { N = 4099 };
  float *h = malloc(N * sizeof *h), *ones = malloc(N * sizeof *ones);
  for (int i = 0; i < N; i++) h[i] = -8.0f + 16.0f * (float)i / (N - 1), ones[i] = 1.0f;
  float *x = dev(h, N), *dy = dev(ones, N), *y = dev(NULL, N), *dx = dev(NULL, N);
  O->gelu_fwd(y, x, N);
  O->gelu_bwd(dx, NULL, dy, x, N, 0);
  float *a = down(y, N), *b = down(dx, N);
  double worst_f = 0.0, worst_b = 0.0;
  for (int i = 0; i < N; i++) {
    const double xi = h[i], cdf = 0.5 * (1.0 + erf(xi / sqrt(2.0)));
    const double f = xi * cdf, g = cdf + xi * exp(-0.5 * xi * xi) * 0.3989422804014327;
    worst_f = fmax(worst_f, fabs(a[i] - f) / fmax(fabs(f), 1.0));
    worst_b = fmax(worst_b, fabs(b[i] - g) / fmax(fabs(g), 1.0));
  }
  printf("gelu vs double: worst error %.2e forward, %.2e backward\n", worst_f, worst_b);
  CHECK(worst_f < 1e-6 && worst_b < 1e-6);
  O->free(x), O->free(dy), O->free(y), O->free(dx);
  free(a), free(b), free(h), free(ones);
}

/* dropout_threshold: the integer test agrees with dropout_uniform's at the
 * boundary, for round and random probabilities. */
static void test_dropout_threshold(void) {
  float ps[64] = {1e-7f, 0.1f, 0.5f, 0.3333333f, 0.9f, 0.99999994f, 1.0f / 16777216.0f, 0.25f};
  for (int i = 8; i < 64; i++) ps[i] = (float)(0.999 * rng_uniform(&R));
  int ok = 1;
  for (int i = 0; i < 64; i++) {
    if (ps[i] <= 0.0f) continue;
    const uint32_t t = dropout_threshold(ps[i]);
    ok &= t >= 1 && t < (1u << 24);
    ok &= dropout_uniform(t << 8) >= ps[i] && dropout_uniform((t - 1) << 8) < ps[i];
  }
  CHECK(ok);
}

/* gelu_bwd's bias sums: the same dx, and the bias plus dx's column sums. */
static void test_gelu_bias(void) {
  enum { R = 6, C = 5 };
  float *x = host_rand(R * C, -3, 3), *g = host_rand(R * C, -1, 1), *b0 = host_rand(C, -1, 1);
  float *dX = dev(x, R * C), *dY = dev(g, R * C), *dA = dev(NULL, R * C), *dB = dev(b0, C);
  O->gelu_bwd(dA, NULL, dY, dX, R * C, 0);
  O->gelu_bwd(dY, dB, dY, dX, R * C, C); /* in place, as the model */
  float *plain = down(dA, R * C), *fused = down(dY, R * C), *bias = down(dB, C);
  CHECK(memcmp(plain, fused, R * C * sizeof(float)) == 0);
  for (int j = 0; j < C; j++) {
    double s = b0[j];
    for (int r = 0; r < R; r++) s += plain[r * C + j];
    CHECK(fabs(bias[j] - s) < 1e-5);
  }
  free(x), free(g), free(b0), free(plain), free(fused), free(bias);
  O->free(dX), O->free(dY), O->free(dA), O->free(dB);
}

/* ---- attention ---- */

enum { AB = 2, AS = 5, ANH = 3, AHD = 4, AH = ANH * AHD };
static struct {
  int ld;
  float p;
  int use_mask;
  int32_t mask[AB * AS];
  float *qkv, *wts; /* host: q, k, v as thirds of [B,S,3H] (ld 3H) or three [B,S,H] blocks */
  float *dQKV, *dCtx, *dProbs;
  int32_t *dMask;
  DropoutKey key;
} A;

static size_t attn_qkv_len(void) { return (size_t)AB * AS * 3 * AH; }
static void attn_ptrs(float *base, float **q, float **k, float **v) {
  size_t third = (size_t)AB * AS * AH;
  *q = base;
  *k = A.ld == 3 * AH ? base + AH : base + third;
  *v = A.ld == 3 * AH ? base + 2 * AH : base + 2 * third;
}

static double attn_loss(void) {
  float *q, *k, *v;
  up(A.dQKV, A.qkv, attn_qkv_len());
  attn_ptrs(A.dQKV, &q, &k, &v);
  O->attn_fwd(A.dCtx, A.dProbs, q, k, v, A.ld, A.use_mask ? A.dMask : NULL, AB, AS, ANH, AHD,
              A.p, A.key);
  return dot_w(A.dCtx, A.wts, (size_t)AB * AS * AH);
}

/* ctx recomputed on the host from probs, the documented dropout mapping and V. */
static double attn_host_ctx_err(void) {
  float *probs = down(A.dProbs, (size_t)AB * ANH * AS * AS), *ctx = down(A.dCtx, (size_t)AB * AS * AH);
  float *hq, *hk, *hv;
  attn_ptrs(A.qkv, &hq, &hk, &hv);
  double worst = 0.0;
  for (int b = 0; b < AB; b++)
    for (int h = 0; h < ANH; h++)
      for (int i = 0; i < AS; i++)
        for (int d = 0; d < AHD; d++) {
          double s = 0.0;
          for (int j = 0; j < AS; j++) {
            size_t e = (((size_t)b * ANH + h) * AS + i) * AS + j;
            int keep = A.p == 0.0f || dropout_keep(A.key.seed, A.key.step, A.key.tensor,
                                                   A.key.elem_offset + e, A.p);
            double pd = keep ? probs[e] / (1.0 - A.p) : 0.0;
            s += pd * hv[((size_t)b * AS + j) * A.ld + h * AHD + d];
          }
          worst = fmax(worst, fabs(s - ctx[((size_t)b * AS + i) * AH + h * AHD + d]));
        }
  free(probs), free(ctx);
  return worst;
}

static void attn_case(const char *name, int ld, float p, int use_mask) {
  A.ld = ld, A.p = p, A.use_mask = use_mask;
  size_t n = attn_qkv_len(), nc = (size_t)AB * AS * AH, np = (size_t)AB * ANH * AS * AS;
  A.qkv = host_rand(n, -1.5f, 1.5f), A.wts = host_rand(nc, -1, 1);
  A.dQKV = dev(NULL, n), A.dCtx = dev(NULL, nc), A.dProbs = dev(NULL, np);
  attn_loss();

  /* softmax rows sum to 1 and padded keys get exactly 0 */
  float *probs = down(A.dProbs, np);
  double worst = 0.0;
  int zero_ok = 1;
  for (int b = 0; b < AB; b++)
    for (int h = 0; h < ANH; h++)
      for (int i = 0; i < AS; i++) {
        double s = 0.0;
        for (int j = 0; j < AS; j++) {
          float pr = probs[(((size_t)b * ANH + h) * AS + i) * AS + j];
          s += pr;
          if (use_mask && A.mask[b * AS + j] == 0) zero_ok &= pr == 0.0f;
          else zero_ok &= pr > 0.0f;
        }
        worst = fmax(worst, fabs(s - 1.0));
      }
  CHECK(worst < 1e-6);
  CHECK(zero_ok);
  free(probs);
  CHECK(attn_host_ctx_err() < 1e-5);

  float *dqkv = dev(NULL, n), *dctx = dev(A.wts, nc), *dq, *dk, *dv, *q, *k, *v;
  attn_ptrs(dqkv, &dq, &dk, &dv);
  attn_ptrs(A.dQKV, &q, &k, &v);
  O->attn_bwd(dq, dk, dv, dctx, A.dProbs, q, k, v, ld, AB, AS, ANH, AHD, p, A.key);
  float *g = down(dqkv, n);
  fd_check(name, A.qkv, n, g, attn_loss);
  if (use_mask) { /* padded keys and values (sample 1, last two positions) get no gradient */
    float *gq, *gk, *gv;
    int zero = 1;
    attn_ptrs(g, &gq, &gk, &gv);
    for (int s = AS - 2; s < AS; s++)
      for (int c = 0; c < AH; c++)
        zero &= gk[((size_t)1 * AS + s) * ld + c] == 0.0f && gv[((size_t)1 * AS + s) * ld + c] == 0.0f;
    CHECK(zero);
  }
  free(g);
  O->free(dqkv), O->free(dctx);
  free(A.qkv), free(A.wts);
  O->free(A.dQKV), O->free(A.dCtx), O->free(A.dProbs);
}

static void test_attention(void) {
  const int32_t mask[AB * AS] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
  memcpy(A.mask, mask, sizeof mask);
  A.dMask = dev_ids(A.mask, AB * AS);
  A.key = (DropoutKey){.seed = 0x123456789abcULL, .step = 17, .tensor = 2, .elem_offset = 6};
  attn_case("attn fused+mask+drop", 3 * AH, 0.25f, 1);
  attn_case("attn separate", AH, 0.0f, 0);
  attn_case("attn separate+mask", AH, 0.1f, 1);
  O->free(A.dMask);
}

/* ---- gather ---- */

enum { GR = 10, GC = 12, GN = 6 };
static struct {
  int32_t idx[GN];
  float *x, *wts, *dX, *dOut;
  int32_t *dIdx;
} G;

static double gather_loss(void) {
  up(G.dX, G.x, GR * GC);
  O->gather_fwd(G.dOut, G.dX, G.dIdx, GN, GR, GC);
  return dot_w(G.dOut, G.wts, GN * GC);
}

static void test_gather(void) {
  const int32_t idx[GN] = {3, 0, 3, 9, 5, 3};
  memcpy(G.idx, idx, sizeof idx);
  G.x = host_rand(GR * GC, -1, 1), G.wts = host_rand(GN * GC, -1, 1);
  G.dX = dev(NULL, GR * GC), G.dOut = dev(NULL, GN * GC), G.dIdx = dev_ids(G.idx, GN);
  gather_loss();
  float *out = down(G.dOut, GN * GC);
  CHECK(memcmp(out + 3 * GC, G.x + 9 * GC, GC * sizeof *out) == 0);
  free(out);
  float *dx = dev(NULL, GR * GC), *dy = dev(G.wts, GN * GC);
  O->gather_bwd(dx, dy, G.dIdx, GN, GR, GC);
  float *g = down(dx, GR * GC);
  fd_check("gather", G.x, GR * GC, g, gather_loss);
  CHECK(g[3 * GC + 1] == (G.wts[0 * GC + 1] + G.wts[2 * GC + 1]) + G.wts[5 * GC + 1]);
  CHECK(g[1 * GC] == 0.0f);
  free(g);
  O->free(dx), O->free(dy);
  free(G.x), free(G.wts);
  O->free(G.dX), O->free(G.dOut), O->free(G.dIdx);
}

/* ---- cross-entropy ---- */

enum { XN = 7, XV = 11 };
static struct {
  int32_t labels[XN];
  float *logits, *dLogits, *dOut;
  int32_t *dLabels;
} X;

static double xent_loss(void) {
  float out[3];
  up(X.dLogits, X.logits, XN * XV);
  O->xent_fwd(X.dOut, X.dLogits, X.dLabels, XN, XV, XV);
  O->to_host(out, X.dOut, sizeof out);
  return out[0];
}

static int host_argmax(const float *x, int v) {
  int a = 0;
  for (int j = 1; j < v; j++)
    if (x[j] > x[a]) a = j;
  return a;
}

static void test_xent(void) {
  X.logits = host_rand(XN * XV, -3, 3);
  /* rows 2 and 5 ignored; rows 0 and 3 labelled with their argmax */
  const int32_t labels[XN] = {-2, 4, -1, -3, 10, -100, 0};
  memcpy(X.labels, labels, sizeof labels);
  X.labels[0] = host_argmax(X.logits, XV);
  X.labels[3] = host_argmax(X.logits + 3 * XV, XV);
  X.labels[1] = (host_argmax(X.logits + 1 * XV, XV) + 1) % XV;
  X.dLogits = dev(NULL, XN * XV), X.dOut = dev(NULL, 3), X.dLabels = dev_ids(X.labels, XN);
  xent_loss();
  float out[3];
  O->to_host(out, X.dOut, sizeof out);
  double total = 0.0;
  int count = 0, correct = 0;
  for (int i = 0; i < XN; i++) {
    if (X.labels[i] < 0) continue;
    const float *x = X.logits + i * XV;
    double s = 0.0;
    for (int j = 0; j < XV; j++) s += exp(x[j]);
    total += log(s) - x[X.labels[i]];
    count++;
    correct += host_argmax(x, XV) == X.labels[i];
  }
  CHECK(fabs(out[0] - total / count) < 1e-5);
  CHECK_INT(out[1], correct);
  CHECK(correct >= 2);
  CHECK_INT(out[2], 5);

  float *dl = dev(NULL, XN * XV);
  O->xent_bwd(dl, NULL, X.dLogits, X.dLabels, XN, XV, XV, 1.0f / count);
  float *g = down(dl, XN * XV);
  fd_check("xent", X.logits, XN * XV, g, xent_loss);
  int zero = 1;
  for (int j = 0; j < XV; j++) zero &= g[2 * XV + j] == 0.0f && g[5 * XV + j] == 0.0f;
  CHECK(zero);
  /* dlogits may overwrite logits; the losses on the way are xent_fwd's */
  float fwd_out[3], bwd_out[3], *dOut2 = dev(NULL, 3);
  O->to_device(X.dLogits, X.logits, XN * XV * sizeof(float));
  O->xent_fwd(X.dOut, X.dLogits, X.dLabels, XN, XV, XV);
  O->to_host(fwd_out, X.dOut, sizeof fwd_out);
  O->xent_bwd(X.dLogits, dOut2, X.dLogits, X.dLabels, XN, XV, XV, 1.0f / count);
  O->to_host(bwd_out, dOut2, sizeof bwd_out);
  CHECK(memcmp(fwd_out, bwd_out, sizeof fwd_out) == 0);
  CHECK(fwd_out[2] == 5.0f);
  float *g2 = down(X.dLogits, XN * XV);
  CHECK(memcmp(g, g2, XN * XV * sizeof *g) == 0);
  O->free(dOut2);
  /* all rows ignored: mean 0, count 0 */
  int32_t none[XN];
  for (int i = 0; i < XN; i++) none[i] = -100;
  O->to_device(X.dLabels, none, sizeof none);
  O->xent_fwd(X.dOut, X.dLogits, X.dLabels, XN, XV, XV);
  O->to_host(out, X.dOut, sizeof out);
  CHECK(out[0] == 0.0f && out[1] == 0.0f && out[2] == 0.0f);
  free(g), free(g2);
  O->free(dl);
  free(X.logits);
  O->free(X.dLogits), O->free(X.dOut), O->free(X.dLabels);
}

/* Rows of stride XLD > XV (the MLM decoder's padded rows): the same losses
 * and gradients as the packed rows, bit for bit, whatever the columns past
 * XV hold; dlogits is 0 there. */
enum { XLD = XV + 5 };
static void test_xent_stride(void) {
  float *packed = host_rand(XN * XV, -3, 3), *rows = malloc(XN * XLD * sizeof *rows);
  for (int i = 0; i < XN; i++)
    for (int j = 0; j < XLD; j++) rows[i * XLD + j] = j < XV ? packed[i * XV + j] : 1e30f;
  const int32_t labels[XN] = {3, -1, 0, 10, 7, -100, 5};
  int32_t *dlab = dev_ids(labels, XN);
  float *dp = dev(packed, XN * XV), *dr = dev(rows, XN * XLD), *outs = dev(NULL, 9);
  float *gp = dev(NULL, XN * XV), *gr = dev(rows, XN * XLD); /* 1e30 in the pad until written */
  O->xent_fwd(outs, dp, dlab, XN, XV, XV);
  O->xent_fwd(outs + 3, dr, dlab, XN, XV, XLD);
  O->xent_bwd(gp, NULL, dp, dlab, XN, XV, XV, 0.2f);
  O->xent_bwd(gr, outs + 6, dr, dlab, XN, XV, XLD, 0.2f);
  float out[9], *hp = down(gp, XN * XV), *hr = down(gr, XN * XLD);
  O->to_host(out, outs, sizeof out);
  CHECK(memcmp(out, out + 3, 3 * sizeof *out) == 0 && memcmp(out, out + 6, 3 * sizeof *out) == 0);
  CHECK(out[2] == 5.0f && out[0] > 0.0f && out[0] < 10.0f);
  int same = 1, pad_zero = 1;
  for (int i = 0; i < XN; i++)
    for (int j = 0; j < XLD; j++) {
      if (j < XV) same &= hr[i * XLD + j] == hp[i * XV + j];
      else pad_zero &= hr[i * XLD + j] == 0.0f;
    }
  CHECK(same);
  CHECK(pad_zero);
  free(packed), free(rows), free(hp), free(hr);
  O->free(dlab), O->free(dp), O->free(dr), O->free(outs), O->free(gp), O->free(gr);
}

/* ---- optimizers ---- */

enum { PN = 10 };
static const ParamRange RANGES[2] = {{0, 4, 1}, {4, 3, 0}}; /* 7..9 outside */

typedef struct {
  float w[PN], g[PN], m[PN], v[PN];
} OptState;

static void opt_run(int lamb, const OptState *in, OptState *out, const OptParams *o, int steps) {
  float *w = dev(in->w, PN), *g = dev(in->g, PN), *m = dev(in->m, PN), *v = dev(in->v, PN);
  OptParams p = *o;
  for (int s = 0; s < steps; s++, p.step++) (lamb ? O->lamb : O->adamw)(w, g, m, v, RANGES, 2, &p);
  O->to_host(out->w, w, sizeof out->w);
  O->to_host(out->m, m, sizeof out->m);
  O->to_host(out->v, v, sizeof out->v);
  O->free(w), O->free(g), O->free(m), O->free(v);
}

/* The hand computation, in double, written from the formulas in ops.h. */
static void opt_host(int lamb, const OptState *in, double *w, const OptParams *o, int steps) {
  double m[PN] = {0}, v[PN] = {0};
  for (int i = 0; i < PN; i++) w[i] = in->w[i], m[i] = in->m[i], v[i] = in->v[i];
  for (int s = 0; s < steps; s++) {
    int t = o->step + s;
    double c1 = o->bias_correction ? 1 - pow(o->beta1, t) : 1;
    double c2 = o->bias_correction ? 1 - pow(o->beta2, t) : 1;
    for (int r = 0; r < 2; r++) {
      double u[PN], nw = 0, nu = 0;
      const ParamRange *pr = &RANGES[r];
      double wd = pr->decay ? o->weight_decay : 0.0;
      for (size_t i = pr->offset; i < pr->offset + pr->count; i++) {
        double g = (double)in->g[i] * o->grad_scale;
        m[i] = o->beta1 * m[i] + (1 - o->beta1) * g;
        v[i] = o->beta2 * v[i] + (1 - o->beta2) * g * g;
        u[i] = (m[i] / c1) / (sqrt(v[i] / c2) + o->eps);
        if (lamb) u[i] += wd * w[i];
        nw += w[i] * w[i];
        nu += u[i] * u[i];
      }
      double ratio = lamb && pr->decay && nw > 0 && nu > 0 ? sqrt(nw) / sqrt(nu) : 1.0;
      for (size_t i = pr->offset; i < pr->offset + pr->count; i++) {
        if (lamb) w[i] -= o->lr * ratio * u[i];
        else w[i] = w[i] * (1 - o->lr * wd) - o->lr * u[i];
      }
    }
  }
}

static void opt_compare(const char *name, int lamb, const OptParams *o, int steps) {
  OptState in, out;
  for (int i = 0; i < PN; i++) {
    in.w[i] = 0.5f + (float)rng_uniform(&R);
    in.g[i] = (float)rng_uniform(&R) - 0.5f;
    in.m[i] = in.v[i] = 0.0f;
  }
  double want[PN];
  opt_run(lamb, &in, &out, o, steps);
  opt_host(lamb, &in, want, o, steps);
  /* relative to the weights' scale (about 1): a weight the steps bring
   * near 0 would make its own relative error meaningless */
  double worst = 0.0;
  for (int i = 0; i < 7; i++) worst = fmax(worst, fabs(out.w[i] - want[i]) / fmax(fabs(want[i]), 1.0));
  int untouched = 1;
  for (int i = 7; i < PN; i++) untouched &= out.w[i] == in.w[i] && out.m[i] == 0.0f && out.v[i] == 0.0f;
  int ok = worst < 2e-6 && untouched;
  if (ok) t_passed++;
  else t_failed++;
  fprintf(ok ? stdout : stderr, "%s %s: max err %.2e (relative, at least to 1) vs hand computation%s\n",
          ok ? "ok  " : "FAIL", name, worst, untouched ? "" : ", elements outside the ranges changed");
}

static void test_optimizers(void) {
  OptParams o = {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-6f, .weight_decay = 0.5f,
                 .grad_scale = 0.5f, .step = 1, .bias_correction = 1};
  opt_compare("adamw 1 step", 0, &o, 1);
  opt_compare("adamw 3 steps", 0, &o, 3);
  opt_compare("lamb 1 step", 1, &o, 1);
  opt_compare("lamb 3 steps", 1, &o, 3);
  o.bias_correction = 0;
  opt_compare("adamw no bias correction", 0, &o, 2);
  opt_compare("lamb no bias correction", 1, &o, 2);

  /* decay mask: with g = 0 everywhere the only change is decay */
  OptState in, out;
  for (int i = 0; i < PN; i++) in.w[i] = 1.0f + i, in.g[i] = in.m[i] = in.v[i] = 0.0f;
  o.bias_correction = 1, o.step = 1;
  opt_run(0, &in, &out, &o, 1);
  CHECK(fabs(out.w[1] - in.w[1] * (1 - 0.1 * 0.5)) < 1e-6); /* decayed */
  CHECK(out.w[5] == in.w[5]);                               /* bias-like: no decay */
  /* LAMB: first step has u = sign(g) + wd w; check the trust ratio alone */
  for (int i = 0; i < PN; i++) in.g[i] = (i % 2 ? 1.0f : -1.0f) * (0.1f + i);
  o.weight_decay = 0.0f;
  opt_run(1, &in, &out, &o, 1);
  double nw = 0.0, nu = 0.0;
  for (int i = 0; i < 4; i++) {
    double u = (in.g[i] > 0 ? 1.0 : -1.0) / (1.0 + 1e-6 / fabs(in.g[i] * 0.5));
    nw += pow(in.w[i], 2), nu += u * u;
  }
  double ratio = sqrt(nw) / sqrt(nu); /* sqrt(1+4+9+16) / ~2 */
  CHECK(fabs(fabs(in.w[2] - out.w[2]) / 0.1 - ratio) < 1e-4 * ratio);
  CHECK(fabs((in.w[5] - out.w[5]) / 0.1 - 1.0) < 1e-4); /* no trust ratio outside decay */

  /* sum of squares against double */
  size_t n = 100003;
  float *h = host_rand(n, -1, 1), *d = dev(h, n), *dout = dev(NULL, 1), s;
  double want = 0.0;
  for (size_t i = 0; i < n; i++) want += (double)h[i] * h[i];
  O->sumsq(dout, d, n);
  O->to_host(&s, dout, sizeof s);
  CHECK(fabs(s - want) < 1e-6 * want);
  free(h);
  O->free(d), O->free(dout);
}

/* One step of adamw or lamb from in (m, v zero), clipped by grad_sumsq
 * (given: the device's value; NULL: taken by sumsq from g) to max_norm, or
 * by grad_scale when max_norm < 0. */
static void clip_step(int lamb, const OptState *in, OptState *out, float grad_scale,
                      const float *sumsq, float max_norm) {
  float *w = dev(in->w, PN), *g = dev(in->g, PN), *m = dev(in->m, PN), *v = dev(in->v, PN);
  float *sq = dev(sumsq, 1);
  if (!sumsq) O->sumsq(sq, g, PN);
  OptParams o = {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-6f, .weight_decay = 0.5f,
                 .grad_scale = grad_scale, .step = 1, .bias_correction = 1};
  if (max_norm >= 0.0f) o.grad_sumsq = sq, o.max_norm = max_norm;
  (lamb ? O->lamb : O->adamw)(w, g, m, v, RANGES, 2, &o);
  O->to_host(out->w, w, sizeof out->w);
  O->to_host(out->m, m, sizeof out->m);
  O->to_host(out->v, v, sizeof out->v);
  O->free(w), O->free(g), O->free(m), O->free(v), O->free(sq);
}

static int same_wmv(const OptState *a, const OptState *b) {
  return memcmp(a->w, b->w, sizeof a->w) == 0 && memcmp(a->m, b->m, sizeof a->m) == 0 &&
         memcmp(a->v, b->v, sizeof a->v) == 0;
}

/* OptParams.grad_sumsq: the same step as the host's grad_scale for that
 * norm; no scaling under max_norm or with max_norm 0; nothing changed when
 * the norm is not finite. */
static void test_optimizer_clip(void) {
  OptState in, want, got;
  double sq = 0.0;
  for (int i = 0; i < PN; i++) {
    in.w[i] = 0.5f + (float)rng_uniform(&R);
    in.g[i] = 4.0f * (float)rng_uniform(&R) - 2.0f;
    in.m[i] = in.v[i] = 0.0f;
    sq += (double)in.g[i] * in.g[i];
  }
  for (int lamb = 0; lamb < 2; lamb++) {
    float s;
    float *d = dev(in.g, PN), *ds = dev(NULL, 1);
    O->sumsq(ds, d, PN);
    O->to_host(&s, ds, sizeof s);
    O->free(d), O->free(ds);
    const float norm = sqrtf(s), max_norm = 0.25f * norm;
    CHECK(fabs(s - sq) < 1e-6 * sq);
    clip_step(lamb, &in, &want, (float)((double)max_norm / norm), NULL, -1.0f);
    clip_step(lamb, &in, &got, 1.0f, NULL, max_norm);
    CHECK(same_wmv(&want, &got));
    clip_step(lamb, &in, &want, 1.0f, NULL, -1.0f);
    clip_step(lamb, &in, &got, 1.0f, NULL, 2.0f * norm); /* under max_norm */
    CHECK(same_wmv(&want, &got));
    clip_step(lamb, &in, &got, 1.0f, NULL, 0.0f); /* no clipping */
    CHECK(same_wmv(&want, &got));
    clip_step(lamb, &in, &want, 0.5f, NULL, -1.0f); /* grad_scale multiplies */
    clip_step(lamb, &in, &got, 0.5f, NULL, 2.0f * norm);
    CHECK(same_wmv(&want, &got));
    const float bad[3] = {INFINITY, NAN, -1.0f}; /* -1: sqrt gives NaN */
    for (int b = 0; b < 3; b++) {
      clip_step(lamb, &in, &got, 1.0f, &bad[b], 1.0f);
      CHECK(same_wmv(&in, &got)); /* skipped: w, m, v as they were */
    }
  }
}

/* ---- dropout mask ---- */

static void test_dropout_mask(void) {
  const size_t n = 100003;
  const float p = 0.1f;
  DropoutKey k = {.seed = 987654321ULL, .step = 5, .tensor = 12, .elem_offset = 0};
  float *h = host_rand(n, 0.5f, 1.5f), *x = dev(h, n), *y = dev(NULL, n), *y2 = dev(NULL, n);
  O->dropout_fwd(y, x, n, p, k);
  float *a = down(y, n);
  /* pure function: the same call again, then in pieces in another order */
  O->dropout_fwd(y2, x, n, p, k);
  float *b = down(y2, n);
  CHECK(memcmp(a, b, n * sizeof *a) == 0);
  free(b);
  O->zero(y2, n * sizeof(float));
  size_t cuts[] = {0, 12345, 50001, 77777, n};
  for (int c = 3; c >= 0; c--) {
    DropoutKey kc = k;
    kc.elem_offset = cuts[c];
    O->dropout_fwd(y2 + cuts[c], x + cuts[c], cuts[c + 1] - cuts[c], p, kc);
  }
  b = down(y2, n);
  CHECK(memcmp(a, b, n * sizeof *a) == 0);
  free(b);
  /* every element as dropout_keep() says, scaled by 1/(1-p); keep fraction */
  size_t kept = 0, agree = 0;
  for (size_t i = 0; i < n; i++) {
    int keep = dropout_keep(k.seed, k.step, k.tensor, i, p);
    kept += keep;
    agree += a[i] == (keep ? h[i] * (1.0f / (1.0f - p)) : 0.0f);
  }
  CHECK(agree == n);
  double frac = (double)kept / n, sigma = sqrt(p * (1 - p) / n);
  printf("dropout keep fraction %.5f (expected %.2f, sigma %.5f)\n", frac, 1 - p, sigma);
  CHECK(fabs(frac - (1 - p)) < 5 * sigma);
  /* backward: same mask */
  O->dropout_bwd(y2, x, n, p, k);
  b = down(y2, n);
  CHECK(memcmp(a, b, n * sizeof *a) == 0);
  free(b);
  /* another step, tensor or seed gives another mask (about p(1-p)*2 differ) */
  DropoutKey other[3] = {k, k, k};
  other[0].step++, other[1].tensor++, other[2].seed++;
  for (int o = 0; o < 3; o++) {
    O->dropout_fwd(y2, x, n, p, other[o]);
    b = down(y2, n);
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) differ += (a[i] == 0.0f) != (b[i] == 0.0f);
    CHECK(fabs((double)differ / n - 2 * p * (1 - p)) < 0.01);
    free(b);
  }
  /* p = 0 copies */
  O->dropout_fwd(y2, x, n, 0.0f, k);
  b = down(y2, n);
  CHECK(memcmp(b, h, n * sizeof *h) == 0);
  free(a), free(b), free(h);
  O->free(x), O->free(y), O->free(y2);
}

/* ---- bit-identical results for 1 and 2 threads ---- */

typedef struct {
  float *buf;
  size_t len, cap;
} Digest;

static void digest_add(Digest *d, const float *dev_ptr, size_t n) {
  if (d->len + n > d->cap) {
    d->cap = (d->len + n) * 2;
    d->buf = realloc(d->buf, d->cap * sizeof *d->buf);
  }
  O->to_host(d->buf + d->len, dev_ptr, n * sizeof *d->buf);
  d->len += n;
}

/* Runs most ops at sizes that split over threads and collects every output. */
static Digest run_all(int threads) {
  O->set_threads(threads);
  Rng saved = R;
  rng_init(&R, 99, 1, 2);
  Digest D = {0};
  enum { B = 3, S = 37, NH = 4, HD = 24, H = NH * HD, V = 301, F = 200, NR = B * S, P = 100003 };
  DropoutKey key = {.seed = 5, .step = 1, .tensor = 3, .elem_offset = 0};
  int32_t ids[NR], types[NR], mask[NR], labels[NR], gidx[40];
  for (int i = 0; i < NR; i++) {
    ids[i] = (int32_t)rng_below(&R, 50);
    types[i] = (int32_t)rng_below(&R, 2);
    mask[i] = i % S < S - 3 * (i / S);
    labels[i] = i % 3 ? (int32_t)rng_below(&R, V) : -1;
  }
  for (int i = 0; i < 40; i++) gidx[i] = (int32_t)rng_below(&R, NR);
  int32_t *dids = dev_ids(ids, NR), *dtypes = dev_ids(types, NR), *dmask = dev_ids(mask, NR);
  int32_t *dlabels = dev_ids(labels, NR), *dg = dev_ids(gidx, 40);
  float *hwte = host_rand(50 * H, -1, 1), *hwpe = host_rand(S * H, -1, 1), *hwtt = host_rand(2 * H, -1, 1);
  float *wte = dev(hwte, 50 * H), *wpe = dev(hwpe, S * H), *wtt = dev(hwtt, 2 * H);
  float *x = dev(NULL, NR * H), *hg = host_rand(H, 0.5f, 1.5f), *gamma = dev(hg, H), *beta = dev(hg, H);
  float *ln = dev(NULL, NR * H), *mean = dev(NULL, NR), *rstd = dev(NULL, NR);
  float *hw = host_rand(3 * H * H, -0.2f, 0.2f), *wqkv = dev(hw, 3 * H * H), *bqkv = dev(hw, 3 * H);
  float *qkv = dev(NULL, NR * 3 * H), *ctx = dev(NULL, NR * H), *probs = dev(NULL, B * NH * S * S);
  float *hwo = host_rand(V * H, -0.2f, 0.2f), *wo = dev(hwo, V * H), *logits = dev(NULL, NR * V);
  float *act = dev(NULL, NR * F), *xo = dev(NULL, 3);
  O->embed_fwd(x, dids, dtypes, wte, wpe, wtt, B, S, H, 50, 2);
  O->layernorm_fwd(ln, mean, rstd, x, gamma, beta, NR, H, 1e-12f);
  O->linear_fwd(qkv, ln, wqkv, bqkv, NR, H, 3 * H);
  O->attn_fwd(ctx, probs, qkv, qkv + H, qkv + 2 * H, 3 * H, dmask, B, S, NH, HD, 0.1f, key);
  O->gelu_fwd(act, qkv, NR * F);
  O->dropout_fwd(act, act, NR * F, 0.1f, key);
  O->linear_fwd(logits, ctx, wo, NULL, NR, H, V);
  O->xent_fwd(xo, logits, dlabels, NR, V, V);
  digest_add(&D, ln, NR * H), digest_add(&D, qkv, NR * 3 * H), digest_add(&D, ctx, NR * H);
  digest_add(&D, probs, B * NH * S * S), digest_add(&D, act, NR * F), digest_add(&D, xo, 3);

  /* backward through the same ops */
  float *dlog = dev(NULL, NR * V), *dctx = dev(NULL, NR * H), *dwo = dev(NULL, V * H);
  float *dqkv = dev(NULL, NR * 3 * H), *dln = dev(NULL, NR * H), *dw = dev(NULL, 3 * H * H);
  float *db = dev(NULL, 3 * H), *dgm = dev(NULL, H), *dbt = dev(NULL, H), *dx = dev(NULL, NR * H);
  float *dte = dev(NULL, 50 * H), *dpe = dev(NULL, S * H), *dtt = dev(NULL, 2 * H), *gout = dev(NULL, 40 * H);
  O->xent_bwd(dlog, NULL, logits, dlabels, NR, V, V, 1.0f / 70);
  O->linear_bwd(dctx, dwo, NULL, dlog, ctx, wo, NR, H, V, 0);
  O->attn_bwd(dqkv, dqkv + H, dqkv + 2 * H, dctx, probs, qkv, qkv + H, qkv + 2 * H, 3 * H, B, S,
              NH, HD, 0.1f, key);
  O->gelu_bwd(act, NULL, act, qkv, NR * F, 0);
  O->linear_bwd(dln, dw, db, dqkv, ln, wqkv, NR, H, 3 * H, 0);
  O->layernorm_bwd(dx, dgm, dbt, dln, x, mean, rstd, gamma, NR, H);
  O->embed_bwd(dte, dpe, dtt, dx, dids, dtypes, B, S, H, 50, 2);
  O->gather_fwd(gout, dx, dg, 40, NR, H);
  O->gather_bwd(dx, gout, dg, 40, NR, H);
  float *outs[] = {dlog, dctx, dwo, dqkv, act, dln, dw, db, dgm, dbt, dx, dte, dpe, dtt};
  size_t lens[] = {NR * V, NR * H, V * H, NR * 3 * H, NR * F, NR * H, 3 * H * H, 3 * H, H, H,
                   NR * H, 50 * H, S * H, 2 * H};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) digest_add(&D, outs[i], lens[i]);

  /* optimizer over a flat buffer and the norm */
  float *hp = host_rand(P, -1, 1), *hgr = host_rand(P, -1, 1);
  float *pw = dev(hp, P), *pg = dev(hgr, P), *pm = dev(NULL, P), *pv = dev(NULL, P), *nrm = dev(NULL, 1);
  ParamRange r[3] = {{0, 30000, 1}, {30000, 7, 0}, {30007, P - 30007, 1}};
  OptParams o = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-6f, .weight_decay = 0.01f,
                 .grad_scale = 0.7f, .step = 1, .bias_correction = 1};
  O->sumsq(nrm, pg, P);
  O->adamw(pw, pg, pm, pv, r, 3, &o);
  o.step = 2;
  O->lamb(pw, pg, pm, pv, r, 3, &o);
  digest_add(&D, nrm, 1), digest_add(&D, pw, P), digest_add(&D, pm, P), digest_add(&D, pv, P);

  int32_t *ibufs[] = {dids, dtypes, dmask, dlabels, dg};
  for (size_t i = 0; i < 5; i++) O->free(ibufs[i]);
  float *fbufs[] = {wte, wpe, wtt, x, gamma, beta, ln, mean, rstd, wqkv, bqkv, qkv, ctx, probs, wo,
                    logits, act, xo, dlog, dctx, dwo, dqkv, dln, dw, db, dgm, dbt, dx, dte, dpe,
                    dtt, gout, pw, pg, pm, pv, nrm};
  for (size_t i = 0; i < sizeof fbufs / sizeof fbufs[0]; i++) O->free(fbufs[i]);
  float *hbufs[] = {hwte, hwpe, hwtt, hg, hw, hwo, hp, hgr};
  for (size_t i = 0; i < sizeof hbufs / sizeof hbufs[0]; i++) free(hbufs[i]);
  R = saved;
  return D;
}

static void test_threads(void) {
  Digest one = run_all(1);
  CHECK_INT(omp_get_max_threads(), 1);
  Digest two = run_all(2);
  CHECK_INT(omp_get_max_threads(), 2);
  Digest again = run_all(2);
  CHECK(one.len == two.len && one.len > 500000);
  CHECK(memcmp(one.buf, two.buf, one.len * sizeof *one.buf) == 0);
  for (size_t i = 0; i < one.len; i++)
    if (memcmp(one.buf + i, two.buf + i, sizeof(float)) != 0) {
      fprintf(stderr, "threads: output %zu differs: %.9g with 1 thread, %.9g with 2\n", i, one.buf[i], two.buf[i]);
      break;
    }
  CHECK(memcmp(two.buf, again.buf, two.len * sizeof *two.buf) == 0);
  size_t nonzero = 0;
  for (size_t i = 0; i < one.len; i++) nonzero += one.buf[i] != 0.0f;
  CHECK(nonzero > one.len / 2);
  if (one.len == two.len && memcmp(one.buf, two.buf, one.len * sizeof *one.buf) == 0)
    printf("threads: %zu outputs bit-identical with 1 and 2 threads\n", one.len);
  free(one.buf), free(two.buf), free(again.buf);
}

/* ---- errors ---- */

static void bad_word_id(void *arg) {
  (void)arg;
  int32_t ids[2] = {3, 11};
  float *t = O->alloc(11 * 4 * sizeof(float)), *out = O->alloc(2 * 4 * sizeof(float));
  int32_t *d = dev_ids(ids, 2);
  O->embed_fwd(out, d, NULL, t, t, t, 1, 2, 4, 11, 1);
}

static void bad_label(void *arg) {
  (void)arg;
  int32_t lab[2] = {1, 5};
  float *x = O->alloc(2 * 5 * sizeof(float)), *out = O->alloc(3 * sizeof(float));
  O->xent_fwd(out, x, dev_ids(lab, 2), 2, 5, 5);
}

static void bad_stride(void *arg) {
  (void)arg;
  int32_t lab[2] = {1, 0};
  float *x = O->alloc(2 * 5 * sizeof(float)), *out = O->alloc(3 * sizeof(float));
  O->xent_fwd(out, x, dev_ids(lab, 2), 2, 5, 4);
}

static void bad_dropout(void *arg) {
  (void)arg;
  float *x = O->alloc(4 * sizeof(float));
  O->dropout_fwd(x, x, 4, 1.0f, (DropoutKey){0});
}

static void test_errors(void) {
  expect_death("word id out of range", bad_word_id, NULL,
               (const char *const[]){"embed_fwd", "word id 11 at index 1", "[0, 11)", NULL});
  expect_death("label out of range", bad_label, NULL,
               (const char *const[]){"xent_fwd", "label 5 of row 1", NULL});
  expect_death("row stride below the columns", bad_stride, NULL,
               (const char *const[]){"xent_fwd", "row stride 4", "5 columns", NULL});
  expect_death("dropout p = 1", bad_dropout, NULL, (const char *const[]){"dropout probability", NULL});
}

int main(void) {
  O = ops_cpu();
  rng_init(&R, 2024, 0, 0);
  test_errors(); /* first: children fork before any thread pool exists */
  O->set_threads(2);
  test_linear();
  test_embeddings();
  test_layernorm();
  test_elementwise();
  test_gelu_bias();
  test_gelu_position();
  test_gelu_accuracy();
  test_dropout_threshold();
  test_attention();
  test_gather();
  test_xent();
  test_xent_stride();
  test_optimizers();
  test_optimizer_clip();
  test_dropout_mask();
  test_threads();
  return test_finish();
}
