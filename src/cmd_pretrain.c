/* bertrain pretrain: masked-LM + next-sentence pre-training from HDF5
 * shards, data-parallel over MPI ranks (one rank: a plain process).
 *
 * Step s takes the global batch at stream positions [p, p + batch_size) of
 * the loader's rank-independent sample order (batch_loader.h); rank r
 * reads its slice [p + r * batch_size / ranks, ...) in micro-batches, on a
 * background thread one micro-batch ahead (prefetch.h). Dropout masks are
 * keyed by each sample's index in the global batch, gradients are summed
 * over ranks (comm.h) and scaled, so every rank applies the same update and
 * any number of ranks trains the same model up to rounding. Checkpoints
 * (checkpoint.h) hold everything that continuing needs, so a resumed run
 * on the same number of ranks ends bit for bit where an uninterrupted one
 * would. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch_loader.h"
#include "checkpoint.h"
#include "comm.h"
#include "commands.h"
#include "coordinator.h"
#include "finetune.h"
#include "grad_buckets.h"
#include "model.h"
#include "params.h"
#include "prefetch.h"
#include "run_lock.h"
#include "train_util.h"
#include "util.h"
#include "vocab.h"
#include "weights_h5.h"

/* Exit status of a run stopped by SIGTERM, SIGUSR1 or SIGINT after writing
 * checkpoints/latest.h5 (documented in the usage text). */
#define EXIT_STOPPED 3

#define METRICS_HEADER                                                                          \
  "step,epoch,loss,mlm_loss,nsp_loss,mlm_acc,nsp_acc,lr,grad_norm,seq_per_s,wall_s"

static volatile sig_atomic_t g_stop_signal = 0;

/* The first request stops after the current step; a second one ends the
 * process at once (e.g. a second Ctrl-C). */
static void on_stop_signal(int sig) {
  if (g_stop_signal) {
    signal(sig, SIG_DFL);
    raise(sig);
  }
  g_stop_signal = sig;
}

static void catch_stop_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  const int sigs[] = {SIGTERM, SIGUSR1, SIGINT};
  for (size_t i = 0; i < ARRAY_LEN(sigs); i++)
    if (sigaction(sigs[i], &sa, NULL) != 0) die("cannot install a signal handler: %s", strerror(errno));
}

/* Set while a rank other than 0 repeats checks rank 0 has passed: its
 * errors are then its own. */
static int g_checks_after_rank0 = 0;

/* An error every rank detects alike: rank 0 reports it and ends the job;
 * the others wait to be ended, so the message appears once. */
static void die_all(const char *fmt, ...) PRINTF_LIKE(1, 2) NORETURN;
static void die_all(const char *fmt, ...) {
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (comm_info().rank == 0 || g_checks_after_rank0) die("%s", msg);
  for (;;) comm_barrier();
}

/* ---- batch sizes ---- */

/* Largest divisor of n that is at most k. */
static int divisor_below(int n, int k) {
  for (int d = k; d > 1; d--)
    if (n % d == 0) return d;
  return 1;
}

/* Each rank takes batch_size / ranks sequences per step in whole
 * micro-batches. */
static void check_batch(const Config *c, int ranks) {
  int b = c->pretrain.batch_size, mb = c->pretrain.micro_batch;
  long unit = (long)mb * ranks;
  if (b % unit == 0) return;
  char alt[512];
  size_t n = 0;
  long lower = b / unit * unit;
  if (lower > 0) n += (size_t)snprintf(alt + n, sizeof alt - n, "pretrain.batch_size %ld or ", lower);
  n += (size_t)snprintf(alt + n, sizeof alt - n, "pretrain.batch_size %ld", lower + unit);
  if (b % ranks == 0)
    n += (size_t)snprintf(alt + n, sizeof alt - n, ", or pretrain.micro_batch %d",
                          divisor_below(b / ranks, mb));
  int r = ranks;
  while (r > 1 && b % ((long)mb * r) != 0) r--;
  if (r != ranks && b % mb == 0)
    snprintf(alt + n, sizeof alt - n, ", or %d rank%s", r, r == 1 ? "" : "s");
  if (unit > b)
    die_all("more ranks than the batch allows: %d rank%s x pretrain.micro_batch %d = %ld "
            "sequences per step at least, but pretrain.batch_size is %d; use %s", ranks,
            ranks == 1 ? "" : "s", mb, unit, b, alt);
  die_all("pretrain.batch_size (%d) is not a multiple of pretrain.micro_batch (%d) x %d rank%s = "
          "%ld (each rank takes whole micro-batches); use %s", b, mb, ranks, ranks == 1 ? "" : "s",
          unit, alt);
}

/* model.vocab, or the copy prep leaves in the shard directory (then named
 * in model.vocab, for config.ini). */
static Vocab *load_vocab(Config *c) {
  if (c->model.vocab[0]) return vocab_load(c->model.vocab);
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/vocab.txt", c->data.dir);
  if (!file_exists(path))
    die_all("no vocabulary: set model.vocab (the shards' directory %s has no vocab.txt)", c->data.dir);
  train_override(c, "model.vocab", path);
  return vocab_load(path);
}

static void check_shards(const Config *c, const BatchLoader *l) {
  const Shard *s = loader_shard(l, 0);
  if (s->seq_length != c->data.seq_length)
    die_all("%s: sequences of %d tokens, but data.seq_length is %d (set data.seq_length=%d, or "
            "make shards of %d with prep)", s->path, s->seq_length, c->data.seq_length,
            s->seq_length, c->data.seq_length);
  if (s->max_predictions != c->data.max_predictions)
    die_all("%s: %d masked positions per sequence, but data.max_predictions is %d (set "
            "data.max_predictions=%d)", s->path, s->max_predictions, c->data.max_predictions,
            s->max_predictions);
}

