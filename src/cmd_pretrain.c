/* bertrain pretrain: masked-LM + next-sentence pre-training from HDF5 shards,
 * single process. Each optimizer step takes a global batch of
 * pretrain.batch_size samples from the loader's stream (batch_loader.h), in
 * micro-batches whose gradients accumulate. */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch_loader.h"
#include "commands.h"
#include "model.h"
#include "params.h"
#include "textio.h"
#include "train_util.h"
#include "util.h"
#include "vocab.h"
#include "weights_h5.h"

#define METRICS_HEADER "step,epoch,loss,mlm_loss,nsp_loss,mlm_acc,nsp_acc,lr,grad_norm,seq_per_s,wall_s"

/* Largest divisor of n that is at most k. */
static int divisor_below(int n, int k) {
  for (int d = k; d > 1; d--)
    if (n % d == 0) return d;
  return 1;
}

static void check_batch(const Config *c) {
  int b = c->pretrain.batch_size, mb = c->pretrain.micro_batch;
  if (mb > b)
    die("pretrain.micro_batch (%d) is larger than pretrain.batch_size (%d)", mb, b);
  if (b % mb != 0)
    die("pretrain.batch_size (%d) is not a multiple of pretrain.micro_batch (%d): use "
        "micro_batch %d, or batch_size %d or %d", b, mb, divisor_below(b, mb), b / mb * mb,
        (b / mb + 1) * mb);
}

/* model.vocab, or the copy prep leaves in the shard directory (then named
 * in model.vocab, for config.ini). */
static Vocab *load_vocab(Config *c) {
  if (c->model.vocab[0]) return vocab_load(c->model.vocab);
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/vocab.txt", c->data.dir);
  if (!file_exists(path))
    die("no vocabulary: set model.vocab (the shards' directory %s has no vocab.txt)", c->data.dir);
  train_override(c, "model.vocab", path);
  return vocab_load(path);
}

static void check_shards(const Config *c, const BatchLoader *l) {
  const Shard *s = loader_shard(l, 0);
  if (s->seq_length != c->data.seq_length)
    die("%s: sequences of %d tokens, but data.seq_length is %d (set data.seq_length=%d, or "
        "make shards of %d with prep)", s->path, s->seq_length, c->data.seq_length,
        s->seq_length, c->data.seq_length);
  if (s->max_predictions != c->data.max_predictions)
    die("%s: %d masked positions per sequence, but data.max_predictions is %d (set "
        "data.max_predictions=%d)", s->path, s->max_predictions, c->data.max_predictions,
        s->max_predictions);
}

/* Sums over the micro-batches of one step, or over the steps of a log line. */
typedef struct Acc {
  double loss, mlm_loss, nsp_loss; /* sums of per-call means */
  long mlm_correct, mlm_count, nsp_correct, nsp_count;
  int calls;
} Acc;

static void acc_add(Acc *a, const Stats *s) {
  a->loss += s->loss;
  a->mlm_loss += s->mlm_loss;
  a->nsp_loss += s->cls_loss;
  a->mlm_correct += s->mlm_correct;
  a->mlm_count += s->mlm_count;
  a->nsp_correct += s->cls_correct;
  a->nsp_count += s->cls_count;
  a->calls++;
}

static double ratio(long a, long b) { return b ? (double)a / (double)b : 0; }

typedef struct Trainer {
  const Config *c;
  Model *m;
  BatchLoader *loader;
  LoadedBatch lb;
  int accum, warmup;
  ModelOptKind opt;
} Trainer;

/* One optimizer step; returns its sums and sets *lr and *norm. */
static Acc train_step(Trainer *tr, int step, double *lr, double *norm) {
  const Config *c = tr->c;
  int mb = c->pretrain.micro_batch;
  Acc a = {0};
  model_zero_grad(tr->m);
  for (int k = 0; k < tr->accum; k++) {
    uint64_t first = (uint64_t)(step - 1) * (uint64_t)c->pretrain.batch_size + (uint64_t)k * mb;
    loader_read(tr->loader, first, mb, &tr->lb);
    Batch b = {mb, tr->lb.S, tr->lb.P, tr->lb.input_ids, tr->lb.segment_ids, tr->lb.input_mask,
               tr->lb.mlm_positions, tr->lb.mlm_ids, tr->lb.nsp_labels};
    DropoutCtx d = {(uint64_t)c->run.seed, (uint32_t)step, (uint64_t)k * mb};
    Stats st;
    model_forward_backward(tr->m, &b, 1, d, 1.0f / (float)tr->accum, &st);
    acc_add(&a, &st);
  }
  double loss = a.loss / a.calls;
  if (!isfinite(loss))
    die("pretrain: the loss is not finite (%g; MLM %g, NSP %g) at step %d; lower pretrain.lr "
        "(now %g) or check the data", loss, a.mlm_loss / a.calls, a.nsp_loss / a.calls, step,
        c->pretrain.lr);
  *norm = model_grad_norm(tr->m);
  if (!isfinite(*norm)) die("pretrain: the gradient norm is not finite (%g) at step %d", *norm, step);
  *lr = lr_at(step, c->pretrain.steps, tr->warmup, c->pretrain.lr);
  OptParams o = {(float)*lr, 0.9f, 0.999f, 1e-6f, (float)c->pretrain.weight_decay,
                 clip_scale(*norm, c->pretrain.max_grad_norm), step, 1};
  model_step(tr->m, tr->opt, &o);
  return a;
}

