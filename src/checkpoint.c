#define _POSIX_C_SOURCE 200809L
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"
#include "weights_h5.h"

/* ---- the /train datasets ---- */

typedef enum { F_I64, F_U64, F_F64 } FieldType;

typedef struct Field {
  const char *name;
  FieldType type;
  size_t offset;
} Field;

#define TS(f) offsetof(TrainState, f)
static const Field FIELDS[] = {
  {"step", F_I64, TS(step)},
  {"opt_step", F_I64, TS(opt_step)},
  {"skipped_steps", F_I64, TS(skipped)},
  {"epoch", F_I64, TS(epoch)},
  {"steps_per_epoch", F_I64, TS(steps_per_epoch)},
  {"total_steps", F_I64, TS(total_steps)},
  {"warmup_steps", F_I64, TS(warmup_steps)},
  {"batch_size", F_I64, TS(batch_size)},
  {"data_pass", F_U64, TS(data_pass)},
  {"data_position", F_U64, TS(data_position)},
  {"data_samples", F_U64, TS(data_samples)},
  {"seed", F_U64, TS(seed)},
  {"world_size", F_I64, TS(world_size)},
  {"wall_seconds", F_F64, TS(wall_seconds)},
};

static hid_t file_type(FieldType t) {
  return t == F_I64 ? H5T_STD_I64LE : t == F_U64 ? H5T_STD_U64LE : H5T_IEEE_F64LE;
}

static hid_t mem_type(FieldType t) {
  return t == F_I64 ? H5T_NATIVE_INT64 : t == F_U64 ? H5T_NATIVE_UINT64 : H5T_NATIVE_DOUBLE;
}

static void h5check(herr_t rc, const char *where, const char *name, const char *what) {
  if (rc < 0) die("%s: %s '%s' failed", where, what, name);
}

static hid_t h5id(hid_t id, const char *where, const char *name, const char *what) {
  if (id < 0) die("%s: %s '%s' failed", where, what, name);
  return id;
}

