/* bertrain bench: full pre-training steps (forward, backward, gradient
 * clipping, optimizer) on synthetic data, timed. FLOPs are counted
 * analytically by model_train_flops (model.h). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "model.h"
#include "rng.h"
#include "util.h"

typedef struct BenchData {
  int32_t *ids, *seg, *mask, *pos, *mlm, *nsp;
  Batch b;
} BenchData;

/* Random tokens, two segments, no padding, P distinct masked positions in
 * [1, S) per sequence (never [CLS]), random NSP labels. */
static void synth(BenchData *d, int B, int S, int P, int V, uint64_t seed) {
  Rng r;
  rng_init(&r, seed, 0xbe7c4, 0);
  size_t n = (size_t)B * S, np = (size_t)B * P;
  d->ids = xmalloc(n * sizeof *d->ids);
  d->seg = xmalloc(n * sizeof *d->seg);
  d->mask = xmalloc(n * sizeof *d->mask);
  d->pos = xmalloc(np * sizeof *d->pos);
  d->mlm = xmalloc(np * sizeof *d->mlm);
  d->nsp = xmalloc((size_t)B * sizeof *d->nsp);
  int32_t *perm = xmalloc((size_t)S * sizeof *perm);
  for (int b = 0; b < B; b++) {
    for (int s = 0; s < S; s++) {
      d->ids[b * S + s] = (int32_t)rng_below(&r, (uint32_t)V);
      d->seg[b * S + s] = s >= S / 2;
      d->mask[b * S + s] = 1;
    }
    for (int s = 0; s < S - 1; s++) perm[s] = s + 1;
    rng_shuffle(&r, perm, (size_t)S - 1, sizeof *perm);
    for (int p = 0; p < P; p++) {
      d->pos[b * P + p] = perm[p];
      d->mlm[b * P + p] = (int32_t)rng_below(&r, (uint32_t)V);
    }
    d->nsp[b] = (int32_t)rng_below(&r, 2);
  }
  free(perm);
  Batch b = {B, S, P, d->ids, d->seg, d->mask, d->pos, d->mlm, d->nsp};
  d->b = b;
}

static void synth_free(BenchData *d) {
  free(d->ids);
  free(d->seg);
  free(d->mask);
  free(d->pos);
  free(d->mlm);
  free(d->nsp);
}