/* ---- statistics ---- */

/* Sums over the micro-batches (and ranks) of one step, or over the steps
 * of a log line; doubles, so one all-reduce carries them. */
enum { A_LOSS, A_MLM, A_NSP, A_MLM_OK, A_MLM_N, A_NSP_OK, A_NSP_N, A_CALLS, A_STOP, A_SAVE, A_N };
typedef struct Acc { double v[A_N]; } Acc;

static void acc_add_stats(Acc *a, const Stats *s) {
  a->v[A_LOSS] += s->loss;
  a->v[A_MLM] += s->mlm_loss;
  a->v[A_NSP] += s->cls_loss;
  a->v[A_MLM_OK] += (double)s->mlm_correct;
  a->v[A_MLM_N] += (double)s->mlm_count;
  a->v[A_NSP_OK] += (double)s->cls_correct;
  a->v[A_NSP_N] += (double)s->cls_count;
  a->v[A_CALLS] += 1;
}

static void acc_add(Acc *a, const Acc *b) {
  for (int i = 0; i < A_N; i++) a->v[i] += b->v[i];
}

static double acc_mean(const Acc *a, int i) { return a->v[A_CALLS] ? a->v[i] / a->v[A_CALLS] : 0; }
static double ratio(double a, double b) { return b ? a / b : 0; }

/* ---- the trainer ---- */

typedef struct Timing { double wait, compute, comm, ckpt; } Timing;

typedef struct Trainer {
  Config *c;
  CommInfo ci;
  const Ops *ops;
  Vocab *v;
  BatchLoader *loader;
  Prefetcher *pf;
  ParamTable *t;
  Model *m;
  ModelOptKind opt;
  int mb, per_rank, accum;
  int64_t spe, total, warmup;
  uint64_t samples;
  uint64_t cursor0; /* stream position of the first sample of step step0 + 1 */
  int64_t step0;
  TrainState st;    /* after the last step done */
  float *host_p, *host_m, *host_v;
  char dir[PATH_MAX - 64], ckdir[PATH_MAX - 32];
  FILE *metrics, *log;
  char metrics_path[PATH_MAX];
  double t_run, wall0, last_save;
  double paused;    /* seconds spent fine-tuning inline: not pre-training time */
  Coordinator *co;
  int64_t nan_step; /* test hook BERTRAIN_TEST_NAN_STEP: the last rank's loss is NaN there */
  Timing tm;
} Trainer;

