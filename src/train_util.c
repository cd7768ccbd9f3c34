#define _POSIX_C_SOURCE 200809L
#include "train_util.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"
#include "run_files.h"
#include "util.h"
#include "weights_h5.h"

#ifdef BERTRAIN_HAVE_CUDA
#include "cuda_info.h"
#include "ops_cuda.h"
#endif

const char *train_run_dir(const Config *c, int argc, char **argv, char *buf, size_t n) {
  if (c->run.dir[0]) {
    snprintf(buf, n, "%s", c->run.dir);
    return buf;
  }
  const char *last = NULL;
  for (int i = 1; i + 1 < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (strcmp(argv[i], "--config") == 0) last = argv[++i];
  }
  if (!last) {
    snprintf(buf, n, "runs/default");
    return buf;
  }
  char stem[256];
  path_stem(stem, sizeof stem, last);
  path_fmt(buf, n, "runs/%s", stem);
  return buf;
}

#ifdef BERTRAIN_HAVE_CUDA
/* Ranks with a usable GPU, summed over all ranks (1 without MPI). */
static int ranks_with_gpu(int mine) {
  double n = mine;
  comm_allreduce_sum_f64(&n, 1);
  return (int)n;
}

/* This rank's GPU (local rank % devices), the CUDA ops and NCCL for the
 * gradients; NULL with the reason in msg when no device is usable. Every
 * rank calls it at the same point (it is collective): with "auto" either
 * all ranks take their GPU or all run on the CPU, so they never mix
 * backends (or NCCL and MPI all-reduces). */
static const Ops *cuda_ops(int required, char *msg, size_t n) {
  static int dev = -2;
  static char reason[256];
  if (dev == -2) dev = cuda_use_device(comm_info().local_rank, reason, sizeof reason);
  if (dev < 0 && required) die("device cuda (rank %d): %s", comm_info().rank, reason);
  int with = ranks_with_gpu(dev >= 0), size = comm_info().size;
  if (with < size) {
    if (dev < 0) snprintf(msg, n, "%s", reason);
    else snprintf(msg, n, "%d of %d ranks have no usable GPU", size - with, size);
    return NULL;
  }
  comm_use_nccl();
  return ops_cuda();
}
#endif

const Ops *select_ops(const char *device, int threads) {
  int want_cuda = strcmp(device, "cuda") == 0, any = strcmp(device, "auto") == 0;
  if (!want_cuda && !any && strcmp(device, "cpu") != 0)
    die("device '%s': expected cpu, cuda or auto", device);
  if (want_cuda || any) {
#ifdef BERTRAIN_HAVE_CUDA
    char msg[256] = "";
    const Ops *ops = cuda_ops(want_cuda, msg, sizeof msg);
    if (ops) return ops;
    if (want_cuda) die("device cuda (rank %d): %s", comm_info().rank, msg);
    info("device auto: no usable GPU (%s); running on the CPU", msg);
#else
    if (want_cuda)
      die("device cuda: this bertrain was built without CUDA (cmake -DBERTRAIN_CUDA=ON, with the "
          "CUDA toolkit installed)");
#endif
  }
  const Ops *ops = ops_cpu();
  if (threads > 0) ops->set_threads(threads);
  return ops;
}

const Ops *train_ops(const Config *c) {
  const Ops *ops = select_ops(c->run.device, c->run.threads);
  ops->set_tf32(c->run.tf32);
  ops->set_bf16(strcmp(c->run.precision, "bf16") == 0);
  return ops;
}

int warmup_steps(double proportion, int total) {
  double w = floor(proportion * total + 0.5);
  return w > total ? total : (int)w;
}

double lr_at(int s, int total, int warmup, double peak) {
  if (s <= warmup) return peak * s / warmup;
  if (s > total) return 0;
  return peak * (double)(total - s + 1) / (double)(total - warmup);
}

FILE *metrics_open(const char *path, const char *header) {
  FILE *f = fopen(path, "w");
  if (!f) die("cannot create %s: %s", path, strerror(errno));
  fprintf(f, "%s\n", header);
  fflush(f);
  return f;
}

void metrics_close(FILE *f, const char *path) {
  if (fflush(f) != 0 || ferror(f)) die("cannot write %s: %s", path, strerror(errno));
  if (fclose(f) != 0) die("cannot write %s: %s", path, strerror(errno));
}

void train_override(Config *c, const char *key, const char *value) {
  size_t n = strlen(key) + strlen(value) + 2;
  char *a = xmalloc(n);
  snprintf(a, n, "%s=%s", key, value);
  config_set(c, a);
  free(a);
}

/* Loads the configuration text stored in ckpt over c (through a temporary
 * file, since the INI reader reads files). */