/* One value as a one-element chunked dataset, so fletcher32 covers it. */
static void write_value(hid_t g, const char *where, const char *name, FieldType t,
                        const void *value) {
  hsize_t one = 1;
  hid_t space = h5id(H5Screate_simple(1, &one, NULL), where, name, "creating the dataspace of");
  hid_t dcpl = h5id(H5Pcreate(H5P_DATASET_CREATE), where, name, "creating the properties of");
  h5check(H5Pset_chunk(dcpl, 1, &one), where, name, "chunking");
  h5check(H5Pset_fletcher32(dcpl), where, name, "setting the checksum of");
  hid_t ds = h5id(H5Dcreate2(g, name, file_type(t), space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
                  where, name, "creating dataset");
  h5check(H5Dwrite(ds, mem_type(t), H5S_ALL, H5S_ALL, H5P_DEFAULT, value), where, name,
          "writing dataset");
  h5check(H5Dclose(ds), where, name, "closing dataset");
  h5check(H5Pclose(dcpl), where, name, "closing the properties of");
  h5check(H5Sclose(space), where, name, "closing the dataspace of");
}

static void read_value(hid_t g, const char *where, const char *name, FieldType t, void *out) {
  htri_t e = H5Lexists(g, name, H5P_DEFAULT);
  if (e <= 0) die("%s: dataset '%s' missing (not a complete bertrain checkpoint)", where, name);
  hid_t ds = h5id(H5Dopen2(g, name, H5P_DEFAULT), where, name, "opening dataset");
  hid_t space = h5id(H5Dget_space(ds), where, name, "reading the shape of");
  if (H5Sget_simple_extent_ndims(space) != 1 || H5Sget_simple_extent_npoints(space) != 1)
    die("%s: dataset '%s' should hold one value", where, name);
  if (H5Dread(ds, mem_type(t), H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
    die("%s: cannot read dataset '%s' (corrupt file: checksum or data error)", where, name);
  h5check(H5Sclose(space), where, name, "closing the dataspace of");
  h5check(H5Dclose(ds), where, name, "closing dataset");
}

static void write_state(hid_t f, const char *file, const TrainState *st) {
  char where[PATH_MAX + 16];
  snprintf(where, sizeof where, "%s:/train", file);
  hid_t g = H5Gcreate2(f, "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) die("%s: cannot create group /train", file);
  int64_t version = CKPT_FORMAT_VERSION;
  write_value(g, where, "format_version", F_I64, &version);
  for (size_t i = 0; i < ARRAY_LEN(FIELDS); i++)
    write_value(g, where, FIELDS[i].name, FIELDS[i].type, (const char *)st + FIELDS[i].offset);
  h5check(H5Gclose(g), where, "/train", "closing group");
}

static hid_t open_group(hid_t f, const char *file, const char *name) {
  htri_t e = H5Lexists(f, name, H5P_DEFAULT);
  if (e <= 0) die("%s: group '/%s' missing (not a complete bertrain checkpoint)", file, name);
  hid_t g = H5Gopen2(f, name, H5P_DEFAULT);
  if (g < 0) die("%s: cannot open group '/%s' (corrupt file)", file, name);
  return g;
}

static void read_state(hid_t f, const char *file, TrainState *st) {
  char where[PATH_MAX + 16];
  snprintf(where, sizeof where, "%s:/train", file);
  hid_t g = open_group(f, file, "train");
  int64_t version;
  read_value(g, where, "format_version", F_I64, &version);
  if (version != CKPT_FORMAT_VERSION)
    die("%s: checkpoint format version %lld; this bertrain reads version %d", where,
        (long long)version, CKPT_FORMAT_VERSION);
  for (size_t i = 0; i < ARRAY_LEN(FIELDS); i++)
    read_value(g, where, FIELDS[i].name, FIELDS[i].type, (char *)st + FIELDS[i].offset);
  h5check(H5Gclose(g), where, "/train", "closing group");
  if (st->step < 0 || st->steps_per_epoch < 1 || st->batch_size < 1 || st->data_samples < 1 ||
      st->data_position >= st->data_samples || st->world_size < 1 || st->opt_step > st->step)
    die("%s: inconsistent training state (step %lld, data position %llu of %llu)", where,
        (long long)st->step, (unsigned long long)st->data_position,
        (unsigned long long)st->data_samples);
}

/* ---- writing ---- */

/* For the tests of a crash during a write: BERTRAIN_TEST_CKPT_PAUSE=SECONDS
 * sleeps with the parameters written and the rest not yet. */
static void test_pause(void) {
  const char *s = getenv("BERTRAIN_TEST_CKPT_PAUSE");
  double sec;
  if (!s || parse_double(s, &sec) != 0 || sec <= 0) return;
  struct timespec ts = {(time_t)sec, (long)((sec - (double)(time_t)sec) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static void write_moments(hid_t f, const char *file, const ParamTable *t, const float *m,
                          const float *v) {
  char where[PATH_MAX + 32];
  hid_t g = H5Gcreate2(f, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) die("%s: cannot create group /optimizer", file);
  const char *names[2] = {"m", "v"};
  const float *bufs[2] = {m, v};
  for (int i = 0; i < 2; i++) {
    snprintf(where, sizeof where, "%s:/optimizer/%s", file, names[i]);
    hid_t gi = H5Gcreate2(g, names[i], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (gi < 0) die("%s: cannot create the group", where);
    weights_write_tensors(gi, where, t, bufs[i]);
    h5check(H5Gclose(gi), where, names[i], "closing group");
  }
  h5check(H5Gclose(g), file, "/optimizer", "closing group");
}

/* The rename is only durable once the directory is flushed too. */
static void sync_dir_of(const char *path) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  else snprintf(dir, sizeof dir, ".");
  int fd = open(dir, O_RDONLY);
  if (fd < 0) die("cannot open directory %s to flush it: %s", dir, strerror(errno));
  if (fsync(fd) != 0 && errno != EINVAL)
    die("cannot flush directory %s: %s", dir, strerror(errno));
  close(fd);
}

void ckpt_write(const char *path, const ParamTable *t, const float *params, const float *m,
                const float *v, const Config *cfg, const Vocab *vocab, const TrainState *st) {
  WeightsFile *w = weights_create(path, t, params, cfg, vocab);
  test_pause();
  write_moments(w->file, w->tmp, t, m, v);
  write_state(w->file, w->tmp, st);
  weights_commit(w);
  sync_dir_of(path);
}

/* ---- reading, with damage reported rather than fatal ---- */

/* Closes what a failed read left open in file f. */
static void close_all(hid_t f) {
  if (f < 0) return;
  ssize_t n = H5Fget_obj_count(f, H5F_OBJ_DATASET | H5F_OBJ_GROUP | H5F_OBJ_DATATYPE |
                                      H5F_OBJ_ATTR | H5F_OBJ_LOCAL);
  if (n > 0) {
    hid_t *ids = xmalloc((size_t)n * sizeof *ids);
    n = H5Fget_obj_ids(f, H5F_OBJ_DATASET | H5F_OBJ_GROUP | H5F_OBJ_DATATYPE | H5F_OBJ_ATTR |
                              H5F_OBJ_LOCAL, (size_t)n, ids);
    for (ssize_t i = 0; i < n; i++) {
      if (H5Iget_type(ids[i]) == H5I_ATTR) H5Aclose(ids[i]);
      else H5Oclose(ids[i]);
    }
    free(ids);
  }
  H5Fclose(f);
}

typedef struct ReadJob {
  const char *path;
  const ParamTable *t;
  float *params, *m, *v;
  TrainState *st;
  ModelShape shape;
  char *config_text;
  Vocab *vocab;
  hid_t f; /* open file, for cleaning up after a failure */
  int full;
} ReadJob;

static void read_moments(ReadJob *j) {
  char where[PATH_MAX + 32];
  hid_t g = open_group(j->f, j->path, "optimizer");
  const char *names[2] = {"m", "v"};
  float *bufs[2] = {j->m, j->v};
  for (int i = 0; i < 2; i++) {
    snprintf(where, sizeof where, "%s:/optimizer/%s", j->path, names[i]);
    char group[16];
    snprintf(group, sizeof group, "optimizer/%s", names[i]);
    hid_t gi = open_group(j->f, j->path, group);
    weights_read_tensors(gi, where, j->t, bufs[i], 0);
    h5check(H5Gclose(gi), where, names[i], "closing group");
  }
  h5check(H5Gclose(g), j->path, "/optimizer", "closing group");
}

/* Phase one reads the small things (shape, settings, state); the full read
 * adds every tensor, both moments and the vocabulary. */
static void read_job(ReadJob *j) {
  j->f = -1;
  if (!j->full) {
    weights_read_shape(j->path, &j->shape);
    j->config_text = weights_read_config_text(j->path);
    j->f = weights_open(j->path);
    read_state(j->f, j->path, j->st);
  } else {
    j->vocab = weights_read_vocab(j->path);
    j->f = weights_open(j->path);
    weights_read_tensors(j->f, j->path, j->t, j->params, 0);
    read_moments(j);
  }
  if (H5Fclose(j->f) < 0) die("%s: cannot close the file", j->path);
  j->f = -1;
}

static void read_job_fn(void *arg) { read_job(arg); }

/* read_job with die() caught: a damaged file is reported, not fatal. */
static int attempt(ReadJob *j, char *why, size_t n) {
  H5E_auto2_t fn;
  void *data;
  H5Eget_auto2(H5E_DEFAULT, &fn, &data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* the reason goes into why */
  int rc = die_catch(read_job_fn, j, why, n);
  H5Eset_auto2(H5E_DEFAULT, fn, data);
  if (rc != 0) {
    close_all(j->f);
    j->f = -1;
  }
  return rc;
}

/* ---- does the checkpoint belong to this run? ---- */

static void check_shape(const char *path, const ModelShape *have, const ModelShape *want) {
  char msg[1024] = "";
  size_t used = 0;
#define SHAPE_KEY(field, key)                                                                  \
  if (have->field != want->field && used < sizeof msg)                                         \
    used += (size_t)snprintf(msg + used, sizeof msg - used, "%s%s is %d in the checkpoint, %d " \
                             "in use", used ? "; " : "", key, have->field, want->field);
  SHAPE_KEY(vocab, "the vocabulary size")
  SHAPE_KEY(layers, "model.layers")
  SHAPE_KEY(hidden, "model.hidden")
  SHAPE_KEY(heads, "model.heads")
  SHAPE_KEY(intermediate, "model.intermediate")
  SHAPE_KEY(max_position, "model.max_position")
  SHAPE_KEY(type_vocab, "model.type_vocab")
#undef SHAPE_KEY
  if (!have->pretraining && used < sizeof msg)
    used += (size_t)snprintf(msg + used, sizeof msg - used, "%sit has no pre-training heads",
                             used ? "; " : "");
  if (used) die("%s: the checkpoint does not fit the model in use: %s", path, msg);
}

/* The value of section.key in INI text as config_write writes it; 0 when
 * absent. */
static int ini_value(const char *text, const char *section, const char *key, char *out,
                     size_t n) {
  char cur[64] = "";
  size_t klen = strlen(key);
  for (const char *p = text; *p;) {
    const char *end = strchr(p, '\n');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len > 2 && p[0] == '[' && p[len - 1] == ']' && len - 2 < sizeof cur) {
      memcpy(cur, p + 1, len - 2);
      cur[len - 2] = '\0';
    } else if (strcmp(cur, section) == 0 && len > klen + 3 && strncmp(p, key, klen) == 0 &&
               strncmp(p + klen, " = ", 3) == 0) {
      size_t vlen = len - klen - 3;
      if (vlen >= n) vlen = n - 1;
      memcpy(out, p + klen + 3, vlen);
      out[vlen] = '\0';
      return 1;
    }
    p += len + (end ? 1 : 0);
  }
  return 0;
}

static char *config_text(const Config *c) {
  char *text = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&text, &len);
  if (!m) die("out of memory writing the config");
  config_write(c, m);
  if (fclose(m) != 0) die("out of memory writing the config");
  return text;
}

/* Settings whose change would make the continued run another run. */
static void check_settings(const char *path, const char *stored, const Config *cfg) {
  static const char *const KEYS[] = {
    "model.lowercase", "model.dropout", "model.attention_dropout", "data.seq_length",
    "data.max_predictions", "pretrain.batch_size", "pretrain.epochs",
    "pretrain.steps_per_epoch", "pretrain.lr", "pretrain.warmup_proportion",
    "pretrain.optimizer", "pretrain.weight_decay", "pretrain.max_grad_norm", "run.seed",
  };
  char *now = config_text(cfg);
  char msg[2048] = "";
  size_t used = 0;
  for (size_t i = 0; i < ARRAY_LEN(KEYS); i++) {
    char section[32], have[256], want[256];
    const char *dot = strchr(KEYS[i], '.');
    snprintf(section, sizeof section, "%.*s", (int)(dot - KEYS[i]), KEYS[i]);
    if (!ini_value(stored, section, dot + 1, have, sizeof have)) continue;
    if (!ini_value(now, section, dot + 1, want, sizeof want)) continue;
    if (strcmp(have, want) != 0 && used < sizeof msg)
      used += (size_t)snprintf(msg + used, sizeof msg - used, "%s%s is %s in the checkpoint, %s "
                               "now", used ? "; " : "", KEYS[i], have, want);
  }
  free(now);
  if (used)
    die("%s: the checkpoint was written with other settings: %s (continue with the same "
        "settings, or start a new run with another run.dir)", path, msg);
}

static void check_vocab(const char *path, const Vocab *have, const Vocab *want) {
  if (have->size != want->size || have->hash != want->hash)
    die("%s: the checkpoint's vocabulary (%d tokens) differs from the one in use (%s, %d "
        "tokens)", path, have->size, want->path, want->size);
}

int ckpt_read(const char *path, const CkptExpect *e, float *params, float *m, float *v,
              TrainState *st, char *why, size_t n) {
  ReadJob j = {.path = path, .t = e->t, .params = params, .m = m, .v = v, .st = st, .f = -1};
  if (attempt(&j, why, n) != 0) return -1;
  check_shape(path, &j.shape, &e->t->shape);
  check_settings(path, j.config_text, e->cfg);
  free(j.config_text);
  if (st->data_samples != e->samples)
    die("%s: the checkpoint was written for data of %llu samples, the shards in use hold %llu "
        "(resume with the same data.dir contents)", path, (unsigned long long)st->data_samples,
        (unsigned long long)e->samples);
  j.full = 1;
  if (attempt(&j, why, n) != 0) return -1;
  check_vocab(path, j.vocab, e->vocab);
  vocab_free(j.vocab);
  return 0;
}

int64_t ckpt_peek_step(const char *path, char *why, size_t n) {
  TrainState st;
  ReadJob j = {.path = path, .st = &st, .f = -1};
  if (attempt(&j, why, n) != 0) return -1;
  free(j.config_text);
  return st.step;
}

/* ---- the checkpoint directory ---- */

static int is_checkpoint_name(const char *name) {
  if (strcmp(name, "latest.h5") == 0 || strcmp(name, "final.h5") == 0) return 1;
  size_t len = strlen(name);
  if (len < 10 || strncmp(name, "epoch-", 6) != 0 || strcmp(name + len - 3, ".h5") != 0) return 0;
  for (size_t i = 6; i < len - 3; i++)
    if (name[i] < '0' || name[i] > '9') return 0;
  return 1;
}

void ckpt_remove_partial(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *ent;
  while ((ent = readdir(d)) != NULL) {
    size_t len = strlen(ent->d_name);
    if (len < 8 || strcmp(ent->d_name + len - 7, ".h5.tmp") != 0) continue;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
    info("pretrain: removing %s, a checkpoint whose writing was cut short", path);
    if (unlink(path) != 0) die("cannot remove %s: %s", path, strerror(errno));
  }
  closedir(d);
}

typedef struct Found {
  char *path;
  int64_t step;
} Found;

static int newest_first(const void *a, const void *b) {
  const Found *x = a, *y = b;
  if (x->step != y->step) return x->step > y->step ? -1 : 1;
  return strcmp(x->path, y->path);
}

int ckpt_list(const char *dir, char ***paths, int *found) {
  *paths = NULL;
  *found = 0;
  DIR *d = opendir(dir);
  if (!d) {
    if (errno == ENOENT) return 0;
    die("cannot read the checkpoint directory %s: %s", dir, strerror(errno));
  }
  Found *list = NULL;
  size_t cap = 0;
  int n = 0;
  struct dirent *ent;
  while ((ent = readdir(d)) != NULL) {
    if (!is_checkpoint_name(ent->d_name)) continue;
    (*found)++;
    char path[PATH_MAX], why[2048];
    snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
    int64_t step = ckpt_peek_step(path, why, sizeof why);
    if (step < 0) {
      warn("checkpoint %s is damaged and is not used: %s", path, why);
      continue;
    }
    grow((void **)&list, &cap, (size_t)n + 1, sizeof *list);
    list[n].path = xstrdup(path);
    list[n++].step = step;
  }
  closedir(d);
  if (n) qsort(list, (size_t)n, sizeof *list, newest_first);
  *paths = xcalloc((size_t)n + 1, sizeof **paths);
  for (int i = 0; i < n; i++) (*paths)[i] = list[i].path;
  free(list);
  return n;
}