/* Rank 0's progress: standard output and RUN_DIR/pretrain/log.txt. */
static void say(Trainer *tr, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void say(Trainer *tr, const char *fmt, ...) {
  if (tr->ci.rank != 0) return;
  va_list ap;
  va_start(ap, fmt);
  char line[2048];
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  printf("%s\n", line);
  fflush(stdout);
  if (tr->log) {
    fprintf(tr->log, "%s\n", line);
    fflush(tr->log);
  }
}

static uint64_t step_start(const Trainer *tr, int64_t s) {
  return tr->cursor0 + (uint64_t)(s - tr->step0 - 1) * (uint64_t)tr->c->pretrain.batch_size;
}

/* Stream position of micro-batch k of this rank in step s. */
static uint64_t micro_start(const Trainer *tr, int64_t s, int k) {
  return step_start(tr, s) + (uint64_t)tr->ci.rank * (uint64_t)tr->per_rank +
         (uint64_t)k * (uint64_t)tr->mb;
}

static void request_after(Trainer *tr, int64_t s, int k) {
  if (k + 1 < tr->accum) prefetch_request(tr->pf, micro_start(tr, s, k + 1), tr->mb);
  else if (s < tr->total) prefetch_request(tr->pf, micro_start(tr, s + 1, 0), tr->mb);
}

/* Forward and backward of this rank's micro-batches, then the all-reduces
 * of the gradients and of the statistics (with the stop and save flags). */
static Acc compute_step(Trainer *tr, int64_t s, int save_due) {
  Acc a;
  memset(&a, 0, sizeof a);
  model_zero_grad(tr->m);
  int overlap = tr->c->pretrain.bucket_mb > 0 && tr->ci.size > 1;
  GradBuckets gb;
  for (int k = 0; k < tr->accum; k++) {
    const LoadedBatch *lb = prefetch_take(tr->pf, &tr->tm.wait);
    if (overlap && k == tr->accum - 1) grad_buckets_begin(&gb, tr->m, tr->c->pretrain.bucket_mb);
    request_after(tr, s, k);
    double t0 = now_seconds();
    Batch b = {lb->n, lb->S, lb->P, lb->input_ids, lb->segment_ids, lb->input_mask,
               lb->mlm_positions, lb->mlm_ids, lb->nsp_labels};
    DropoutCtx d = {(uint64_t)tr->c->run.seed, (uint32_t)s,
                    (uint64_t)tr->ci.rank * tr->per_rank + (uint64_t)k * tr->mb};
    Stats st;
    /* The mean over the global batch: the all-reduce sums rank shares
     * already divided by the rank count, which saves a pass over the
     * gradients afterwards. */
    model_forward_backward(tr->m, &b, 1, d, 1.0f / (float)(tr->accum * tr->ci.size), &st);
    acc_add_stats(&a, &st);
    tr->ops->sync();
    tr->tm.compute += now_seconds() - t0;
  }
  double t0 = now_seconds();
  if (overlap) {
    grad_buckets_end(&gb, tr->m);
    if (s == tr->step0 + 1)
      info("pretrain: the gradient all-reduce runs in %d bucket%s of at least %g MB during the "
           "backward", gb.buckets, gb.buckets == 1 ? "" : "s", tr->c->pretrain.bucket_mb);
  } else {
    comm_allreduce_sum_f32(model_grads_dev(tr->m), model_buffer_size(tr->m));
  }
  if (s == tr->nan_step && tr->ci.rank == tr->ci.size - 1) a.v[A_LOSS] = NAN;
  a.v[A_STOP] = g_stop_signal != 0;
  a.v[A_SAVE] = save_due;
  comm_allreduce_sum_f64(a.v, A_N);
  tr->ops->sync();
  tr->tm.comm += now_seconds() - t0;
  return a;
}

/* The optimizer update of step s, unless the loss or the gradient is not
 * finite. Returns 0 when the step was skipped. */
static int update(Trainer *tr, int64_t s, const Acc *a, double *lr, double *norm) {
  const Config *c = tr->c;
  double t0 = now_seconds();
  double loss = acc_mean(a, A_LOSS);
  *lr = lr_at((int)s, (int)tr->total, (int)tr->warmup, c->pretrain.lr);
  if (isfinite(loss)) {
    /* clipped on the device, which skips the step when the norm is not
     * finite; the norm is read after the step is queued */
    OptParams o = {.lr = (float)*lr, .beta1 = (float)c->pretrain.adam_beta1,
                   .beta2 = (float)c->pretrain.adam_beta2, .eps = (float)c->pretrain.adam_epsilon,
                   .weight_decay = (float)c->pretrain.weight_decay, .grad_scale = 1.0f,
                   .step = (int)tr->st.opt_step + 1, .bias_correction = 1};
    model_step_clipped(tr->m, tr->opt, &o, (float)c->pretrain.max_grad_norm);
    *norm = model_last_grad_norm(tr->m);
  } else {
    *norm = model_grad_norm(tr->m);
  }
  if (!isfinite(loss) || !isfinite(*norm)) {
    if (!c->pretrain.skip_nonfinite)
      die_all("pretrain: the %s is not finite (loss %g: MLM %g, NSP %g; gradient norm %g) at "
              "step %lld; the last checkpoint is left as it is; lower pretrain.lr (now %g), check "
              "the data, or set pretrain.skip_nonfinite=true to skip such steps",
              isfinite(loss) ? "gradient norm" : "loss", loss, acc_mean(a, A_MLM),
              acc_mean(a, A_NSP), *norm, (long long)s, c->pretrain.lr);
    tr->st.skipped++;
    say(tr, "pretrain: step %lld skipped: loss %g, gradient norm %g (%lld skipped so far)",
        (long long)s, loss, *norm, (long long)tr->st.skipped);
    return 0;
  }
  tr->st.opt_step++;
  tr->ops->sync();
  tr->tm.compute += now_seconds() - t0;
  return 1;
}

/* Training state after step s. */
static void advance_state(Trainer *tr, int64_t s) {
  uint64_t cursor = step_start(tr, s + 1);
  tr->st.step = s;
  tr->st.epoch = s / tr->spe;
  tr->st.data_pass = cursor / tr->samples;
  tr->st.data_position = cursor % tr->samples;
  tr->st.world_size = tr->ci.size;
  tr->st.wall_seconds = tr->wall0 + (now_seconds() - tr->t_run - tr->paused);
}

/* Every rank must hold the same parameters (the all-reduce gives each the
 * same sum); checked whenever a checkpoint is written. */
static void check_ranks_agree(Trainer *tr) {
  model_params_to_host(tr->m, tr->host_p);
  uint64_t h = fnv1a64(tr->host_p, params_size(tr->t) * sizeof(float), FNV1A64_INIT), h0 = h;
  comm_broadcast(&h0, sizeof h0, 0);
  if (h != h0)
    die("pretrain: after step %lld the parameters of rank %d differ from rank 0's (the "
        "all-reduce did not give every rank the same sum)", (long long)tr->st.step, tr->ci.rank);
}

static void save(Trainer *tr, const char *name) {
  double t0 = now_seconds();
  check_ranks_agree(tr);
  if (tr->ci.rank == 0) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", tr->ckdir, name);
    model_opt_to_host(tr->m, tr->host_m, tr->host_v);
    tr->st.wall_seconds = tr->wall0 + (now_seconds() - tr->t_run - tr->paused);
    ckpt_write(path, tr->t, tr->host_p, tr->host_m, tr->host_v, tr->c, tr->v, &tr->st);
    if (tr->log) {
      fprintf(tr->log, "checkpoint %s (step %lld)\n", path, (long long)tr->st.step);
      fflush(tr->log);
    }
  }
  tr->last_save = now_seconds();
  tr->tm.ckpt += tr->last_save - t0;
}

/* The inline launcher: every rank fine-tunes the queued jobs together, then
 * pre-training goes on exactly where it was. */
static void run_inline_jobs(Trainer *tr) {
  double t0 = now_seconds();
  CoordJob job;
  while (coord_next_inline(tr->co, &job)) {
    FinetuneArgs a = {.checkpoint = job.checkpoint, .task = job.task, .data = job.data,
                      .out = job.out, .seed = job.seed, .log = job.log};
    say(tr, "pretrain: fine-tuning %s on %s (inline) into %s", job.checkpoint, job.task, job.out);
    coord_job_done(tr->co, &job, finetune_run(tr->c, &a));
  }
  tr->paused += now_seconds() - t0;
}

