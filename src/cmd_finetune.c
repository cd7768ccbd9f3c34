/* bertrain finetune: sequence classification (GLUE MRPC or SST-2) from
 * pre-trained weights, evaluated on the dev set after every epoch. */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "glue.h"
#include "model.h"
#include "classify.h"
#include "params.h"
#include "rng.h"
#include "tokenizer.h"
#include "train_util.h"
#include "util.h"
#include "weights_h5.h"

#define METRICS_HEADER "phase,step,epoch,metric,value"
/* The "a" word of the shuffling stream (rng.h); b = epoch. */
#define FINETUNE_STREAM_ORDER 0x66746f72u /* "ftor" */

typedef struct Job {
  const Config *c;
  GlueTask task;
  Model *m;
  Encoded *train, *dev;
  int steps_per_epoch, total, warmup;
  FILE *metrics;
} Job;

static Encoded *encode(const GlueSet *set, Tokenizer *tok, int seq_length) {
  Encoded *e = classify_encode(set, tok, seq_length);
  info("finetune: %s: %ld examples, %ld cut to %d tokens", set->path, e->n, e->truncated,
       seq_length);
  return e;
}

static double train_batch(Job *j, const Batch *b, int step, double *acc) {
  const Config *c = j->c;
  model_zero_grad(j->m);
  DropoutCtx d = {(uint64_t)c->run.seed, (uint32_t)step, 0};
  Stats st;
  model_forward_backward(j->m, b, 1, d, 1.0f, &st);
  if (!isfinite(st.loss))
    die("finetune: the loss is not finite (%g) at step %d; lower finetune.lr (now %g)", st.loss,
        step, c->finetune.lr);
  double norm = model_grad_norm(j->m);
  if (!isfinite(norm)) die("finetune: the gradient norm is not finite (%g) at step %d", norm, step);
  double lr = lr_at(step, j->total, j->warmup, c->finetune.lr);
  OptParams o = {(float)lr, 0.9f, 0.999f, 1e-6f, (float)c->finetune.weight_decay,
                 clip_scale(norm, c->finetune.max_grad_norm), step, 1};
  model_step(j->m, OPT_ADAMW, &o);
  *acc = st.cls_count ? (double)st.cls_correct / (double)st.cls_count : 0;
  return st.loss;
}

static void validate(Job *j, int step, int epoch, double seconds) {
  int *pred = xmalloc((size_t)j->dev->n * sizeof *pred);
  ClassifyEval ev;
  classify_evaluate(j->m, j->dev, pred, &ev);
  fprintf(j->metrics, "validation,%d,%d,epoch_accuracy,%.10g\n", step, epoch, eval_accuracy(&ev));
  if (j->task == GLUE_MRPC)
    fprintf(j->metrics, "validation,%d,%d,f1,%.10g\n", step, epoch, eval_f1(&ev));
  fflush(j->metrics);
  printf("epoch %d  step %d  dev accuracy %.10g (%ld/%ld)", epoch, step, eval_accuracy(&ev),
         ev.correct, ev.n);
  if (j->task == GLUE_MRPC) printf("  f1 %.4f", eval_f1(&ev));
  printf("  dev loss %.6f  (%.1f s)\n", ev.loss, seconds);
  fflush(stdout);
  free(pred);
}

