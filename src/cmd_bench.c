/* bertrain bench: full data-parallel pre-training steps (forward, backward,
 * gradient all-reduce, clipping, optimizer) on synthetic data or shards,
 * timed in their parts. FLOPs are counted analytically by model_train_flops
 * (model.h). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch_loader.h"
#include "comm.h"
#include "grad_buckets.h"
#include "commands.h"
#include "model.h"
#include "ops_profile.h"
#include "prefetch.h"
#include "rng.h"
#include "train_util.h"
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

typedef struct BenchTimes {
  double wait, compute, comm, imbalance; /* seconds over the timed steps */
} BenchTimes;

typedef struct Bench {
  Model *m;
  const Ops *ops;
  ModelOptKind kind;
  CommInfo ci;
  int batch;         /* per rank */
  double bucket_mb;  /* > 0: overlap the all-reduce with the backward */
  Prefetcher *pf;    /* NULL: the synthetic batch */
  const Batch *synth;
  BenchTimes t;
  unsigned long long launches0; /* the device's launch count when timing began */
} Bench;

static void add_time(double *acc, double t0, int timed) {
  if (timed) *acc += now_seconds() - t0;
}

/* Stream position of this rank's rows of step s (1-based), as pretrain
 * splits a global batch of batch x ranks. */
static uint64_t rows_of(const Bench *b, int s) {
  return ((uint64_t)s - 1) * (uint64_t)b->batch * (uint64_t)b->ci.size +
         (uint64_t)b->ci.rank * (uint64_t)b->batch;
}

/* One data-parallel training step, timed in its parts when timed; returns
 * its loss (this rank's). */
static double train_step(Bench *b, int step, int last, int timed) {
  Stats st;
  double t0 = now_seconds();
  Batch batch;
  if (b->pf) {
    const LoadedBatch *lb = prefetch_take(b->pf, NULL);
    if (step < last) prefetch_request(b->pf, rows_of(b, step + 1), b->batch);
    Batch from_file = {lb->n, lb->S, lb->P, lb->input_ids, lb->segment_ids, lb->input_mask,
                       lb->mlm_positions, lb->mlm_ids, lb->nsp_labels};
    batch = from_file;
  } else {
    batch = *b->synth;
  }
  add_time(&b->t.wait, t0, timed);
  t0 = now_seconds();
  model_zero_grad(b->m);
  DropoutCtx d = {1, (uint32_t)step, (uint64_t)b->ci.rank * (uint64_t)b->batch};
  int overlap = b->bucket_mb > 0 && b->ci.size > 1;
  GradBuckets gb;
  if (overlap) grad_buckets_begin(&gb, b->m, b->bucket_mb);
  model_forward_backward(b->m, &batch, 1, d, 1.0f / (float)b->ci.size, &st);
  b->ops->sync();
  add_time(&b->t.compute, t0, timed);
  if (overlap) {
    /* What is left of the all-reduce after the backward (no barrier: the
     * wait for the slowest rank is part of it then). */
    t0 = now_seconds();
    grad_buckets_end(&gb, b->m);
  } else {
    /* Timed apart, so that the all-reduce figure is the transfer alone. */
    t0 = now_seconds();
    comm_barrier();
    add_time(&b->t.imbalance, t0, timed);
    t0 = now_seconds();
    comm_allreduce_sum_f32(model_grads_dev(b->m), model_buffer_size(b->m));
  }
  b->ops->sync();
  add_time(&b->t.comm, t0, timed);
  t0 = now_seconds();
  OptParams o = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-6f,
                 .weight_decay = 0.01f, .grad_scale = 1.0f, .step = step, .bias_correction = 1};
  model_step_clipped(b->m, b->kind, &o, 1.0f);
  b->ops->sync();
  add_time(&b->t.compute, t0, timed);
  return st.loss;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* --data: the shards' sizes and vocabulary size stand unless given. */
static BatchLoader *open_data(const char *dir, int *seq, int *pred, int *vocab) {
  BatchLoader *l = loader_open(dir, NULL, 1, (size_t)1 << 30);
  int S = loader_seq_length(l), P = loader_max_predictions(l);
  if ((*seq >= 0 && *seq != S) || (*pred >= 0 && *pred != P))
    die("bench: the shards of %s hold %d tokens and %d predictions per sequence; drop --seq "
        "and --pred or make them match", dir, S, P);
  *seq = S;
  *pred = P;
  const Shard *s = loader_shard(l, 0);
  if (*vocab < 0) *vocab = s->attrs.present ? (int)s->attrs.vocab_size : 30522;
  return l;
}

