/* The BERT model (model.h) on the CPU ops:
 * - forward (eval) against a plain double-precision host implementation;
 * - every parameter's gradient against central finite differences, with
 *   dropout on (fixed masks: the same seed / step in every evaluation) and a
 *   padded sample, in pre-training and classification mode;
 * - the tied MLM decoder feeds the word-embedding gradient; the pad row gets
 *   no lookup gradient (HF padding_idx);
 * - a tiny model overfits one batch with AdamW;
 * - bit-identical training with 1 and 2 threads;
 * - gradient accumulation (2 x 2 at loss_weight 1/2 == 1 x 4);
 * - eval mode is deterministic and dropout-free;
 * - bad batches die with a message.
 *
 * Finite differences: the loss is Stats.loss (float32 means), each parameter
 * moved by +-FD_EPS. Float rounding of the loss (~3e-7 relative on a loss
 * ~3) over a step of 2e-2 gives ~1e-5 absolute noise per element (measured:
 * ||fd - g|| / sqrt(n) <= 1.3e-5, relative error <= 1.1e-3 per tensor); per
 * tensor the check passes when ||fd - g|| <= FD_TOL ||g|| + FD_ABS sqrt(n).
 * The absolute term covers the attention key biases, whose true gradient is
 * 0 (softmax ignores a per-row constant). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "rng.h"
#include "test_util.h"
#include "util.h"

#define FD_EPS 1e-2
#define FD_TOL 1e-2
#define FD_ABS 5e-5

static const Ops *O;

/* ---- a tiny model and batch ---- */

static ModelShape tiny_shape(int num_labels) {
  ModelShape s = {.vocab = 23, .hidden = 8, .layers = 2, .heads = 2, .intermediate = 16,
                  .max_position = 8, .type_vocab = 2, .num_labels = num_labels,
                  .pretraining = 1};
  return s;
}

enum { TB = 2, TS = 7, TP = 3 };
/* Token ids 3..20 appear in inputs; 21 and 22 only as MLM labels, so their
 * embedding rows learn from the tied decoder alone. 0 = [PAD], 1 = [CLS]. */
static int32_t t_ids[TB * TS] = {1, 5, 9, 2, 14, 7, 2,   /* sample 0: full */
                                 1, 11, 4, 2, 6, 0, 0};  /* sample 1: 2 padded */
static int32_t t_seg[TB * TS] = {0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0};
static int32_t t_mask[TB * TS] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
static int32_t t_pos[TB * TP] = {2, 4, 0, 1, 3, 4};  /* sample 0: one unused slot */
static int32_t t_mlm[TB * TP] = {21, 3, 0, 22, 8, 6};
static int32_t t_nsp[TB] = {0, 1};
static int32_t t_cls[TB] = {2, 0};

static Batch tiny_batch(int classify) {
  Batch b = {TB, TS, TP, t_ids, t_seg, t_mask, t_pos, t_mlm, classify ? t_cls : t_nsp};
  if (classify) b.P = 0, b.mlm_positions = NULL, b.mlm_ids = NULL;
  return b;
}

static Model *tiny_model(const ParamTable *t, ModelMode mode, float drop, int training) {
  ModelOpts o = {.mode = mode, .max_batch = TB, .seq_len = TS, .max_pred = TP, .dropout = drop,
                 .attn_dropout = drop, .training = training, .pad_id = 0};
  return model_new(O, t, &o);
}

/* params_init plus noise everywhere (LayerNorm gammas and biases too), so no
 * gradient is trivially zero. */
static float *noisy_params(const ParamTable *t, uint64_t seed) {
  float *h = params_alloc_host(t);
  params_init(t, h, seed, 0.3, 0);
  Rng r;
  rng_init(&r, seed, 7, 7);
  for (int i = 0; i < t->n; i++)
    for (size_t j = 0; j < t->p[i].count; j++)
      h[t->p[i].offset + j] += (float)(0.2 * (rng_uniform(&r) - 0.5));
  return h;
}

static const DropoutCtx DCTX = {1234, 3, 0};

/* ---- forward against a host reference (eval mode, pre-training) ---- */