static void run_epochs(Job *j) {
  const Config *c = j->c;
  int bs = c->finetune.batch_size;
  long n = j->train->n;
  long *order = xmalloc((size_t)n * sizeof *order);
  ClassifyBatch cb;
  classify_batch_alloc(&cb, bs, c->finetune.seq_length);
  int step = 0;
  double t0 = now_seconds();
  for (int epoch = 1; epoch <= c->finetune.epochs; epoch++) {
    for (long i = 0; i < n; i++) order[i] = i;
    Rng r;
    rng_init(&r, (uint64_t)c->run.seed, FINETUNE_STREAM_ORDER, (uint32_t)epoch);
    rng_shuffle(&r, order, (size_t)n, sizeof *order);
    double loss_sum = 0, te = now_seconds();
    for (long start = 0; start < n; start += bs) {
      int nb = n - start < bs ? (int)(n - start) : bs;
      const Batch *b = classify_batch_fill(&cb, j->train, order + start, nb);
      double acc, loss = train_batch(j, b, ++step, &acc);
      loss_sum += loss;
      fprintf(j->metrics, "train,%d,%d,batch_accuracy,%.10g\n", step, epoch, acc);
      fprintf(j->metrics, "train,%d,%d,loss,%.10g\n", step, epoch, loss);
      if (step % 10 == 0 || start + bs >= n) {
        printf("epoch %d  step %d/%d  loss %.4f  batch accuracy %.4f  %.1f seq/s\n", epoch, step,
               j->total, loss, acc, (double)(start + nb) / (now_seconds() - te));
        fflush(stdout);
      }
    }
    fflush(j->metrics);
    info("finetune: epoch %d mean training loss %.4f", epoch, loss_sum / j->steps_per_epoch);
    validate(j, step, epoch, now_seconds() - t0);
  }
  classify_batch_free(&cb);
  free(order);
}

static int run(int argc, char **argv) {
  const char *ckpt = NULL, *task = NULL, *data = NULL, *out = NULL;
  CliOpt opts[] = {
    {"checkpoint", OPT_STRING, &ckpt}, {"task", OPT_STRING, &task},
    {"data", OPT_STRING, &data},       {"out", OPT_STRING, &out},
  };
  Config cfg;
  cli_parse(&CMD_FINETUNE, argc, argv, opts, (int)ARRAY_LEN(opts), &cfg);
  if (!ckpt) die("finetune: no checkpoint: pass --checkpoint FILE.h5 (from 'bertrain pretrain')");
  config_free(&cfg);
  train_config_from_checkpoint(ckpt, argc, argv, &cfg);
  if (task) train_override(&cfg, "finetune.task", glue_task_parse(task) == GLUE_MRPC ? "mrpc" : "sst2");
  if (data) train_override(&cfg, "finetune.data", data);
  const Ops *ops = train_ops(&cfg);
  if (cfg.finetune.seq_length > cfg.model.max_position)
    die("finetune.seq_length (%d) exceeds the checkpoint's max_position (%d)",
        cfg.finetune.seq_length, cfg.model.max_position);
  char dir[PATH_MAX - 64], path[PATH_MAX];
  if (out) snprintf(dir, sizeof dir, "%s", out);
  else {
    char run_dir[PATH_MAX - 128];
    train_run_dir(&cfg, argc, argv, run_dir, sizeof run_dir);
    snprintf(dir, sizeof dir, "%s/finetune-%s", run_dir, cfg.finetune.task);
  }

  Vocab *v = train_vocab_for_checkpoint(ckpt, &cfg);
  Job j = {.c = &cfg, .task = glue_task_parse(cfg.finetune.task)};
  GlueSet *train_set = glue_load_split(j.task, cfg.finetune.data, "train");
  GlueSet *dev_set = glue_load_split(j.task, cfg.finetune.data, "dev");
  Tokenizer *tok = tokenizer_new(v, cfg.model.lowercase, cfg.model.max_word_chars);
  j.train = encode(train_set, tok, cfg.finetune.seq_length);
  j.dev = encode(dev_set, tok, cfg.finetune.seq_length);
  tokenizer_free(tok);

  ModelShape shape = model_shape(&cfg, v->size, train_set->num_labels, 0);
  ParamTable *t = params_build(&shape);
  float *host = params_alloc_host(t);
  params_init(t, host, (uint64_t)cfg.run.seed, cfg.model.initializer_range, v->pad);
  weights_load(ckpt, t, host, &cfg, v);
  int max_batch = cfg.finetune.batch_size > CLASSIFY_EVAL_BATCH ? cfg.finetune.batch_size
                                                                : CLASSIFY_EVAL_BATCH;
  ModelOpts mo = {MODEL_CLASSIFY, max_batch, cfg.finetune.seq_length, 0, (float)cfg.model.dropout,
                  (float)cfg.model.attention_dropout, 1, v->pad};
  j.m = model_new(ops, t, &mo);
  model_params_from_host(j.m, host);
  j.steps_per_epoch = (int)((j.train->n + cfg.finetune.batch_size - 1) / cfg.finetune.batch_size);
  j.total = j.steps_per_epoch * cfg.finetune.epochs;
  j.warmup = warmup_steps(cfg.finetune.warmup_proportion, j.total);

  make_dirs(dir);
  config_write_to_dir(&cfg, dir);
  snprintf(path, sizeof path, "%s/metrics.csv", dir);
  j.metrics = metrics_open(path, METRICS_HEADER);
  info("finetune: %s from %s: %d epochs of %d steps (batch %d), lr %g, %d warm-up steps; "
       "output in %s", glue_task_name(j.task), ckpt, cfg.finetune.epochs, j.steps_per_epoch,
       cfg.finetune.batch_size, cfg.finetune.lr, j.warmup, dir);
  run_epochs(&j);
  metrics_close(j.metrics, path);

  model_params_to_host(j.m, host);
  snprintf(path, sizeof path, "%s/model.h5", dir);
  weights_save(path, t, host, &cfg, v);
  printf("finetune: weights written to %s\n", path);

  free(host);
  model_free(j.m);
  params_free(t);
  encoded_free(j.train);
  encoded_free(j.dev);
  glue_free(train_set);
  glue_free(dev_set);
  vocab_free(v);
  config_free(&cfg);
  return 0;
}