/* Hands a milestone checkpoint (just written) to the coordinator. */
static void milestone(Trainer *tr, const char *name, int epoch) {
  char path[PATH_MAX];
  path_fmt(path, sizeof path, "%s/%s", tr->ckdir, name);
  comm_barrier(); /* rank 0 has renamed the file into place before any rank reads it */
  coord_milestone(tr->co, path, epoch, tr->st.wall_seconds, (long)tr->st.step);
  run_inline_jobs(tr);
}

/* A resumed run first finishes the jobs of milestones it has passed that an
 * earlier start left unfinished (stopped or killed while they were queued
 * or running). Rank 0 reads the run directory and tells the others. */
static void resume_jobs(Trainer *tr) {
  Milestone *m = NULL;
  int n = 0;
  if (tr->ci.rank == 0) n = coord_unfinished(tr->co, (int)(tr->step0 / tr->spe), &m);
  comm_broadcast(&n, sizeof n, 0);
  if (n == 0) return;
  if (tr->ci.rank != 0) m = xcalloc((size_t)n, sizeof *m);
  comm_broadcast(m, (size_t)n * sizeof *m, 0);
  for (int i = 0; i < n; i++)
    coord_milestone(tr->co, m[i].checkpoint, m[i].epoch, m[i].pretrain_wall_s, m[i].global_step);
  free(m);
  run_inline_jobs(tr);
}

/* A fresh run with finetune.baseline: the initial weights, as a checkpoint
 * of step 0, are fine-tuned as "epoch 0" to compare the milestones with. */
static void baseline(Trainer *tr) {
  const Config *c = tr->c;
  if (tr->step0 != 0 || !c->finetune.baseline || strcmp(c->finetune.launcher, "none") == 0)
    return;
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/epoch-0000.h5", tr->ckdir);
  /* Resumed from it: its job was launched then. Rank 0 decides for all, as
   * the file appears while the others look. */
  int exists = tr->ci.rank == 0 && file_exists(path);
  comm_broadcast(&exists, sizeof exists, 0);
  if (exists) return;
  save(tr, "epoch-0000.h5");
  milestone(tr, "epoch-0000.h5", 0);
}

/* The checkpoints due after step s; returns 1 when the run must stop. */
static int checkpoints_after(Trainer *tr, int64_t s, const Acc *a) {
  const Config *c = tr->c;
  int stop = a->v[A_STOP] > 0;
  if (s == tr->total) save(tr, "final.h5");
  if (s % tr->spe == 0 && (s / tr->spe) % c->pretrain.milestone_epochs == 0) {
    char name[64];
    snprintf(name, sizeof name, "epoch-%04lld.h5", (long long)(s / tr->spe));
    save(tr, name);
    milestone(tr, name, (int)(s / tr->spe));
  }
  int every = c->checkpoint.every_steps > 0 && s % c->checkpoint.every_steps == 0;
  if (s < tr->total && (every || a->v[A_SAVE] > 0 || stop)) save(tr, "latest.h5");
  return stop && s < tr->total;
}

static void write_metrics(Trainer *tr, int64_t s, const Acc *a, double lr, double norm,
                          double seq_s) {
  if (tr->ci.rank != 0) return;
  fprintf(tr->metrics, "%lld,%.4f,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.2f,%.3f\n",
          (long long)s, (double)s / (double)tr->spe, acc_mean(a, A_LOSS), acc_mean(a, A_MLM),
          acc_mean(a, A_NSP), ratio(a->v[A_MLM_OK], a->v[A_MLM_N]),
          ratio(a->v[A_NSP_OK], a->v[A_NSP_N]), lr, norm, seq_s, tr->st.wall_seconds);
  if (fflush(tr->metrics) != 0) die("cannot write %s: %s", tr->metrics_path, strerror(errno));
}

static void print_progress(Trainer *tr, int64_t s, const Acc *w, int steps, double lr,
                           double seconds) {
  say(tr, "step %6lld  loss %.4f (mlm %.4f, nsp %.4f)  mlm_acc %.4f  nsp_acc %.4f  lr %.3e  "
      "%.1f seq/s", (long long)s, acc_mean(w, A_LOSS), acc_mean(w, A_MLM), acc_mean(w, A_NSP),
      ratio(w->v[A_MLM_OK], w->v[A_MLM_N]), ratio(w->v[A_NSP_OK], w->v[A_NSP_N]), lr,
      steps * tr->c->pretrain.batch_size / (seconds > 0 ? seconds : 1e-9));
}

/* Runs steps step0 + 1 .. total; returns EXIT_STOPPED when stopped by a
 * signal, else 0. */
static int train(Trainer *tr) {
  const Config *c = tr->c;
  int64_t first = tr->step0 + 1;
  if (first > tr->total) return 0;
  tr->pf = prefetch_new(tr->loader, tr->mb);
  prefetch_request(tr->pf, micro_start(tr, first, 0), tr->mb);
  double t_log = now_seconds();
  Acc window;
  memset(&window, 0, sizeof window);
  int window_steps = 0, rc = 0;
  for (int64_t s = first; s <= tr->total; s++) {
    double ts = now_seconds();
    int save_due = tr->ci.rank == 0 && c->checkpoint.every_minutes > 0 &&
                   ts - tr->last_save >= c->checkpoint.every_minutes * 60;
    coord_poll(tr->co);
    Acc a = compute_step(tr, s, save_due);
    double lr, norm;
    update(tr, s, &a, &lr, &norm);
    advance_state(tr, s);
    double t = now_seconds();
    write_metrics(tr, s, &a, lr, norm, c->pretrain.batch_size / (t - ts));
    acc_add(&window, &a);
    window_steps++;
    if (s % c->pretrain.log_every == 0 || s == tr->total || s == first) {
      print_progress(tr, s, &window, window_steps, lr, t - t_log);
      memset(&window, 0, sizeof window);
      window_steps = 0;
      t_log = t;
    }
    if (checkpoints_after(tr, s, &a)) {
      say(tr, "pretrain: stopped by a signal after step %lld; checkpoint %s/latest.h5 written; "
          "run the same command to continue (exit status %d)", (long long)s, tr->ckdir,
          EXIT_STOPPED);
      rc = EXIT_STOPPED;
      break;
    }
  }
  prefetch_free(tr->pf);
  tr->pf = NULL;
  /* No rank leaves (a non-zero exit ends the job) before rank 0 has written. */
  comm_barrier();
  return rc;
}

