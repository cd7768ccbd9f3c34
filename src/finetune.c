/* finetune_run (finetune.h): data-parallel sequence classification from
 * pre-trained weights. A job first checks and loads its inputs on every
 * rank without collectives, then the ranks agree (one failure fails the job
 * everywhere, with its message), then train, evaluate and save. */
#define _POSIX_C_SOURCE 200809L
#include "finetune.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "classify.h"
#include "comm.h"
#include "glue.h"
#include "model.h"
#include "params.h"
#include "rng.h"
#include "tokenizer.h"
#include "train_util.h"
#include "util.h"
#include "weights_h5.h"

#define METRICS_HEADER "phase,step,epoch,metric,value"
/* The "a" word of the shuffling stream (rng.h); b = epoch. */
#define FINETUNE_STREAM_ORDER 0x66746f72u /* "ftor" */
#define MSG_MAX 1024

typedef struct Job {
  Config c; /* the caller's settings with the job's task, data and seed */
  const char *ckpt, *out;
  CommInfo ci;
  GlueTask task;
  FILE *log;              /* rank 0: the job's log file, or NULL */
  FILE *progress, *notes; /* rank 0: stdout and stderr, or the log; NULL elsewhere */
  Vocab *vocab;
  Encoded *train, *dev;
  int num_labels;
  ParamTable *t;
  float *host;
  Model *m;
  int steps_per_epoch, total, warmup;
  FILE *metrics;
  char metrics_path[PATH_MAX];
  char err[MSG_MAX]; /* why the job fails */
  int err_rank;      /* the rank err comes from, when the job has several; else -1 */
} Job;

static void vput(FILE *f, const char *fmt, va_list ap) {
  if (!f) return;
  vfprintf(f, fmt, ap);
  fputc('\n', f);
  fflush(f);
}