/* 0 threads: OMP_NUM_THREADS if set, else the node's cores shared among its ranks. */
static void choose_threads(const Ops *ops, int threads, const CommInfo *ci) {
  if (threads == 0 && !getenv("OMP_NUM_THREADS") && ci->local_size > 1) {
    threads = omp_get_num_procs() / ci->local_size;
    if (threads < 1) threads = 1;
  }
  if (threads > 0) ops->set_threads(threads);
}

/* Model FLOP/s per rank as TFLOP/s, MFU against the device's bf16 peak, and
 * the peak memory the backend held (rank 0's device). */
static void report_device(const Bench *b, double step_ms, double flops, int steps) {
  DeviceInfo di;
  b->ops->device_info(&di);
  if (di.launches)
    printf("bench: %.0f kernel launches and library products per step\n",
           (double)(di.launches - b->launches0) / steps);
  double tflops = flops / (step_ms * 1e-3) / 1e12;
  printf("bench: per rank %.2f model TFLOP/s", tflops);
  if (di.peak_bf16_flops > 0)
    printf(", MFU %.1f%% of the bf16 peak %.0f TFLOP/s (%s)", 100 * tflops * 1e12 / di.peak_bf16_flops,
           di.peak_bf16_flops / 1e12, di.peak_basis);
  printf("\n");
  if (di.peak_bytes)
    printf("bench: peak device memory %.1f MiB (the backend's buffers; library workspaces not "
           "counted)\n", di.peak_bytes / 1048576.0);
}

static void report(const Bench *b, double *ms, int steps, double flops, double loss0,
                   double loss) {
  /* Each part and the step time averaged over the ranks. */
  double sums[5] = {b->t.wait, b->t.compute, b->t.comm, b->t.imbalance, 0};
  double total = 0;
  for (int i = 0; i < steps; i++) total += ms[i];
  sums[4] = total;
  comm_allreduce_sum_f64(sums, 5);
  qsort(ms, (size_t)steps, sizeof *ms, cmp_double);
  if (b->ci.rank != 0) return;
  int R = b->ci.size;
  double mean = sums[4] / R / steps, median = ms[steps / 2];
  double wait = sums[0] / R / steps * 1e3, comp = sums[1] / R / steps * 1e3,
         comm = sums[2] / R / steps * 1e3, imbalance = sums[3] / R / steps * 1e3;
  printf("bench: loss %.4f -> %.4f (rank 0)\n", loss0, loss);
  printf("bench: %.1f ms/step (rank 0: median %.1f, min %.1f), %.1f sequences/s over %d rank%s, "
         "%.2f GFLOP/s\n", mean, median, ms[0], (double)b->batch * R * 1e3 / mean, R,
         R == 1 ? "" : "s", flops * R / (mean * 1e-3) / 1e9);
  printf("bench: per step %.2f ms computing (%.1f%%), %.2f ms in the all-reduce (%.1f%%), "
         "%.2f ms waiting for the slowest rank (%.1f%%), %.2f ms waiting for data (%.1f%%)\n",
         comp, 100 * comp / mean, comm, 100 * comm / mean, imbalance, 100 * imbalance / mean,
         wait, 100 * wait / mean);
  report_device(b, mean, flops, steps);
}

/* The profile and the launch count start from here (after the warm-up). */
static void start_counting(Bench *b, int profile) {
  if (profile) ops_profile_reset();
  DeviceInfo di;
  b->ops->device_info(&di);
  b->launches0 = di.launches;
}