/* ---- setting up ---- */

static void resolve_steps(Trainer *tr) {
  const Config *c = tr->c;
  tr->samples = loader_samples(tr->loader);
  tr->spe = c->pretrain.steps_per_epoch;
  if (tr->spe == 0) {
    tr->spe = (int64_t)(tr->samples / (uint64_t)c->pretrain.batch_size);
    if (tr->spe < 1) tr->spe = 1;
  }
  tr->total = (int64_t)c->pretrain.epochs * tr->spe;
  if (tr->total > INT_MAX)
    die_all("pretrain.epochs (%d) x steps per epoch (%lld) = %lld steps; at most %d are supported",
            c->pretrain.epochs, (long long)tr->spe, (long long)tr->total, INT_MAX);
  tr->warmup = warmup_steps(c->pretrain.warmup_proportion, (int)tr->total);
}

/* The state of a new run. */
static void fresh_state(Trainer *tr) {
  memset(&tr->st, 0, sizeof tr->st);
  tr->st.steps_per_epoch = tr->spe;
  tr->st.total_steps = tr->total;
  tr->st.warmup_steps = tr->warmup;
  tr->st.batch_size = tr->c->pretrain.batch_size;
  tr->st.data_samples = tr->samples;
  tr->st.seed = (uint64_t)tr->c->run.seed;
  tr->st.world_size = tr->ci.size;
}

/* Rank 0: the checkpoint to continue from into the host buffers; returns
 * 0 for a new run. */
static int find_resume(Trainer *tr, const char *resume) {
  CkptExpect e = {tr->t, tr->c, tr->v, tr->samples};
  char why[2048];
  if (strcmp(resume, "never") != 0 && strcmp(resume, "auto") != 0) {
    if (ckpt_read(resume, &e, tr->host_p, tr->host_m, tr->host_v, &tr->st, why, sizeof why) != 0)
      die("--resume %s: cannot use this checkpoint: %s", resume, why);
    info("pretrain: resuming from %s", resume);
    return 1;
  }
  ckpt_remove_partial(tr->ckdir);
  char **paths;
  int found, n = ckpt_list(tr->ckdir, &paths, &found);
  int ok = 0;
  if (strcmp(resume, "never") == 0 && found > 0)
    die("--resume never: %s already holds checkpoints of a run; remove them or choose another "
        "run.dir", tr->ckdir);
  for (int i = 0; i < n && !ok; i++) {
    if (ckpt_read(paths[i], &e, tr->host_p, tr->host_m, tr->host_v, &tr->st, why, sizeof why) == 0) {
      info("pretrain: resuming from %s", paths[i]);
      ok = 1;
    } else {
      warn("checkpoint %s is damaged and is not used: %s%s", paths[i], why,
           i + 1 < n ? "; trying the previous one" : "");
    }
  }
  for (int i = 0; i < n; i++) free(paths[i]);
  free(paths);
  if (!ok && found > 0)
    die("%s holds %d checkpoint file%s but none is usable (see above); nothing was overwritten. "
        "Remove them to start afresh, or choose another run.dir", tr->ckdir, found,
        found == 1 ? "" : "s");
  return ok;
}

/* A new run from given weights (pretrain.init_checkpoint): rank 0 reads
 * them, checking shape, vocabulary and lower-casing against the run's, and
 * hands them to every rank; the optimizer starts afresh. */
static void init_from(Trainer *tr, const char *path) {
  size_t bytes = params_size(tr->t) * sizeof(float);
  if (tr->ci.rank == 0) {
    ModelShape s;
    weights_read_shape(path, &s);
    if (!s.pretraining)
      die("pretrain.init_checkpoint %s has no pre-training heads (cls.*: a BertModel or a "
          "fine-tuned classifier); pre-training needs a BertForPreTraining's weights", path);
    memset(tr->host_p, 0, bytes);
    weights_load(path, tr->t, tr->host_p, tr->c, tr->v);
    info("pretrain: a new run from the weights of %s (pretrain.init_checkpoint)", path);
  }
  comm_broadcast(tr->host_p, bytes, 0);
  model_params_from_host(tr->m, tr->host_p);
}