static void ref_linear(double *y, const double *x, const float *w, const float *b, int n, int in,
                       int out) {
  for (int r = 0; r < n; r++)
    for (int o = 0; o < out; o++) {
      double s = b ? b[o] : 0.0;
      for (int i = 0; i < in; i++) s += x[r * in + i] * w[o * in + i];
      y[r * out + o] = s;
    }
}
static void ref_ln(double *x, const float *g, const float *b, int n, int c) {
  for (int r = 0; r < n; r++) {
    double mu = 0, var = 0;
    for (int j = 0; j < c; j++) mu += x[r * c + j];
    mu /= c;
    for (int j = 0; j < c; j++) var += (x[r * c + j] - mu) * (x[r * c + j] - mu);
    var /= c;
    for (int j = 0; j < c; j++) x[r * c + j] = (x[r * c + j] - mu) / sqrt(var + 1e-12) * g[j] + b[j];
  }
}
static double gelu(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }
static const float *P_(const ParamTable *t, const float *h, const char *name) {
  return h + params_get(t, name)->offset;
}
static const float *PL(const ParamTable *t, const float *h, int l, const char *suffix) {
  return h + params_layer(t, l, suffix)->offset;
}

/* MLM logits [B*P, V] and NSP logits [B, 2] of the tiny batch. */
static void reference(const ParamTable *t, const float *h, double *mlm, double *nsp) {
  enum { N = TB * TS };
  const int H = 8, I = 16, nh = 2, hd = 4, V = 23;
  double x[N * 8], q[N * 8], k[N * 8], v[N * 8], ctx[N * 8], y[N * 8], f1[N * 16];
  const float *wte = P_(t, h, "bert.embeddings.word_embeddings.weight");
  const float *wpe = P_(t, h, "bert.embeddings.position_embeddings.weight");
  const float *wtt = P_(t, h, "bert.embeddings.token_type_embeddings.weight");
  for (int r = 0; r < N; r++)
    for (int j = 0; j < H; j++)
      x[r * H + j] = (double)wte[t_ids[r] * H + j] + wtt[t_seg[r] * H + j] + wpe[(r % TS) * H + j];
  ref_ln(x, P_(t, h, "bert.embeddings.LayerNorm.weight"), P_(t, h, "bert.embeddings.LayerNorm.bias"), N, H);
  for (int l = 0; l < 2; l++) {
    ref_linear(q, x, PL(t, h, l, "attention.self.query.weight"), PL(t, h, l, "attention.self.query.bias"), N, H, H);
    ref_linear(k, x, PL(t, h, l, "attention.self.key.weight"), PL(t, h, l, "attention.self.key.bias"), N, H, H);
    ref_linear(v, x, PL(t, h, l, "attention.self.value.weight"), PL(t, h, l, "attention.self.value.bias"), N, H, H);
    for (int b = 0; b < TB; b++)
      for (int hh = 0; hh < nh; hh++)
        for (int i = 0; i < TS; i++) {
          double s[TS], mx = -1e300, z = 0;
          for (int j = 0; j < TS; j++) {
            double d = 0;
            for (int e = 0; e < hd; e++)
              d += q[(b * TS + i) * H + hh * hd + e] * k[(b * TS + j) * H + hh * hd + e];
            s[j] = d / sqrt((double)hd) + (t_mask[b * TS + j] ? 0.0 : -10000.0);
            if (s[j] > mx) mx = s[j];
          }
          for (int j = 0; j < TS; j++) z += (s[j] = exp(s[j] - mx));
          for (int e = 0; e < hd; e++) {
            double c = 0;
            for (int j = 0; j < TS; j++) c += s[j] / z * v[(b * TS + j) * H + hh * hd + e];
            ctx[(b * TS + i) * H + hh * hd + e] = c;
          }
        }
    ref_linear(y, ctx, PL(t, h, l, "attention.output.dense.weight"), PL(t, h, l, "attention.output.dense.bias"), N, H, H);
    for (int i = 0; i < N * H; i++) y[i] += x[i];
    ref_ln(y, PL(t, h, l, "attention.output.LayerNorm.weight"), PL(t, h, l, "attention.output.LayerNorm.bias"), N, H);
    ref_linear(f1, y, PL(t, h, l, "intermediate.dense.weight"), PL(t, h, l, "intermediate.dense.bias"), N, H, I);
    for (int i = 0; i < N * I; i++) f1[i] = gelu(f1[i]);
    ref_linear(x, f1, PL(t, h, l, "output.dense.weight"), PL(t, h, l, "output.dense.bias"), N, I, H);
    for (int i = 0; i < N * H; i++) x[i] += y[i];
    ref_ln(x, PL(t, h, l, "output.LayerNorm.weight"), PL(t, h, l, "output.LayerNorm.bias"), N, H);
  }
  double first[TB * 8], pooled[TB * 8], g[TB * TP * 8], t1[TB * TP * 8];
  for (int b = 0; b < TB; b++) memcpy(first + b * H, x + b * TS * H, sizeof(double) * H);
  ref_linear(pooled, first, P_(t, h, "bert.pooler.dense.weight"), P_(t, h, "bert.pooler.dense.bias"), TB, H, H);
  for (int i = 0; i < TB * H; i++) pooled[i] = tanh(pooled[i]);
  ref_linear(nsp, pooled, P_(t, h, "cls.seq_relationship.weight"), P_(t, h, "cls.seq_relationship.bias"), TB, H, 2);
  for (int i = 0; i < TB * TP; i++)
    memcpy(g + i * H, x + ((i / TP) * TS + t_pos[i]) * H, sizeof(double) * H);
  ref_linear(t1, g, P_(t, h, "cls.predictions.transform.dense.weight"), P_(t, h, "cls.predictions.transform.dense.bias"), TB * TP, H, H);
  for (int i = 0; i < TB * TP * H; i++) t1[i] = gelu(t1[i]);
  ref_ln(t1, P_(t, h, "cls.predictions.transform.LayerNorm.weight"), P_(t, h, "cls.predictions.transform.LayerNorm.bias"), TB * TP, H);
  ref_linear(mlm, t1, wte, P_(t, h, "cls.predictions.bias"), TB * TP, H, V);
}