static int run(int argc, char **argv) {
  Config cfg;
  const char *device = "cpu", *opt_name = "adamw", *data = NULL, *bucket = "0", *precision = "fp32";
  int batch = 32, seq = -1, pred = -1, steps = 10, warmup = 2, vocab = -1, threads = 0, tf32 = 0;
  int profile = 0;
  CliOpt opts[] = {
    {"device", OPT_STRING, &device},   {"batch", OPT_INT, &batch},
    {"seq", OPT_INT, &seq},            {"pred", OPT_INT, &pred},
    {"steps", OPT_INT, &steps},        {"warmup", OPT_INT, &warmup},
    {"vocab-size", OPT_INT, &vocab},   {"threads", OPT_INT, &threads},
    {"optimizer", OPT_STRING, &opt_name}, {"data", OPT_STRING, &data},
    {"bucket-mb", OPT_STRING, &bucket}, {"tf32", OPT_FLAG, &tf32},
    {"precision", OPT_STRING, &precision}, {"profile", OPT_FLAG, &profile},
  };
  int first = cli_parse(&CMD_BENCH, argc, argv, opts, (int)ARRAY_LEN(opts), &cfg);
  if (first < argc) die("bench: unexpected argument '%s'", argv[first]);
  ModelOptKind kind = OPT_ADAMW;
  if (strcmp(opt_name, "lamb") == 0) kind = OPT_LAMB;
  else if (strcmp(opt_name, "adamw") != 0)
    die("bench: --optimizer must be adamw or lamb (got '%s')", opt_name);
  Bench b = {.kind = kind, .ci = comm_init(), .batch = batch};
  int bf16 = strcmp(precision, "bf16") == 0;
  if (!bf16 && strcmp(precision, "fp32") != 0)
    die("bench: --precision must be fp32 or bf16 (got '%s')", precision);
  b.ops = select_ops(device, 0);
  if (profile) b.ops = ops_profiled(b.ops, bf16 ? 2 : 4); /* bf16: activations stored as bf16 */
  b.ops->set_tf32(tf32);
  if (bf16) b.ops->set_bf16(1);
  if (parse_double(bucket, &b.bucket_mb) != 0 || !(b.bucket_mb >= 0))
    die("bench: --bucket-mb must be a number >= 0 (got '%s')", bucket);
  BatchLoader *loader = data ? open_data(data, &seq, &pred, &vocab) : NULL;
  if (seq < 0) seq = cfg.data.seq_length;
  if (pred < 0) pred = cfg.data.max_predictions;
  if (vocab < 0) vocab = 30522;
  if (batch < 1 || seq < 2 || pred < 1 || pred >= seq || steps < 1 || warmup < 0 || vocab < 1 ||
      threads < 0)
    die("bench: need --batch >= 1, --seq >= 2, 1 <= --pred < --seq, --steps >= 1, "
        "--warmup >= 0, --vocab-size >= 1, --threads >= 0");

  choose_threads(b.ops, threads, &b.ci);
  ModelShape shape = model_shape(&cfg, vocab, 0, 1);
  ParamTable *t = params_build(&shape);
  ModelOpts mo = {MODEL_PRETRAIN, batch, seq, pred, (float)cfg.model.dropout,
                  (float)cfg.model.attention_dropout, 1, 0};
  b.m = model_new(b.ops, t, &mo);
  model_init_params(b.m, 42, cfg.model.initializer_range, 0);
  BenchData d;
  memset(&d, 0, sizeof d);
  if (loader) {
    b.pf = prefetch_new(loader, batch);
    prefetch_request(b.pf, rows_of(&b, 1), batch);
  } else {
    synth(&d, batch, seq, pred, vocab, 7 + (uint64_t)b.ci.rank);
    b.synth = &d.b;
  }

  double flops = model_train_flops(&shape, MODEL_PRETRAIN, batch, seq, pred);
  if (b.ci.rank == 0) {
    int nt = omp_get_max_threads();
    DeviceInfo di;
    b.ops->device_info(&di);
    printf("bench: device %s: %s\n", b.ops->name, di.name);
    printf("bench: device %s, %d rank%s x %d thread%s; model L=%d H=%d heads=%d I=%d vocab %d, "
           "%.2fM parameters\n", b.ops->name, b.ci.size, b.ci.size == 1 ? "" : "s", nt,
           nt == 1 ? "" : "s", shape.layers, shape.hidden, shape.heads, shape.intermediate, vocab,
           params_count(t) / 1e6);
    printf("bench: batch %d x %d tokens per rank (%d in all), %d predictions per sequence, %s, "
           "dropout %g/%g, data %s; %d warm-up + %d timed steps; %.2f GFLOP per step and rank\n",
           batch, seq, batch * b.ci.size, pred, kind == OPT_LAMB ? "LAMB" : "AdamW",
           cfg.model.dropout, cfg.model.attention_dropout, data ? data : "synthetic", warmup,
           steps, flops / 1e9);
    fflush(stdout);
  }

  double loss0 = 0, loss = 0, *ms = xmalloc((size_t)steps * sizeof *ms);
  start_counting(&b, profile); /* not the model's set-up */
  for (int s = 1; s <= warmup + steps; s++) {
    comm_barrier(); /* the ranks start each step together: the parts are comparable */
    b.ops->mark(0);
    loss = train_step(&b, s, warmup + steps, s > warmup);
    b.ops->mark(1);
    if (s == 1) loss0 = loss;
    if (s == warmup) start_counting(&b, profile);
    if (s > warmup) ms[s - warmup - 1] = b.ops->mark_ms(0, 1);
    if (!isfinite(loss)) die("bench: the loss is not finite at step %d", s);
  }
  report(&b, ms, steps, flops, loss0, loss);
  if (profile && b.ci.rank == 0) ops_profile_print(stdout, steps);

  free(ms);
  prefetch_free(b.pf);
  loader_close(loader);
  if (!loader) synth_free(&d);
  model_free(b.m);
  params_free(t);
  config_free(&cfg);
  return 0;
}