static void load_stored_config(Config *c, const char *ckpt) {
  char *text = weights_read_config_text(ckpt);
  const char *tmpdir = getenv("TMPDIR");
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/bertrain-config-XXXXXX", tmpdir && tmpdir[0] ? tmpdir : "/tmp");
  int fd = mkstemp(path);
  if (fd < 0) die("cannot create a temporary file in %s: %s", tmpdir ? tmpdir : "/tmp", strerror(errno));
  tmpfile_register(path);
  size_t len = strlen(text);
  if (write(fd, text, len) != (ssize_t)len || close(fd) != 0)
    die("cannot write the temporary file %s: %s", path, strerror(errno));
  config_load_file(c, path);
  unlink(path);
  tmpfile_forget(path);
  free(text);
}

/* cli_parse's order: every --config first, then each --set. */
static void apply_user_settings(Config *c, int argc, char **argv) {
  for (int i = 1; i + 1 < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (strcmp(argv[i], "--config") == 0) config_load_file(c, argv[++i]);
  }
  for (int i = 1; i + 1 < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (strcmp(argv[i], "--set") == 0) config_set(c, argv[++i]);
  }
}

typedef struct ArchKey {
  const char *name;
  int (*get)(const Config *c);
} ArchKey;

static int get_layers(const Config *c) { return c->model.layers; }
static int get_hidden(const Config *c) { return c->model.hidden; }
static int get_heads(const Config *c) { return c->model.heads; }
static int get_inter(const Config *c) { return c->model.intermediate; }
static int get_maxpos(const Config *c) { return c->model.max_position; }
static int get_types(const Config *c) { return c->model.type_vocab; }
static int get_lower(const Config *c) { return c->model.lowercase; }

void train_config_from_checkpoint(const char *ckpt, int argc, char **argv, Config *cfg) {
  static const ArchKey KEYS[] = {
    {"model.layers", get_layers},       {"model.hidden", get_hidden},
    {"model.heads", get_heads},         {"model.intermediate", get_inter},
    {"model.max_position", get_maxpos}, {"model.type_vocab", get_types},
    {"model.lowercase", get_lower},
  };
  Config file;
  config_defaults(&file);
  load_stored_config(&file, ckpt);
  /* The attributes are what the tensors were written with. */
  weights_read_model_config(ckpt, &file);
  info("%s: the settings stored in the checkpoint are the defaults", ckpt);
  config_defaults(cfg);
  load_stored_config(cfg, ckpt);
  weights_read_model_config(ckpt, cfg);
  /* Where and how fast the checkpoint was made says nothing about this machine. */
  Config d;
  config_defaults(&d);
  cfg->run.threads = d.run.threads;
  train_override(cfg, "run.device", d.run.device);
  config_free(&d);
  apply_user_settings(cfg, argc, argv);
  char msg[2048] = "";
  size_t used = 0;
  for (size_t i = 0; i < ARRAY_LEN(KEYS); i++) {
    int have = KEYS[i].get(&file), want = KEYS[i].get(cfg);
    if (have != want && used < sizeof msg)
      used += (size_t)snprintf(msg + used, sizeof msg - used, "%s%s is %d in the checkpoint, %d in "
                               "the configuration", used ? "; " : "", KEYS[i].name, have, want);
  }
  if (used)
    die("%s: the checkpoint does not match the configuration given: %s (the model's shape comes "
        "from the checkpoint; drop these settings)", ckpt, msg);
  /* model.vocab stays as the user gave it, for train_vocab_for_checkpoint. */
  if (strcmp(file.model.vocab, cfg->model.vocab) == 0) train_override(cfg, "model.vocab", "");
  config_free(&file);
}

Vocab *train_vocab_for_checkpoint(const char *ckpt, const Config *cfg) {
  Vocab *embedded = weights_read_vocab(ckpt);
  if (!cfg->model.vocab[0]) return embedded;
  Vocab *v = vocab_load(cfg->model.vocab);
  if (v->size != embedded->size)
    die("%s: the vocabulary has %d tokens but the checkpoint %s was trained with %d",
        cfg->model.vocab, v->size, ckpt, embedded->size);
  if (v->hash != embedded->hash)
    die("%s: the vocabulary differs from the one in the checkpoint %s (same size %d, "
        "different tokens)", cfg->model.vocab, ckpt, v->size);
  vocab_free(embedded);
  return v;
}

void train_checkpoint_args(const Command *cmd, const char *from_hint, int argc, char **argv,
                           CheckpointArgs *a, Config *cfg) {
  *a = (CheckpointArgs){0};
  CliOpt opts[] = {
    {"checkpoint", OPT_STRING, &a->ckpt}, {"task", OPT_STRING, &a->task},
    {"data", OPT_STRING, &a->data},       {"out", OPT_STRING, &a->out},
  };
  cli_parse(cmd, argc, argv, opts, (int)ARRAY_LEN(opts), cfg);
  if (!a->ckpt)
    die("%s: no checkpoint: pass --checkpoint FILE.h5 (from '%s')", cmd->name, from_hint);
  config_free(cfg);
  train_config_from_checkpoint(a->ckpt, argc, argv, cfg);
}