static double logsumexp_ce(const double *z, int v, int label) {
  double mx = z[0], s = 0;
  for (int j = 1; j < v; j++) mx = fmax(mx, z[j]);
  for (int j = 0; j < v; j++) s += exp(z[j] - mx);
  return mx + log(s) - z[label];
}

static void test_forward_reference(void) {
  ModelShape s = tiny_shape(0);
  ParamTable *t = params_build(&s);
  float *h = noisy_params(t, 5);
  double mlm[TB * TP * 23], nsp[TB * 2];
  reference(t, h, mlm, nsp);
  double want = 0;
  int cnt = 0;
  for (int i = 0; i < TB * TP; i++)
    if (!(t_pos[i] == 0 && t_mlm[i] == 0)) want += logsumexp_ce(mlm + i * 23, 23, t_mlm[i]), cnt++;
  want /= cnt;
  double want_nsp = (logsumexp_ce(nsp, 2, t_nsp[0]) + logsumexp_ce(nsp + 2, 2, t_nsp[1])) / 2;

  for (int training = 0; training < 2; training++) { /* both activation layouts */
    Model *m = tiny_model(t, MODEL_PRETRAIN, 0.1f, training);
    model_params_from_host(m, h);
    Batch b = tiny_batch(0);
    Stats st;
    model_forward_backward(m, &b, 0, DCTX, 1.0f, &st);
    float got[TB * TP * 23], gn[TB * 2];
    model_mlm_logits(m, got);
    model_cls_logits(m, gn);
    double e = 0;
    for (int i = 0; i < TB * TP * 23; i++) e = fmax(e, fabs(got[i] - mlm[i]));
    for (int i = 0; i < TB * 2; i++) e = fmax(e, fabs(gn[i] - nsp[i]));
    printf("forward vs host reference (training=%d): max logit diff %.2e, mlm loss %.6f vs %.6f, "
           "nsp %.6f vs %.6f\n", training, e, st.mlm_loss, want, st.cls_loss, want_nsp);
    CHECK(e < 1e-4);
    CHECK(fabs(st.mlm_loss - want) < 1e-5 * fmax(1.0, want));
    CHECK(fabs(st.cls_loss - want_nsp) < 1e-5);
    CHECK_INT(st.mlm_count, 5);
    CHECK_INT(st.cls_count, 2);
    model_free(m);
  }
  free(h);
  params_free(t);
}