const Command CMD_BENCH = {
  "bench", "time full pre-training steps on synthetic data or shards, on 1 or more MPI ranks",
  "usage: bertrain bench --config MODEL.ini [--device cpu|cuda|auto] [--batch N] [--seq N] [--pred N]\n"
  "                      [--steps N] [--warmup N] [--vocab-size N] [--threads N]\n"
  "                      [--optimizer adamw|lamb] [--data DIR] [--bucket-mb X] [--tf32]\n"
  "                      [--precision fp32|bf16] [--profile]\n"
  "       mpirun -np R bertrain bench ...   (R data-parallel ranks)\n\n"
  "Builds the model of the [model] section with random weights and times full\n"
  "pre-training steps as 'bertrain pretrain' runs them on each rank: forward and\n"
  "backward of one batch, the all-reduce of the gradients over the ranks, gradient\n"
  "clipping at norm 1 and the optimizer. The batch is one synthetic batch of\n"
  "random tokens, or with --data the shards' samples in pretrain's order, read on\n"
  "a second thread one step ahead. Steps are timed on the device's clock (CUDA\n"
  "events on GPUs). Prints ms/step, sequences/s over all ranks and GFLOP/s, the\n"
  "step split into computing, the all-reduce alone, waiting for the slowest rank\n"
  "(a barrier before the all-reduce, timed apart) and waiting for data (averaged\n"
  "over the ranks), model TFLOP/s per rank with the MFU against the GPU's dense\n"
  "bf16 peak, and the peak device memory of the backend's buffers. FLOPs count\n"
  "the matrix products: per sequence 3 x (forward), forward =\n"
  "S L 2 (4H^2 + 2HI) + 4 L S^2 H + 2H^2 + 4H + P (2H^2 + 2HV).\n\n"
  "  --device D         cpu (OpenMP + OpenBLAS), cuda (this rank's GPU; cuBLAS +\n"
  "                     kernels/) or auto (cuda when every rank has a usable GPU)\n"
  "  --batch N          sequences per step and rank (default 32)\n"
  "  --seq N            tokens per sequence (default data.seq_length; the shards' with --data)\n"
  "  --pred N           masked positions per sequence (default data.max_predictions)\n"
  "  --steps N          timed steps (default 10)\n"
  "  --warmup N         untimed steps first (default 2)\n"
  "  --vocab-size N     vocabulary size (default 30522, BERT's uncased vocabulary;\n"
  "                     with --data the shards' vocabulary size)\n"
  "  --threads N        CPU threads per rank (default OMP_NUM_THREADS, else the\n"
  "                     node's cores shared among its ranks)\n"
  "  --tf32             let matrix products use TF32 on GPUs (run.tf32)\n"
  "  --precision P      fp32 (default) or bf16: activations stored as bf16, matrix\n"
  "                     products on bf16 with fp32 accumulation, weights and\n"
  "                     optimizer state fp32 (run.precision; GPUs only)\n"
  "  --bucket-mb X      all-reduce the gradients in buckets of at least X MB\n"
  "                     during the backward (pretrain.allreduce_bucket_mb);\n"
  "                     0 (default): one all-reduce after it\n"
  "  --optimizer NAME   adamw (default) or lamb\n"
  "  --data DIR         read the batches from DIR/shard-*.h5 instead\n"
  "  --profile          also print the time of every op and shape per step (the\n"
  "                     device is synchronised around each op, which slows the\n"
  "                     step itself; use it to see where the time goes)\n",
  run, 1,
};