/* One training step; returns its loss. */
static double train_step(Model *m, const Batch *b, ModelOptKind kind, int step) {
  Stats st;
  model_zero_grad(m);
  DropoutCtx d = {1, (uint32_t)step, 0};
  model_forward_backward(m, b, 1, d, 1.0f, &st);
  float norm = model_grad_norm(m);
  OptParams o = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-6f,
                 .weight_decay = 0.01f, .grad_scale = norm > 1.0f ? 1.0f / norm : 1.0f,
                 .step = step, .bias_correction = 1};
  model_step(m, kind, &o);
  return st.loss;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int run(int argc, char **argv) {
  Config cfg;
  const char *device = "cpu", *opt_name = "adamw";
  int batch = 32, seq = -1, pred = -1, steps = 10, warmup = 2, vocab = 30522, threads = 0;
  CliOpt opts[] = {
    {"device", OPT_STRING, &device},   {"batch", OPT_INT, &batch},
    {"seq", OPT_INT, &seq},            {"pred", OPT_INT, &pred},
    {"steps", OPT_INT, &steps},        {"warmup", OPT_INT, &warmup},
    {"vocab-size", OPT_INT, &vocab},   {"threads", OPT_INT, &threads},
    {"optimizer", OPT_STRING, &opt_name},
  };
  int first = cli_parse(&CMD_BENCH, argc, argv, opts, (int)ARRAY_LEN(opts), &cfg);
  if (first < argc) die("bench: unexpected argument '%s'", argv[first]);
  if (strcmp(device, "cuda") == 0)
    die("bench: --device cuda: the CUDA backend is not built yet; use --device cpu");
  if (strcmp(device, "cpu") != 0) die("bench: --device must be cpu (got '%s')", device);
  ModelOptKind kind = OPT_ADAMW;
  if (strcmp(opt_name, "lamb") == 0) kind = OPT_LAMB;
  else if (strcmp(opt_name, "adamw") != 0)
    die("bench: --optimizer must be adamw or lamb (got '%s')", opt_name);
  if (seq < 0) seq = cfg.data.seq_length;
  if (pred < 0) pred = cfg.data.max_predictions;
  if (batch < 1 || seq < 2 || pred < 1 || pred >= seq || steps < 1 || warmup < 0 || vocab < 1 ||
      threads < 0)
    die("bench: need --batch >= 1, --seq >= 2, 1 <= --pred < --seq, --steps >= 1, "
        "--warmup >= 0, --vocab-size >= 1, --threads >= 0");

  const Ops *ops = ops_cpu();
  if (threads > 0) ops->set_threads(threads);
  ModelShape shape = model_shape(&cfg, vocab, 0, 1);
  ParamTable *t = params_build(&shape);
  ModelOpts mo = {MODEL_PRETRAIN, batch, seq, pred, (float)cfg.model.dropout,
                  (float)cfg.model.attention_dropout, 1, 0};
  Model *m = model_new(ops, t, &mo);
  model_init_params(m, 42, cfg.model.initializer_range, 0);
  BenchData d;
  synth(&d, batch, seq, pred, vocab, 7);

  double flops = model_train_flops(&shape, MODEL_PRETRAIN, batch, seq, pred);
  printf("bench: device %s, %d threads; model L=%d H=%d heads=%d I=%d vocab %d, %.2fM parameters\n",
         ops->name, omp_get_max_threads(), shape.layers, shape.hidden, shape.heads,
         shape.intermediate, vocab, params_count(t) / 1e6);
  printf("bench: batch %d x %d tokens, %d predictions per sequence, %s, dropout %g/%g; "
         "%d warm-up + %d timed steps; %.2f GFLOP per step\n",
         batch, seq, pred, kind == OPT_LAMB ? "LAMB" : "AdamW", cfg.model.dropout,
         cfg.model.attention_dropout, warmup, steps, flops / 1e9);
  fflush(stdout);

  double loss0 = 0, loss = 0, *ms = xmalloc((size_t)steps * sizeof *ms);
  for (int s = 1; s <= warmup + steps; s++) {
    double t0 = now_seconds();
    loss = train_step(m, &d.b, kind, s);
    ops->sync();
    if (s == 1) loss0 = loss;
    if (s > warmup) ms[s - warmup - 1] = (now_seconds() - t0) * 1e3;
    if (!isfinite(loss)) die("bench: the loss is not finite at step %d", s);
  }
  double total = 0;
  for (int i = 0; i < steps; i++) total += ms[i];
  qsort(ms, (size_t)steps, sizeof *ms, cmp_double);
  double mean = total / steps, median = ms[steps / 2];
  printf("bench: loss %.4f -> %.4f\n", loss0, loss);
  printf("bench: %.1f ms/step (median %.1f, min %.1f), %.1f sequences/s, %.2f GFLOP/s\n", mean,
         median, ms[0], batch * 1e3 / mean, flops / (mean * 1e-3) / 1e9);

  free(ms);
  synth_free(&d);
  model_free(m);
  params_free(t);
  config_free(&cfg);
  return 0;
}

const Command CMD_BENCH = {
  "bench", "time full pre-training steps on synthetic data",
  "usage: bertrain bench --config MODEL.ini [--device cpu] [--batch N] [--seq N] [--pred N]\n"
  "                      [--steps N] [--warmup N] [--vocab-size N] [--threads N]\n"
  "                      [--optimizer adamw|lamb]\n\n"
  "Builds the model of the [model] section with random weights and times full\n"
  "pre-training steps (forward, backward, gradient clipping at norm 1, optimizer)\n"
  "on one synthetic batch of random tokens. Prints ms/step, sequences/s and\n"
  "GFLOP/s, counting matrix-multiply FLOPs: per sequence 3 x (forward), forward =\n"
  "S L 2 (4H^2 + 2HI) + 4 L S^2 H + 2H^2 + 4H + P (2H^2 + 2HV).\n\n"
  "  --device cpu       the backend (cpu: OpenMP + OpenBLAS; the only one so far)\n"
  "  --batch N          sequences per step (default 32)\n"
  "  --seq N            tokens per sequence (default data.seq_length)\n"
  "  --pred N           masked positions per sequence (default data.max_predictions)\n"
  "  --steps N          timed steps (default 10)\n"
  "  --warmup N         untimed steps first (default 2)\n"
  "  --vocab-size N     vocabulary size (default 30522, BERT's uncased vocabulary)\n"
  "  --threads N        CPU threads (default: OpenMP's, e.g. OMP_NUM_THREADS)\n"
  "  --optimizer NAME   adamw (default) or lamb\n",
  run, 0,
};