static void print_log(int step, const Acc *a, double lr, double seq_s) {
  printf("step %6d  loss %.4f (mlm %.4f, nsp %.4f)  mlm_acc %.4f  nsp_acc %.4f  lr %.3e  "
         "%.1f seq/s\n", step, a->loss / a->calls, a->mlm_loss / a->calls, a->nsp_loss / a->calls,
         ratio(a->mlm_correct, a->mlm_count), ratio(a->nsp_correct, a->nsp_count), lr, seq_s);
  fflush(stdout);
}

static void train(Trainer *tr, const char *metrics_path) {
  const Config *c = tr->c;
  FILE *f = metrics_open(metrics_path, METRICS_HEADER);
  double t0 = now_seconds(), t_log = t0;
  Acc window = {0};
  int window_steps = 0;
  size_t total = loader_samples(tr->loader);
  for (int step = 1; step <= c->pretrain.steps; step++) {
    double ts = now_seconds(), lr, norm;
    Acc a = train_step(tr, step, &lr, &norm);
    double t = now_seconds();
    double epoch = (double)step * c->pretrain.batch_size / (double)total;
    fprintf(f, "%d,%.6f,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.2f,%.3f\n", step, epoch,
            a.loss / a.calls, a.mlm_loss / a.calls, a.nsp_loss / a.calls,
            ratio(a.mlm_correct, a.mlm_count), ratio(a.nsp_correct, a.nsp_count), lr, norm,
            c->pretrain.batch_size / (t - ts), t - t0);
    fflush(f);
    window.loss += a.loss;
    window.mlm_loss += a.mlm_loss;
    window.nsp_loss += a.nsp_loss;
    window.mlm_correct += a.mlm_correct;
    window.mlm_count += a.mlm_count;
    window.nsp_correct += a.nsp_correct;
    window.nsp_count += a.nsp_count;
    window.calls += a.calls;
    window_steps++;
    if (step % c->pretrain.log_every == 0 || step == c->pretrain.steps || step == 1) {
      print_log(step, &window, lr, (double)window_steps * c->pretrain.batch_size / (t - t_log));
      memset(&window, 0, sizeof window);
      window_steps = 0;
      t_log = t;
    }
  }
  metrics_close(f, metrics_path);
  double wall = now_seconds() - t0;
  printf("pretrain: %d steps, %lld sequences in %.1f s (%.1f seq/s)\n", c->pretrain.steps,
         (long long)c->pretrain.steps * c->pretrain.batch_size, wall,
         (double)c->pretrain.steps * c->pretrain.batch_size / (wall > 0 ? wall : 1e-9));
}