/* ---- finite differences ---- */

static struct {
  Model *m;
  Batch b;
  float *h;
} F;

static double fd_loss(void) {
  Stats st;
  model_params_from_host(F.m, F.h);
  model_forward_backward(F.m, &F.b, 1, DCTX, 1.0f, &st);
  return st.loss;
}

/* Checks every element of every tensor the mode trains; returns the
 * analytic gradient buffer (caller frees). */
static float *fd_all(const ParamTable *t, ModelMode mode, const char *label) {
  model_params_from_host(F.m, F.h);
  model_zero_grad(F.m);
  Stats st;
  model_forward_backward(F.m, &F.b, 1, DCTX, 1.0f, &st);
  float *g = params_alloc_host(t);
  model_grads_to_host(F.m, g);
  int bad = 0;
  double worst = 0;
  for (int i = 0; i < t->n; i++) {
    const Param *p = &t->p[i];
    int used = p->part == PART_BERT ||
               p->part == (mode == MODEL_PRETRAIN ? PART_PRETRAIN : PART_CLASSIFIER);
    double e2 = 0, g2 = 0;
    for (size_t j = 0; j < p->count; j++) {
      float *x = F.h + p->offset + j, keep = *x, hi = keep + (float)FD_EPS, lo = keep - (float)FD_EPS;
      *x = hi;
      double lp = fd_loss();
      *x = lo;
      double lm = fd_loss();
      *x = keep;
      double fd = (lp - lm) / ((double)hi - lo), an = g[p->offset + j];
      if (!used) an = 0; /* the other head's tensors take no part */
      e2 += (fd - an) * (fd - an);
      g2 += an * an;
    }
    double lim = FD_TOL * sqrt(g2) + FD_ABS * sqrt((double)p->count);
    if (sqrt(e2) > lim) {
      bad++;
      fprintf(stderr, "FAIL fd %s %s: ||fd-g|| %.3e > %.3e (||g|| %.3e)\n", label, p->name,
              sqrt(e2), lim, sqrt(g2));
    }
    if (g2 > 1e-8) worst = fmax(worst, sqrt(e2) / sqrt(g2));
    if (getenv("FD_VERBOSE"))
      printf("  %-55s ||g|| %.3e ||fd-g|| %.3e\n", p->name, sqrt(g2), sqrt(e2));
  }
  printf("fd %s: %d tensors, %d bad; worst relative error %.2e (tensors with ||g|| > 1e-4)\n", label, t->n, bad, worst);
  CHECK(bad == 0);
  return g;
}

static double row_norm(const float *g, const ParamTable *t, int row) {
  const Param *p = params_get(t, "bert.embeddings.word_embeddings.weight");
  double s = 0;
  for (int j = 0; j < p->shape[1]; j++) s += (double)g[p->offset + row * p->shape[1] + j] * g[p->offset + row * p->shape[1] + j];
  return sqrt(s);
}

/* Hidden 8 leaves alignment gaps between the q, k and v biases, so the
 * model makes q, k and v in three products; hidden 16 has none, and one
 * [3H, H] product makes all three (model.c): the gradients of that path too. */
static void test_gradients_fused_qkv(void) {
  ModelShape s = tiny_shape(0);
  s.hidden = 16, s.intermediate = 32;
  ParamTable *t = params_build(&s);
  const Param *qb = params_get(t, "bert.encoder.layer.0.attention.self.query.bias");
  const Param *vb = params_get(t, "bert.encoder.layer.0.attention.self.value.bias");
  CHECK_INT(vb->offset, qb->offset + 2 * 16); /* adjacent: the fused path */
  F.h = noisy_params(t, 10);
  F.m = tiny_model(t, MODEL_PRETRAIN, 0.1f, 1);
  F.b = tiny_batch(0);
  free(fd_all(t, MODEL_PRETRAIN, "pretrain, fused qkv"));
  model_free(F.m);
  free(F.h);
  params_free(t);
}