/* Loads the checkpoint on rank 0 and hands it to every rank. */
static void start_state(Trainer *tr, const char *resume) {
  int have = tr->ci.rank == 0 ? find_resume(tr, resume) : 0;
  comm_broadcast(&have, sizeof have, 0);
  if (!have) {
    fresh_state(tr);
    if (tr->c->pretrain.init_checkpoint[0]) init_from(tr, tr->c->pretrain.init_checkpoint);
    else model_init_params(tr->m, (uint64_t)tr->c->run.seed, tr->c->model.initializer_range, tr->v->pad);
    return;
  }
  size_t bytes = params_size(tr->t) * sizeof(float);
  comm_broadcast(&tr->st, sizeof tr->st, 0);
  comm_broadcast(tr->host_p, bytes, 0);
  comm_broadcast(tr->host_m, bytes, 0);
  comm_broadcast(tr->host_v, bytes, 0);
  model_params_from_host(tr->m, tr->host_p);
  model_opt_from_host(tr->m, tr->host_m, tr->host_v);
  if (tr->st.steps_per_epoch != tr->spe || tr->st.total_steps != tr->total ||
      tr->st.batch_size != tr->c->pretrain.batch_size)
    die_all("the checkpoint's schedule (%lld steps of %lld per epoch, batch %lld) differs from "
            "this run's (%lld of %lld, batch %d)", (long long)tr->st.total_steps,
            (long long)tr->st.steps_per_epoch, (long long)tr->st.batch_size, (long long)tr->total,
            (long long)tr->spe, tr->c->pretrain.batch_size);
  tr->step0 = tr->st.step;
  tr->cursor0 = tr->st.data_pass * tr->samples + tr->st.data_position;
  tr->wall0 = tr->st.wall_seconds;
}

/* The metrics of a continued run keep the rows of the steps the
 * checkpoint holds; rows written after it (by the interrupted run) go. */
static FILE *open_metrics(const char *path, int64_t step) {
  if (step == 0 || !file_exists(path)) return metrics_open(path, METRICS_HEADER);
  FILE *f = fopen(path, "r");
  if (!f) die("cannot read %s: %s", path, strerror(errno));
  char *kept = NULL, *line = NULL;
  size_t kept_len = 0, cap = 0;
  FILE *out = open_memstream(&kept, &kept_len);
  if (!out) die("out of memory");
  fprintf(out, "%s\n", METRICS_HEADER);
  ssize_t len;
  int first = 1;
  while ((len = getline(&line, &cap, f)) > 0) {
    if (first) { first = 0; continue; }
    char *end;
    long long s = strtoll(line, &end, 10);
    if (end != line && *end == ',' && s >= 1 && s <= step) fputs(line, out);
  }
  free(line);
  fclose(f);
  if (fclose(out) != 0) die("out of memory");
  write_file_atomic(path, kept, kept_len);
  free(kept);
  FILE *a = fopen(path, "a");
  if (!a) die("cannot append to %s: %s", path, strerror(errno));
  return a;
}

static void open_outputs(Trainer *tr) {
  if (tr->ci.rank != 0) return;
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/pretrain", tr->dir);
  make_dirs(path);
  config_write_to_dir(tr->c, tr->dir);
  snprintf(tr->metrics_path, sizeof tr->metrics_path, "%s/pretrain/metrics.csv", tr->dir);
  tr->metrics = open_metrics(tr->metrics_path, tr->step0);
  snprintf(path, sizeof path, "%s/pretrain/log.txt", tr->dir);
  tr->log = fopen(path, "a");
  if (!tr->log) die("cannot write %s: %s", path, strerror(errno));
}

static void close_outputs(Trainer *tr) {
  if (tr->metrics) metrics_close(tr->metrics, tr->metrics_path);
  if (tr->log && fclose(tr->log) != 0) die("cannot write %s/pretrain/log.txt", tr->dir);
  tr->metrics = tr->log = NULL;
}

/* run.threads 0 means all cores: shared among this node's ranks. */
static int set_threads(Trainer *tr) {
  if (tr->c->run.threads > 0) return tr->c->run.threads;
  int n = omp_get_num_procs() / (tr->ci.local_size > 0 ? tr->ci.local_size : 1);
  if (n < 1) n = 1;
  tr->ops->set_threads(n);
  return n;
}

/* Checks and opens what every rank needs; rank 0 goes first, so an error
 * in the settings or the data is reported once. The backend comes after,
 * on all ranks together: choosing it is collective (NCCL set-up). */
static void open_inputs(Trainer *tr, int argc, char **argv) {
  Config *c = tr->c;
  if (tr->ci.rank != 0) {
    comm_barrier();
    g_checks_after_rank0 = 1;
  }
  model_config_check(c);
  check_batch(c, tr->ci.size);
  train_run_dir(c, argc, argv, tr->dir, sizeof tr->dir);
  snprintf(tr->ckdir, sizeof tr->ckdir, "%s/checkpoints", tr->dir);
  tr->v = load_vocab(c);
  tr->loader = loader_open(c->data.dir, tr->v, (uint64_t)c->run.seed, (size_t)c->data.cache_mb << 20);
  check_shards(c, tr->loader);
  resolve_steps(tr);
  if (tr->ci.rank == 0) {
    make_dirs(tr->ckdir);
    run_lock(tr->dir);
    comm_barrier();
  }
  g_checks_after_rank0 = 0;
  tr->ops = train_ops(c);
}