const Command CMD_FINETUNE = {
  "finetune", "fine-tune pre-trained weights on a GLUE task (MRPC, SST-2)",
  "usage: bertrain finetune --checkpoint FILE.h5 [--task mrpc|sst2] [--data DIR]\n"
  "                         [--out DIR] [--config FILE] [--set KEY=VALUE]...\n\n"
  "Adds a classifier (initialised from run.seed) to the pre-trained weights and\n"
  "trains everything on DIR/train.tsv for finetune.epochs epochs with AdamW\n"
  "(finetune.lr, linear warm-up over finetune.warmup_proportion of the steps,\n"
  "then linear decay to zero), finetune.batch_size examples per step, the\n"
  "training set shuffled each epoch. Examples are encoded as [CLS] A [SEP] B [SEP]\n"
  "and cut to finetune.seq_length tokens, the longer text first. After each epoch\n"
  "it evaluates on DIR/dev.tsv (accuracy; F1 for MRPC).\n\n"
  "The model's shape, lower-casing and vocabulary come from the checkpoint, and\n"
  "its stored settings are the defaults; settings that change the shape are\n"
  "refused. A vocabulary given with model.vocab must equal the checkpoint's.\n\n"
  "Writes to DIR (--out; default RUN_DIR/finetune-TASK):\n"
  "  metrics.csv   phase,step,epoch,metric,value: train rows every step\n"
  "                (batch_accuracy, loss), validation rows every epoch\n"
  "                (epoch_accuracy, and f1 for MRPC)\n"
  "  config.ini    the resolved settings\n"
  "  model.h5      the fine-tuned weights with the classifier (for predict)\n\n"
  "options:\n"
  "  --checkpoint FILE  weights from pretrain (or another bertrain weights file)\n"
  "  --task NAME        mrpc or sst2 (overrides finetune.task)\n"
  "  --data DIR         directory of train.tsv and dev.tsv, .xz allowed\n"
  "                     (overrides finetune.data)\n"
  "  --out DIR          output directory\n"
  "  --config FILE      read settings from an INI file\n"
  "  --set KEY=VALUE    set one setting, e.g. --set finetune.epochs=2\n",
  run, 0,
};