static void test_gradients(void) {
  ModelShape s = tiny_shape(3);
  ParamTable *t = params_build(&s);
  F.h = noisy_params(t, 9);

  F.m = tiny_model(t, MODEL_PRETRAIN, 0.1f, 1);
  F.b = tiny_batch(0);
  float *g = fd_all(t, MODEL_PRETRAIN, "pretrain");
  /* tied decoder: ids 21, 22 are only labels, so their rows learn from the
   * decoder alone (and the finite differences above agree) */
  CHECK(row_norm(g, t, 21) > 1e-4);
  CHECK(row_norm(g, t, 22) > 1e-4);
  /* a row neither in the inputs nor among the labels still gets the decoder's
   * softmax gradient */
  CHECK(row_norm(g, t, 19) > 1e-6);
  /* the decoder runs over the stored rows (24 for 23 words); the row past
   * the vocabulary, and the bias past it, get exactly nothing */
  CHECK_INT(t->vocab_rows, 24);
  CHECK(row_norm(g, t, 23) == 0.0);
  CHECK(g[params_get(t, "cls.predictions.bias")->offset + 23] == 0.0f);
  free(g);
  model_free(F.m);

  F.m = tiny_model(t, MODEL_CLASSIFY, 0.1f, 1);
  F.b = tiny_batch(1);
  g = fd_all(t, MODEL_CLASSIFY, "classify");
  /* no decoder in this mode: label-only rows get nothing */
  CHECK(row_norm(g, t, 21) == 0.0);
  free(g);
  model_free(F.m);
  free(F.h);
  params_free(t);
}

/* The pad row of the word embeddings gets no gradient from the input lookup
 * (HF padding_idx) but keeps the decoder's; every other tensor is the same. */
static void test_pad_row(void) {
  ModelShape s = tiny_shape(0);
  ParamTable *t = params_build(&s);
  float *h = noisy_params(t, 11);
  int32_t ids[TB * TS];
  memcpy(ids, t_ids, sizeof ids);
  ids[5] = 0; /* the pad id at a real (unmasked) position */
  Batch b = tiny_batch(0);
  b.input_ids = ids;
  float *g[2];
  for (int k = 0; k < 2; k++) {
    ModelOpts o = {MODEL_PRETRAIN, TB, TS, TP, 0.1f, 0.1f, 1, k == 0 ? 0 : -1};
    Model *m = model_new(O, t, &o);
    model_params_from_host(m, h);
    model_zero_grad(m);
    model_forward_backward(m, &b, 1, DCTX, 1.0f, NULL);
    g[k] = params_alloc_host(t);
    model_grads_to_host(m, g[k]);
    model_free(m);
  }
  const Param *wte = params_get(t, "bert.embeddings.word_embeddings.weight");
  size_t row0 = wte->offset, H = (size_t)wte->shape[1];
  int others_same = memcmp(g[0], g[1], row0 * sizeof(float)) == 0 &&
                    memcmp(g[0] + row0 + H, g[1] + row0 + H, (t->size - row0 - H) * sizeof(float)) == 0;
  CHECK(others_same);
  CHECK(row_norm(g[0], t, 0) > 0); /* the decoder's part */
  double diff = 0;
  for (size_t j = 0; j < H; j++) diff = fmax(diff, fabs(g[0][row0 + j] - g[1][row0 + j]));
  CHECK(diff > 1e-6); /* the lookup's part, present only without pad_id */
  free(g[0]);
  free(g[1]);
  free(h);
  params_free(t);
}

/* ---- training ---- */

static OptParams adamw(float lr, int step) {
  OptParams o = {.lr = lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-6f, .weight_decay = 0.01f,
                 .grad_scale = 1.0f, .step = step, .bias_correction = 1};
  return o;
}

static void train_steps(Model *m, const Batch *b, int steps, float lr, Stats *first, Stats *last,
                        double *losses) {
  for (int s = 1; s <= steps; s++) {
    Stats st;
    model_zero_grad(m);
    DropoutCtx d = {99, (uint32_t)s, 0};
    model_forward_backward(m, b, 1, d, 1.0f, &st);
    OptParams o = adamw(lr, s);
    float norm = model_grad_norm(m);
    o.grad_scale = norm > 1.0f ? 1.0f / norm : 1.0f;
    model_step(m, OPT_ADAMW, &o);
    if (s == 1 && first) *first = st;
    if (last) *last = st;
    if (losses) losses[s - 1] = st.loss;
  }
}