static void report_start(Trainer *tr, int threads) {
  const Config *c = tr->c;
  info("pretrain: %llu samples in %d shard(s) of %s; model %d layers, hidden %d, %zu parameters",
       (unsigned long long)tr->samples, loader_num_shards(tr->loader), c->data.dir,
       tr->t->shape.layers, tr->t->shape.hidden, params_count(tr->t));
  info("pretrain: %d epochs x %lld steps = %lld steps of %d sequences (%d rank%s x %d "
       "micro-batch%s of %d), %s, lr %g, %lld warm-up steps, %d thread%s per rank; output in %s",
       c->pretrain.epochs, (long long)tr->spe, (long long)tr->total, c->pretrain.batch_size,
       tr->ci.size, tr->ci.size == 1 ? "" : "s", tr->accum, tr->accum == 1 ? "" : "es", tr->mb,
       c->pretrain.optimizer, c->pretrain.lr, (long long)tr->warmup, threads,
       threads == 1 ? "" : "s", tr->dir);
  if (tr->step0 > 0) {
    info("pretrain: continuing after step %lld (epoch %lld, data pass %llu position %llu), "
         "%.1f s trained so far, checkpoint written by %lld rank%s%s", (long long)tr->step0,
         (long long)tr->st.epoch, (unsigned long long)tr->st.data_pass,
         (unsigned long long)tr->st.data_position, tr->st.wall_seconds,
         (long long)tr->st.world_size, tr->st.world_size == 1 ? "" : "s",
         tr->st.world_size != tr->ci.size ? " (another number of ranks: the result matches an "
                                            "uninterrupted run up to rounding, not bit for bit)" : "");
  }
  if (tr->log)
    fprintf(tr->log, "start: %d rank(s), step %lld of %lld\n", tr->ci.size, (long long)tr->step0,
            (long long)tr->total);
}

static void report_end(Trainer *tr, int64_t steps_done) {
  double wall = now_seconds() - tr->t_run - tr->paused;
  double step_time = tr->tm.wait + tr->tm.compute + tr->tm.comm;
  say(tr, "pretrain: %lld steps, %lld sequences in %.1f s (%.1f seq/s); of the step time "
      "%.1f%% computing, %.1f%% in the all-reduce, %.1f%% waiting for data; %.1f s writing "
      "checkpoints", (long long)steps_done, (long long)steps_done * tr->c->pretrain.batch_size,
      wall, (double)steps_done * tr->c->pretrain.batch_size / (wall > 0 ? wall : 1e-9),
      100 * ratio(tr->tm.compute, step_time), 100 * ratio(tr->tm.comm, step_time),
      100 * ratio(tr->tm.wait, step_time), tr->tm.ckpt);
}

static int run(int argc, char **argv) {
  const char *data = NULL, *resume = "auto";
  CliOpt opts[] = {{"data", OPT_STRING, &data}, {"resume", OPT_STRING, &resume}};
  Config cfg;
  int first = cli_parse(&CMD_PRETRAIN, argc, argv, opts, (int)ARRAY_LEN(opts), &cfg);
  if (first < argc) die("pretrain: unexpected argument '%s'", argv[first]);
  if (data) train_override(&cfg, "data.dir", data);
  Trainer tr;
  memset(&tr, 0, sizeof tr);
  tr.c = &cfg;
  tr.ci = comm_init();
  tr.t_run = now_seconds();
  const char *nan_step = getenv("BERTRAIN_TEST_NAN_STEP");
  long v;
  tr.nan_step = nan_step && parse_long(nan_step, &v) == 0 ? v : -1;
  open_inputs(&tr, argc, argv);
  tr.mb = cfg.pretrain.micro_batch;
  tr.per_rank = cfg.pretrain.batch_size / tr.ci.size;
  tr.accum = tr.per_rank / tr.mb;
  tr.opt = strcmp(cfg.pretrain.optimizer, "lamb") == 0 ? OPT_LAMB : OPT_ADAMW;
  int threads = set_threads(&tr);

  ModelShape shape = model_shape(&cfg, tr.v->size, 0, 1);
  tr.t = params_build(&shape);
  ModelOpts mo = {MODEL_PRETRAIN, tr.mb, loader_seq_length(tr.loader),
                  loader_max_predictions(tr.loader), (float)cfg.model.dropout,
                  (float)cfg.model.attention_dropout, 1, tr.v->pad};
  tr.m = model_new(tr.ops, tr.t, &mo);
  tr.host_p = params_alloc_host(tr.t);
  tr.host_m = params_alloc_host(tr.t);
  tr.host_v = params_alloc_host(tr.t);

  start_state(&tr, resume);
  open_outputs(&tr);
  report_start(&tr, threads);
  if (tr.step0 >= tr.total) {
    say(&tr, "pretrain: the run is complete (the checkpoint holds step %lld of %lld); nothing to "
        "do", (long long)tr.step0, (long long)tr.total);
  }
  if (tr.ci.rank != 0) { /* only rank 0 writes the moments */
    free(tr.host_m);
    free(tr.host_v);
    tr.host_m = tr.host_v = NULL;
  }
  tr.co = coord_new(&cfg, tr.dir, NULL);
  coord_set_command(tr.co, argc, argv, tr.ci.size);
  coord_stop_flag(tr.co, &g_stop_signal);
  tr.last_save = now_seconds();
  catch_stop_signals();
  resume_jobs(&tr);
  baseline(&tr);
  int rc = train(&tr);
  if (rc == 0 && coord_finish(tr.co)) {
    say(&tr, "pretrain: stopped by a signal while waiting for fine-tuning jobs; the next start "
        "runs them (exit status %d)", EXIT_STOPPED);
    rc = EXIT_STOPPED;
  } else if (rc != 0) {
    coord_stop(tr.co);
  }
  coord_free(tr.co);
  if (tr.st.step > tr.step0) {
    report_end(&tr, tr.st.step - tr.step0);
    if (rc == 0) say(&tr, "pretrain: weights written to %s/final.h5", tr.ckdir);
  }
  close_outputs(&tr);
  free(tr.host_p);
  free(tr.host_m);
  free(tr.host_v);
  model_free(tr.m);
  params_free(tr.t);
  loader_close(tr.loader);
  vocab_free(tr.v);
  config_free(&cfg);
  return rc;
}