/* What info() says, into the job's log when it has one. */
static void note(const Job *j, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void note(const Job *j, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vput(j->notes, fmt, ap);
  va_end(ap);
}

static void say(const Job *j, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void say(const Job *j, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vput(j->progress, fmt, ap);
  va_end(ap);
}

/* Records why the job fails; returns -1. */
static int fail(Job *j, const char *fmt, ...) PRINTF_LIKE(2, 3);
static int fail(Job *j, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(j->err, sizeof j->err, fmt, ap);
  va_end(ap);
  return -1;
}

static void make_dir(void *arg) { make_dirs(arg); }

static int open_log(Job *j, const char *path) {
  if (j->ci.rank != 0) return 0;
  j->progress = stdout;
  j->notes = stderr;
  if (!path) return 0;
  char dir[PATH_MAX], why[MSG_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash && slash != dir) {
    *slash = '\0';
    if (die_catch(make_dir, dir, why, sizeof why) != 0) return fail(j, "%s", why);
  }
  j->log = fopen(path, "w");
  if (!j->log) return fail(j, "cannot create the log %s: %s", path, strerror(errno));
  j->progress = j->notes = j->log;
  return 0;
}

/* ---- inputs, checked before anything starts ---- */

static int job_config(Job *j, const Config *cfg, const FinetuneArgs *a) {
  config_copy(&j->c, cfg);
  const char *task = a->task ? a->task : cfg->finetune.task;
  if (glue_task_lookup(task, &j->task) != 0)
    return fail(j, "unknown GLUE task '%s': valid tasks are mrpc, sst2", task);
  train_override(&j->c, "finetune.task", j->task == GLUE_MRPC ? "mrpc" : "sst2");
  if (a->data) train_override(&j->c, "finetune.data", a->data);
  if (a->seed >= 0) j->c.run.seed = a->seed;
  return 0;
}

static int check_paths(Job *j) {
  if (access(j->ckpt, R_OK) != 0)
    return fail(j, "cannot read the checkpoint %s: %s", j->ckpt, strerror(errno));
  const char *dir = j->c.finetune.data;
  struct stat st;
  if (stat(dir, &st) != 0)
    return fail(j, "the %s data directory %s: %s", glue_task_name(j->task), dir, strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return fail(j, "the %s data directory %s is not a directory", glue_task_name(j->task), dir);
  return 0;
}

static int check_model(Job *j) {
  weights_read_model_config(j->ckpt, &j->c);
  if (j->c.finetune.seq_length > j->c.model.max_position)
    return fail(j, "finetune.seq_length (%d) exceeds the checkpoint's max_position (%d)",
                j->c.finetune.seq_length, j->c.model.max_position);
  j->vocab = train_vocab_for_checkpoint(j->ckpt, &j->c);
  if (j->vocab->cls < 0 || j->vocab->sep < 0)
    return fail(j, "%s: the vocabulary has no [CLS] or no [SEP] token, which sequence "
                "classification needs", j->ckpt);
  return 0;
}

static Encoded *encode(Job *j, const GlueSet *set, Tokenizer *tok) {
  Encoded *e = classify_encode(set, tok, j->c.finetune.seq_length);
  note(j, "finetune: %s: %ld examples, %ld cut to %d tokens", set->path, e->n, e->truncated,
       j->c.finetune.seq_length);
  return e;
}

static int load_data(Job *j) {
  char why[MSG_MAX];
  GlueSet *train = glue_try_load_split(j->task, j->c.finetune.data, "train", why, sizeof why);
  if (!train) return fail(j, "%s", why);
  GlueSet *dev = glue_try_load_split(j->task, j->c.finetune.data, "dev", why, sizeof why);
  if (!dev) {
    glue_free(train);
    return fail(j, "%s", why);
  }
  Tokenizer *tok = tokenizer_new(j->vocab, j->c.model.lowercase, j->c.model.max_word_chars);
  j->train = encode(j, train, tok);
  j->dev = encode(j, dev, tok);
  j->num_labels = train->num_labels;
  tokenizer_free(tok);
  glue_free(train);
  glue_free(dev);
  return 0;
}

static int check_inputs(Job *j) {
  if (check_paths(j) != 0 || check_model(j) != 0 || load_data(j) != 0) return -1;
  if (j->ci.rank == 0) {
    char why[MSG_MAX];
    if (die_catch(make_dir, (void *)j->out, why, sizeof why) != 0) return fail(j, "%s", why);
  }
  return 0;
}

static uint64_t hash_encoded(const Encoded *e, uint64_t h) {
  h = fnv1a64(&e->n, sizeof e->n, h);
  h = fnv1a64(e->ids, (size_t)e->n * (size_t)e->seq_length * sizeof *e->ids, h);
  h = fnv1a64(e->len, (size_t)e->n * sizeof *e->len, h);
  h = fnv1a64(e->len_a, (size_t)e->n * sizeof *e->len_a, h);
  return fnv1a64(e->label, (size_t)e->n * sizeof *e->label, h);
}

/* The collective verdict on every rank's checks (failed: this rank's), also
 * making sure every rank read the same data. On failure every rank gets the
 * first failing rank's message in j->err and returns -1. */
static int agree(Job *j, int failed) {
  uint64_t mine = failed ? 0 : hash_encoded(j->dev, hash_encoded(j->train, FNV1A64_INIT));
  uint64_t root = mine;
  comm_broadcast(&root, sizeof root, 0);
  if (!failed && root && mine != root) {
    failed = 1;
    fail(j, "the data read from %s differ from rank 0's (is the directory the same on every "
         "node?)", j->c.finetune.data);
  }
  int size = j->ci.size;
  double *flags = xcalloc((size_t)size, sizeof *flags);
  flags[j->ci.rank] = failed;
  comm_allreduce_sum_f64(flags, size);
  int first = -1;
  for (int r = 0; r < size && first < 0; r++)
    if (flags[r] != 0) first = r;
  free(flags);
  if (first < 0) return 0;
  comm_broadcast(j->err, sizeof j->err, first);
  j->err_rank = size > 1 ? first : -1;
  return -1;
}

/* ---- the model ---- */

static void build_model(Job *j, const Ops *ops) {
  const Config *c = &j->c;
  ModelShape shape = model_shape(c, j->vocab->size, j->num_labels, 0);
  j->t = params_build(&shape);
  j->host = params_alloc_host(j->t);
  params_init(j->t, j->host, (uint64_t)c->run.seed, c->model.initializer_range, j->vocab->pad);
  weights_load(j->ckpt, j->t, j->host, c, j->vocab);
  /* Every rank computed the same; rank 0's copy makes sure they start alike. */
  comm_broadcast(j->host, params_size(j->t) * sizeof *j->host, 0);
  int bs = c->finetune.batch_size;
  int max_batch = bs > CLASSIFY_EVAL_BATCH ? bs : CLASSIFY_EVAL_BATCH;
  ModelOpts mo = {MODEL_CLASSIFY, max_batch, c->finetune.seq_length, 0, (float)c->model.dropout,
                  (float)c->model.attention_dropout, 1, j->vocab->pad};
  j->m = model_new(ops, j->t, &mo);
  model_params_from_host(j->m, j->host);
  j->steps_per_epoch = (int)((j->train->n + bs - 1) / bs);
  j->total = j->steps_per_epoch * c->finetune.epochs;
  j->warmup = warmup_steps(c->finetune.warmup_proportion, j->total);
}

/* ---- training ---- */

/* One optimizer step on the global batch rows[0..nb): this rank's block,
 * gradients summed over the ranks. loss and acc get the batch's. */
static int train_step(Job *j, ClassifyBatch *cb, const long *rows, int nb, int step, double *loss,
                      double *acc) {
  const Config *c = &j->c;
  int lo = (int)((long)j->ci.rank * nb / j->ci.size);
  int hi = (int)((long)(j->ci.rank + 1) * nb / j->ci.size);
  model_zero_grad(j->m);
  Stats st;
  memset(&st, 0, sizeof st);
  if (hi > lo) {
    int S = classify_batch_len(j->train, rows, nb);
    const Batch *b = classify_batch_fill_to(cb, j->train, rows + lo, hi - lo, S);
    DropoutCtx d = {(uint64_t)c->run.seed, (uint32_t)step, (uint64_t)lo};
    /* The model's loss is the mean over this block: weighted by the block's
     * share, the sum over ranks is the mean over the batch. */
    model_forward_backward(j->m, b, 1, d, (float)(hi - lo) / (float)nb, &st);
  }
  comm_allreduce_sum_f32(model_grads_dev(j->m), model_buffer_size(j->m));
  double sum[3] = {st.cls_loss * (double)st.cls_count, (double)st.cls_correct,
                   (double)st.cls_count};
  comm_allreduce_sum_f64(sum, 3);
  *loss = sum[2] > 0 ? sum[0] / sum[2] : 0;
  *acc = sum[2] > 0 ? sum[1] / sum[2] : 0;
  /* Both figures are global, so every rank fails alike. */
  if (!isfinite(*loss))
    return fail(j, "finetune: the loss is not finite (%g) at step %d; lower finetune.lr (now %g)",
                *loss, step, c->finetune.lr);
  double lr = lr_at(step, j->total, j->warmup, c->finetune.lr);
  OptParams o = {.lr = (float)lr, .beta1 = (float)c->finetune.adam_beta1,
                 .beta2 = (float)c->finetune.adam_beta2, .eps = (float)c->finetune.adam_epsilon,
                 .weight_decay = (float)c->finetune.weight_decay, .grad_scale = 1.0f, .step = step,
                 .bias_correction = 1};
  model_step_clipped(j->m, OPT_ADAMW, &o, (float)c->finetune.max_grad_norm);
  /* a norm that is not finite skipped the step */
  double norm = model_last_grad_norm(j->m);
  if (!isfinite(norm))
    return fail(j, "finetune: the gradient norm is not finite (%g) at step %d", norm, step);
  return 0;
}

/* Evaluation shared out among the ranks; rank 0 logs it. */
static void validate(Job *j, int step, int epoch, double seconds) {
  long chunks = classify_eval_chunks(j->dev);
  int *pred = xmalloc((size_t)j->dev->n * sizeof *pred);
  double *sum = xcalloc((size_t)chunks + 5, sizeof *sum);
  ClassifyEval ev;
  classify_evaluate_part(j->m, j->dev, j->ci.rank, j->ci.size, pred, &ev, sum + 5);
  sum[0] = (double)ev.n;
  sum[1] = (double)ev.correct;
  sum[2] = (double)ev.tp;
  sum[3] = (double)ev.fp;
  sum[4] = (double)ev.fn;
  /* Each chunk's loss comes from one rank and zeros: the sum is exact. */
  comm_allreduce_sum_f64(sum, (int)chunks + 5);
  ev.n = (long)sum[0];
  ev.correct = (long)sum[1];
  ev.tp = (long)sum[2];
  ev.fp = (long)sum[3];
  ev.fn = (long)sum[4];
  classify_eval_finish(&ev, sum + 5, chunks);
  free(sum);
  free(pred);
  if (j->ci.rank != 0) return;
  fprintf(j->metrics, "validation,%d,%d,epoch_accuracy,%.10g\n", step, epoch, eval_accuracy(&ev));
  if (j->task == GLUE_MRPC)
    fprintf(j->metrics, "validation,%d,%d,f1,%.10g\n", step, epoch, eval_f1(&ev));
  fflush(j->metrics);
  char f1[64] = "";
  if (j->task == GLUE_MRPC) snprintf(f1, sizeof f1, "  f1 %.4f", eval_f1(&ev));
  say(j, "epoch %d  step %d  dev accuracy %.10g (%ld/%ld)%s  dev loss %.6f  (%.1f s)", epoch, step,
      eval_accuracy(&ev), ev.correct, ev.n, f1, ev.loss, seconds);
}

static void log_step(Job *j, int step, int epoch, double loss, double acc) {
  if (j->ci.rank != 0) return;
  fprintf(j->metrics, "train,%d,%d,batch_accuracy,%.10g\n", step, epoch, acc);
  fprintf(j->metrics, "train,%d,%d,loss,%.10g\n", step, epoch, loss);
}

static int run_epochs(Job *j) {
  const Config *c = &j->c;
  int bs = c->finetune.batch_size, step = 0, rc = 0;
  long n = j->train->n;
  long *order = xmalloc((size_t)n * sizeof *order);
  ClassifyBatch cb;
  classify_batch_alloc(&cb, bs, c->finetune.seq_length);
  double t0 = now_seconds();
  for (int epoch = 1; epoch <= c->finetune.epochs && rc == 0; epoch++) {
    for (long i = 0; i < n; i++) order[i] = i;
    Rng r;
    rng_init(&r, (uint64_t)c->run.seed, FINETUNE_STREAM_ORDER, (uint32_t)epoch);
    rng_shuffle(&r, order, (size_t)n, sizeof *order);
    double loss_sum = 0, te = now_seconds();
    for (long start = 0; start < n && rc == 0; start += bs) {
      int nb = n - start < bs ? (int)(n - start) : bs;
      double loss, acc;
      rc = train_step(j, &cb, order + start, nb, ++step, &loss, &acc);
      if (rc != 0) break;
      loss_sum += loss;
      log_step(j, step, epoch, loss, acc);
      if (step % 10 == 0 || start + bs >= n)
        say(j, "epoch %d  step %d/%d  loss %.4f  batch accuracy %.4f  %.1f seq/s", epoch, step,
            j->total, loss, acc, (double)(start + nb) / (now_seconds() - te));
    }
    if (rc != 0) break;
    if (j->metrics) fflush(j->metrics);
    note(j, "finetune: epoch %d mean training loss %.4f", epoch, loss_sum / j->steps_per_epoch);
    validate(j, step, epoch, now_seconds() - t0);
  }
  classify_batch_free(&cb);
  free(order);
  return rc;
}

static int train_and_save(Job *j) {
  const Config *c = &j->c;
  if (j->ci.rank == 0) {
    config_write_to_dir(c, j->out);
    snprintf(j->metrics_path, sizeof j->metrics_path, "%s/metrics.csv", j->out);
    j->metrics = metrics_open(j->metrics_path, METRICS_HEADER);
  }
  note(j, "finetune: %s from %s: %d epochs of %d steps (batch %d%s), lr %g, %d warm-up steps; "
       "output in %s", glue_task_name(j->task), j->ckpt, c->finetune.epochs, j->steps_per_epoch,
       c->finetune.batch_size, j->ci.size > 1 ? " shared by the ranks" : "", c->finetune.lr,
       j->warmup, j->out);
  if (j->ci.size > 1) note(j, "finetune: data-parallel on %d ranks", j->ci.size);
  int rc = run_epochs(j);
  if (j->metrics) {
    metrics_close(j->metrics, j->metrics_path);
    j->metrics = NULL;
  }
  if (rc != 0 || j->ci.rank != 0) return rc;
  char path[PATH_MAX];
  model_params_to_host(j->m, j->host);
  snprintf(path, sizeof path, "%s/model.h5", j->out);
  weights_save(path, j->t, j->host, c, j->vocab);
  say(j, "finetune: weights written to %s", path);
  return 0;
}

static void job_free(Job *j) {
  model_free(j->m);
  free(j->host);
  params_free(j->t);
  encoded_free(j->train);
  encoded_free(j->dev);
  vocab_free(j->vocab);
  config_free(&j->c);
  if (j->log && fclose(j->log) != 0) warn("cannot write the fine-tuning log: %s", strerror(errno));
}

int finetune_run(const Config *cfg, const FinetuneArgs *a) {
  Job j;
  memset(&j, 0, sizeof j);
  j.ckpt = a->checkpoint;
  j.out = a->out;
  j.ci = comm_info();
  j.err_rank = -1;
  int failed = open_log(&j, a->log) != 0 || job_config(&j, cfg, a) != 0 ||
               check_inputs(&j) != 0;
  int rc = agree(&j, failed);
  if (rc == 0) {
    build_model(&j, train_ops(&j.c));
    rc = train_and_save(&j);
  }
  if (rc != 0 && j.ci.rank == 0) {
    FILE *f = j.notes ? j.notes : stderr;
    if (j.err_rank >= 0) fprintf(f, "bertrain: error: rank %d: %s\n", j.err_rank, j.err);
    else fprintf(f, "bertrain: error: %s\n", j.err);
    fflush(f);
  }
  job_free(&j);
  return rc == 0 ? 0 : 1;
}