#define OVERFIT_STEPS 150
#define OVERFIT_BOUND 0.05

static void test_overfit(void) {
  ModelShape s = tiny_shape(0);
  s.hidden = 32, s.heads = 4, s.intermediate = 64;
  ParamTable *t = params_build(&s);
  Model *m = tiny_model(t, MODEL_PRETRAIN, 0.1f, 1);
  model_init_params(m, 3, 0.02, 0);
  Batch b = tiny_batch(0);
  Stats first, last;
  train_steps(m, &b, OVERFIT_STEPS, 1e-2f, &first, &last, NULL);
  /* the final loss with dropout off */
  Stats ev;
  model_forward_backward(m, &b, 0, DCTX, 1.0f, &ev);
  printf("overfit: MLM loss %.4f -> %.4f (eval %.4f), NSP %.4f -> %.4f after %d AdamW steps\n",
         first.mlm_loss, last.mlm_loss, ev.mlm_loss, first.cls_loss, last.cls_loss,
         OVERFIT_STEPS);
  CHECK(first.mlm_loss > 2.5); /* ~ln 23 at the start */
  CHECK(ev.mlm_loss < OVERFIT_BOUND);
  CHECK(ev.mlm_correct == ev.mlm_count);
  model_free(m);
  params_free(t);
}

/* Sizes over the CPU ops' partitions (64-column chunks, GEMM tiles). */
static void test_threads(void) {
  ModelShape s = {.vocab = 150, .hidden = 80, .layers = 2, .heads = 4, .intermediate = 160,
                  .max_position = 32, .type_vocab = 2, .num_labels = 0, .pretraining = 1};
  ParamTable *t = params_build(&s);
  enum { B = 4, S = 16, P = 4 };
  int32_t ids[B * S], seg[B * S], mask[B * S], pos[B * P], mlm[B * P], nsp[B];
  Rng r;
  rng_init(&r, 17, 0, 0);
  for (int i = 0; i < B * S; i++) {
    ids[i] = 3 + (int32_t)rng_below(&r, 147);
    seg[i] = (i % S) >= S / 2;
    mask[i] = !(i / S == 3 && i % S >= 12);
  }
  for (int i = 0; i < B * P; i++) pos[i] = 1 + (int32_t)rng_below(&r, 11), mlm[i] = 3 + (int32_t)rng_below(&r, 147);
  for (int i = 0; i < B; i++) nsp[i] = i & 1;
  Batch b = {B, S, P, ids, seg, mask, pos, mlm, nsp};
  float *w[2];
  double losses[2][20];
  for (int k = 0; k < 2; k++) {
    O->set_threads(k + 1);
    ModelOpts o = {MODEL_PRETRAIN, B, S, P, 0.1f, 0.1f, 1, 0};
    Model *m = model_new(O, t, &o);
    model_init_params(m, 21, 0.02, 0);
    train_steps(m, &b, 20, 1e-3f, NULL, NULL, losses[k]);
    w[k] = params_alloc_host(t);
    model_params_to_host(m, w[k]);
    model_free(m);
  }
  O->set_threads(1);
  CHECK(memcmp(losses[0], losses[1], sizeof losses[0]) == 0);
  CHECK(memcmp(w[0], w[1], t->size * sizeof(float)) == 0);
  CHECK(losses[0][19] < losses[0][0]);
  printf("threads: 20 steps, loss %.4f -> %.4f, 1 vs 2 threads %s\n", losses[0][0], losses[0][19],
         memcmp(w[0], w[1], t->size * sizeof(float)) == 0 ? "bit-identical" : "DIFFER");
  free(w[0]);
  free(w[1]);
  params_free(t);
}

/* Two micro-batches of 2 (first_sample 0 and 2, loss_weight 1/2) against one
 * batch of 4, with dropout on: the masks coincide, and with 2 masked
 * positions and 2 labels in each half the means agree. */