const Command CMD_PRETRAIN = {
  "pretrain", "pre-train BERT (masked LM + next sentence) on HDF5 shards, on 1 or more MPI ranks",
  "usage: bertrain pretrain [--config FILE] [--data DIR] [--resume auto|never|PATH]\n"
  "                         [--set KEY=VALUE]...\n"
  "       mpirun -np N bertrain pretrain ...   (or srun: N data-parallel ranks)\n\n"
  "Pre-trains BERT on the shards DIR/shard-*.h5 that 'bertrain prep'\n"
  "makes: masked-LM plus next-sentence loss, pretrain.epochs epochs of\n"
  "pretrain.steps_per_epoch optimizer steps (0: one pass over the data), each of\n"
  "pretrain.batch_size sequences (the global batch). With N ranks each rank takes\n"
  "batch_size / N of them per step in micro-batches of pretrain.micro_batch,\n"
  "accumulating gradients; batch_size must be a multiple of micro_batch x N.\n"
  "Gradients are summed over the ranks (MPI_Allreduce), so every rank count trains\n"
  "the same model up to rounding. The samples of all shards are read in one seeded\n"
  "random order (run.seed), redrawn at each pass over the data and independent of\n"
  "N; each rank reads only its rows, one micro-batch ahead on a second thread. The\n"
  "learning rate rises linearly over the first pretrain.warmup_proportion of the\n"
  "steps, then falls linearly to zero; gradients are clipped to\n"
  "pretrain.max_grad_norm; the optimizer is AdamW or LAMB (pretrain.optimizer).\n"
  "A non-finite loss or gradient norm stops the run, naming the step (or, with\n"
  "pretrain.skip_nonfinite, skips the step and counts it). Runs on the CPU with\n"
  "run.threads threads per rank (0 = the node's cores shared among its ranks).\n"
  "A new run starts from random weights (run.seed), or from the weights file\n"
  "pretrain.init_checkpoint (e.g. a published BERT from 'bertrain import', to\n"
  "pre-train it further on this corpus: same shape, vocabulary and lower-casing;\n"
  "the optimizer starts afresh, and the epoch-0 baseline is those weights).\n\n"
  "Writes to the run directory (run.dir; default runs/NAME, NAME the --config\n"
  "file's base name, or runs/default), from rank 0:\n"
  "  config.ini               the resolved settings\n"
  "  pretrain.lock            locked while the job runs: a second job started on\n"
  "                           the same directory is refused, naming the first\n"
  "  pretrain/metrics.csv     one row per step: step, epoch, loss, mlm_loss,\n"
  "                           nsp_loss, mlm_acc, nsp_acc (averages over all ranks),\n"
  "                           lr, grad_norm, seq_per_s, wall_s (skipped steps are\n"
  "                           counted in pretrain/log.txt)\n"
  "  pretrain/log.txt         the progress lines, starts and checkpoints\n"
  "  checkpoints/epoch-NNNN.h5  at the end of every pretrain.milestone_epochs-th\n"
  "                           epoch, kept\n"
  "  checkpoints/latest.h5    every checkpoint.every_steps steps and/or\n"
  "                           checkpoint.every_minutes minutes, and when stopped\n"
  "  checkpoints/final.h5     at the end of the run\n"
  "A checkpoint holds the weights (Hugging Face names), vocabulary and settings\n"
  "(fine-tuning reads it directly), the optimizer moments, the step, epoch, data\n"
  "position, seed, rank count and training time, all checksummed; it is written as\n"
  "NAME.tmp, flushed and renamed, so a crash leaves the previous one intact.\n\n"
  "Resuming: with --resume auto (the default) a run directory that has\n"
  "checkpoints continues from the newest usable one (a damaged one is reported\n"
  "and the one before it used), on any number of ranks; on the same number the\n"
  "result is bit for bit that of an uninterrupted run. The settings that define\n"
  "the run (batch_size, epochs, steps_per_epoch, lr, optimizer, seed, ...) must be\n"
  "unchanged. --resume never refuses a directory that already has checkpoints;\n"
  "--resume PATH continues from that file.\n\n"
  "Stopping: SIGTERM, SIGUSR1 or SIGINT to any rank makes every rank finish the\n"
  "current step; then checkpoints/latest.h5 is written and every rank exits with\n"
  "status 3, so a batch script can requeue the same command; a second signal\n"
  "ends the process at once. Under Slurm, srun passes scancel's SIGTERM (or\n"
  "'scancel --signal=USR1', 'sbatch --signal=USR1@T') to the ranks; mpirun passes\n"
  "SIGUSR1 on to every rank, but turns SIGTERM and Ctrl-C into killing the job\n"
  "(the next start then continues from the newest checkpoint). A stop also ends\n"
  "the fine-tuning processes still running (finetune.launcher = process); the\n"
  "next start first runs every job of a passed milestone that is not done\n"
  "(stopped, killed or failed; one a killed start left running on this machine\n"
  "is ended first) and follows Slurm jobs submitted before. Any error ends\n"
  "every rank with status 1 and one message naming the rank; a killed rank ends\n"
  "the job too.\n\n"
  "options:\n"
  "  --data DIR        shard directory (overrides data.dir)\n"
  "  --resume WHAT     auto (default), never, or a checkpoint file\n"
  "  --config FILE     read settings from an INI file\n"
  "  --set KEY=VALUE   set one setting, e.g. --set pretrain.epochs=2\n\n"
  "The vocabulary is model.vocab, or DIR/vocab.txt when that is empty; the shards\n"
  "must have been made with it, and with data.seq_length and\n"
  "data.max_predictions. See 'bertrain help config' for every key.\n",
  run, 1,
};