static int run(int argc, char **argv) {
  const char *data = NULL;
  CliOpt opts[] = {{"data", OPT_STRING, &data}};
  Config cfg;
  cli_parse(&CMD_PRETRAIN, argc, argv, opts, (int)ARRAY_LEN(opts), &cfg);
  if (data) train_override(&cfg, "data.dir", data);
  const Ops *ops = train_ops(&cfg);
  model_config_check(&cfg);
  check_batch(&cfg);
  char dir[PATH_MAX - 64], path[PATH_MAX];
  train_run_dir(&cfg, argc, argv, dir, sizeof dir);

  Vocab *v = load_vocab(&cfg);
  Trainer tr = {.c = &cfg};
  tr.loader = loader_open(cfg.data.dir, v, (uint64_t)cfg.run.seed, (size_t)cfg.data.cache_mb << 20);
  check_shards(&cfg, tr.loader);
  tr.accum = cfg.pretrain.batch_size / cfg.pretrain.micro_batch;
  tr.warmup = warmup_steps(cfg.pretrain.warmup_proportion, cfg.pretrain.steps);
  tr.opt = strcmp(cfg.pretrain.optimizer, "lamb") == 0 ? OPT_LAMB : OPT_ADAMW;

  ModelShape shape = model_shape(&cfg, v->size, 0, 1);
  ParamTable *t = params_build(&shape);
  int S = loader_seq_length(tr.loader), P = loader_max_predictions(tr.loader);
  ModelOpts mo = {MODEL_PRETRAIN, cfg.pretrain.micro_batch, S, P, (float)cfg.model.dropout,
                  (float)cfg.model.attention_dropout, 1, v->pad};
  tr.m = model_new(ops, t, &mo);
  model_init_params(tr.m, (uint64_t)cfg.run.seed, cfg.model.initializer_range, v->pad);
  loaded_batch_alloc(&tr.lb, cfg.pretrain.micro_batch, S, P);

  snprintf(path, sizeof path, "%s/pretrain", dir);
  make_dirs(path);
  snprintf(path, sizeof path, "%s/checkpoints", dir);
  make_dirs(path);
  config_write_to_dir(&cfg, dir);
  info("pretrain: %zu samples in %d shard(s) of %s; model %d layers, hidden %d, %zu parameters; "
       "%d steps of %d sequences (%d x %d), %s, lr %g, %d warm-up steps; output in %s",
       loader_samples(tr.loader), loader_num_shards(tr.loader), cfg.data.dir, shape.layers,
       shape.hidden, params_count(t), cfg.pretrain.steps, cfg.pretrain.batch_size, tr.accum,
       cfg.pretrain.micro_batch, cfg.pretrain.optimizer, cfg.pretrain.lr, tr.warmup, dir);

  snprintf(path, sizeof path, "%s/pretrain/metrics.csv", dir);
  train(&tr, path);

  float *host = params_alloc_host(t);
  model_params_to_host(tr.m, host);
  snprintf(path, sizeof path, "%s/checkpoints/final.h5", dir);
  weights_save(path, t, host, &cfg, v);
  printf("pretrain: weights written to %s\n", path);

  free(host);
  loaded_batch_free(&tr.lb);
  model_free(tr.m);
  params_free(t);
  loader_close(tr.loader);
  vocab_free(v);
  config_free(&cfg);
  return 0;
}

const Command CMD_PRETRAIN = {
  "pretrain", "pre-train BERT (masked LM + next sentence) on HDF5 shards",
  "usage: bertrain pretrain [--config FILE] [--data DIR] [--set KEY=VALUE]...\n\n"
  "Pre-trains BERT from scratch on the shards DIR/shard-*.h5 that 'bertrain prep'\n"
  "makes: masked-LM plus next-sentence loss, pretrain.steps optimizer steps of\n"
  "pretrain.batch_size sequences, each step accumulating gradients over\n"
  "micro-batches of pretrain.micro_batch sequences. The learning rate rises\n"
  "linearly over the first pretrain.warmup_proportion of the steps, then falls\n"
  "linearly to zero; gradients are clipped to pretrain.max_grad_norm; the\n"
  "optimizer is AdamW or LAMB (pretrain.optimizer). The samples of all shards are\n"
  "read in one seeded random order (run.seed), redrawn at each pass over the data.\n"
  "Runs on the CPU with run.threads threads (0 = all cores).\n\n"
  "Writes to the run directory (run.dir; default runs/NAME, NAME the --config\n"
  "file's base name, or runs/default):\n"
  "  config.ini               the resolved settings\n"
  "  pretrain/metrics.csv     one row per step: step, epoch, loss, mlm_loss,\n"
  "                           nsp_loss, mlm_acc, nsp_acc, lr, grad_norm, seq_per_s, wall_s\n"
  "  checkpoints/final.h5     the weights, vocabulary and settings\n"
  "and a progress line every pretrain.log_every steps on standard output.\n\n"
  "options:\n"
  "  --data DIR        shard directory (overrides data.dir)\n"
  "  --config FILE     read settings from an INI file\n"
  "  --set KEY=VALUE   set one setting, e.g. --set pretrain.steps=100\n\n"
  "The vocabulary is model.vocab, or DIR/vocab.txt when that is empty; the shards\n"
  "must have been made with it, and with data.seq_length and\n"
  "data.max_predictions. See 'bertrain help config' for every key.\n",
  run, 0,
};