static void test_accumulation(void) {
  ModelShape s = tiny_shape(0);
  ParamTable *t = params_build(&s);
  float *h = noisy_params(t, 13);
  enum { B = 4 };
  int32_t ids[B * TS], seg[B * TS], mask[B * TS], pos[B * TP], mlm[B * TP], nsp[B];
  for (int k = 0; k < 2; k++) { /* the tiny batch twice, second copy varied */
    for (int i = 0; i < TB * TS; i++) {
      ids[k * TB * TS + i] = k && t_ids[i] > 2 ? 3 + (t_ids[i] + 5) % 18 : t_ids[i];
      seg[k * TB * TS + i] = t_seg[i];
      mask[k * TB * TS + i] = t_mask[i];
    }
    for (int i = 0; i < TB * TP; i++) pos[k * TB * TP + i] = t_pos[i], mlm[k * TB * TP + i] = t_mlm[i];
    nsp[2 * k] = k, nsp[2 * k + 1] = !k;
  }
  ModelOpts o = {MODEL_PRETRAIN, B, TS, TP, 0.1f, 0.1f, 1, 0};
  Model *m = model_new(O, t, &o);
  model_params_from_host(m, h);
  float *g1 = params_alloc_host(t), *g2 = params_alloc_host(t);
  DropoutCtx d = {77, 5, 0};
  Batch full = {B, TS, TP, ids, seg, mask, pos, mlm, nsp};
  Stats sf, sa, sb;
  model_zero_grad(m);
  model_forward_backward(m, &full, 1, d, 1.0f, &sf);
  model_grads_to_host(m, g1);
  model_zero_grad(m);
  for (int k = 0; k < 2; k++) {
    Batch half = {2, TS, TP, ids + k * 2 * TS, seg + k * 2 * TS, mask + k * 2 * TS,
                  pos + k * 2 * TP, mlm + k * 2 * TP, nsp + 2 * k};
    DropoutCtx dk = {77, 5, (uint64_t)(2 * k)};
    model_forward_backward(m, &half, 1, dk, 0.5f, k ? &sb : &sa);
  }
  model_grads_to_host(m, g2);
  double e = 0, gmax = 0;
  for (size_t i = 0; i < t->size; i++) e = fmax(e, fabs(g1[i] - g2[i])), gmax = fmax(gmax, fabs(g1[i]));
  printf("accumulation: loss %.6f vs (%.6f + %.6f)/2, max grad diff %.2e of max %.3g\n", sf.loss,
         sa.loss, sb.loss, e, gmax);
  CHECK(sa.mlm_count == sb.mlm_count);
  CHECK(fabs(sf.loss - 0.5 * (sa.loss + sb.loss)) < 1e-5);
  CHECK(e < 1e-5 * gmax);
  CHECK(gmax > 0.01);
  /* a different first_sample draws other masks */
  model_zero_grad(m);
  Batch half = {2, TS, TP, ids + 2 * TS, seg + 2 * TS, mask + 2 * TS, pos + 2 * TP, mlm + 2 * TP, nsp + 2};
  Stats sc;
  model_forward_backward(m, &half, 1, d, 0.5f, &sc);
  CHECK(sc.loss != sb.loss);
  free(g1);
  free(g2);
  free(h);
  model_free(m);
  params_free(t);
}

static void test_eval(void) {
  ModelShape s = tiny_shape(3);
  ParamTable *t = params_build(&s);
  float *h = noisy_params(t, 15);
  for (int classify = 0; classify < 2; classify++) {
    ModelMode mode = classify ? MODEL_CLASSIFY : MODEL_PRETRAIN;
    Model *m = tiny_model(t, mode, 0.3f, 1), *m0 = tiny_model(t, mode, 0.0f, 1);
    model_params_from_host(m, h);
    model_params_from_host(m0, h);
    Batch b = tiny_batch(classify);
    size_t nl = classify ? TB * 3 : TB * TP * 23;
    float *l1 = malloc(nl * sizeof *l1), *l2 = malloc(nl * sizeof *l2);
    float *g = params_alloc_host(t);
    model_zero_grad(m);
    Stats e1, e2, z, tr;
    DropoutCtx d2 = {5555, 8, 3};
    model_forward_backward(m, &b, 0, DCTX, 1.0f, &e1);
    if (classify) model_cls_logits(m, l1);
    else model_mlm_logits(m, l1);
    model_forward_backward(m, &b, 0, d2, 1.0f, &e2);
    if (classify) model_cls_logits(m, l2);
    else model_mlm_logits(m, l2);
    CHECK(memcmp(l1, l2, nl * sizeof *l1) == 0);
    CHECK(memcmp(&e1, &e2, sizeof e1) == 0);
    model_grads_to_host(m, g);
    int untouched = 1;
    for (size_t i = 0; i < t->size; i++) untouched &= g[i] == 0.0f;
    CHECK(untouched);
    /* eval == training with dropout 0; training with dropout differs */
    model_forward_backward(m0, &b, 1, DCTX, 1.0f, &z);
    model_forward_backward(m, &b, 1, DCTX, 1.0f, &tr);
    CHECK(z.loss == e1.loss);
    CHECK(tr.loss != e1.loss);
    free(l1);
    free(l2);
    free(g);
    model_free(m);
    model_free(m0);
  }
  free(h);
  params_free(t);
}

/* ---- bad input ---- */

static void die_bad_id(void *arg) {
  (void)arg;
  ModelShape s = tiny_shape(0);
  ParamTable *t = params_build(&s);
  Model *m = tiny_model(t, MODEL_PRETRAIN, 0.1f, 1);
  int32_t ids[TB * TS];
  memcpy(ids, t_ids, sizeof ids);
  ids[TS + 3] = 23;
  Batch b = tiny_batch(0);
  b.input_ids = ids;
  model_forward_backward(m, &b, 1, DCTX, 1.0f, NULL);
}
static void die_bad_pos(void *arg) {
  (void)arg;
  ModelShape s = tiny_shape(0);
  ParamTable *t = params_build(&s);
  Model *m = tiny_model(t, MODEL_PRETRAIN, 0.1f, 1);
  int32_t pos[TB * TP];
  memcpy(pos, t_pos, sizeof pos);
  pos[4] = TS;
  Batch b = tiny_batch(0);
  b.mlm_positions = pos;
  model_forward_backward(m, &b, 1, DCTX, 1.0f, NULL);
}
static void die_no_head(void *arg) {
  (void)arg;
  ModelShape s = tiny_shape(0);
  ParamTable *t = params_build(&s);
  tiny_model(t, MODEL_CLASSIFY, 0.1f, 1);
}
static void die_big_batch(void *arg) {
  (void)arg;
  ModelShape s = tiny_shape(0);
  ParamTable *t = params_build(&s);
  Model *m = tiny_model(t, MODEL_PRETRAIN, 0.1f, 1);
  Batch b = tiny_batch(0);
  b.B = TB + 1;
  model_forward_backward(m, &b, 0, DCTX, 1.0f, NULL);
}

static void test_errors(void) {
  expect_death("bad input id", die_bad_id, NULL,
               (const char *const[]){"input_ids[sample 1, position 3] = 23", "[0, 23)", NULL});
  expect_death("bad position", die_bad_pos, NULL,
               (const char *const[]){"masked_lm_positions[sample 1, position 1] = 7", NULL});
  expect_death("no classifier", die_no_head, NULL, (const char *const[]){"classifier", NULL});
  expect_death("batch too big", die_big_batch, NULL, (const char *const[]){"3 samples", NULL});
}

static void timed(const char *name, void (*fn)(void)) {
  double t0 = now_seconds();
  fn();
  printf("  (%s: %.1f s)\n", name, now_seconds() - t0);
}

int main(void) {
  O = ops_cpu();
  /* tiny tensors: threads would only add synchronisation */
  O->set_threads(1);
  timed("forward", test_forward_reference);
  timed("gradients", test_gradients);
  timed("gradients, fused qkv", test_gradients_fused_qkv);
  timed("pad row", test_pad_row);
  timed("eval", test_eval);
  timed("accumulation", test_accumulation);
  timed("overfit", test_overfit);
  timed("threads", test_threads);
  test_errors();
  return test_finish();
}
