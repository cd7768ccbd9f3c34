#define _POSIX_C_SOURCE 200809L
#include "weights_h5.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* HDF5 prints its error stack by default; here every failure ends in die()
 * with a message naming the file and dataset plus HDF5's own reason, so the
 * stack is silenced while these functions run and restored afterwards. */
typedef struct Quiet {
  H5E_auto2_t fn;
  void *data;
} Quiet;

static Quiet quiet(void) {
  Quiet q = {NULL, NULL};
  H5Eget_auto2(H5E_DEFAULT, &q.fn, &q.data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  return q;
}

static void loud(Quiet q) { H5Eset_auto2(H5E_DEFAULT, q.fn, q.data); }

static herr_t first_error(unsigned n, const H5E_error2_t *e, void *data) {
  if (n == 0) snprintf(data, 256, "%s", e->desc ? e->desc : "unknown HDF5 error");
  return 0;
}

/* The innermost (most specific) message of the current HDF5 error stack. */
static const char *h5_reason(void) {
  static char buf[256];
  strcpy(buf, "unknown HDF5 error");
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, first_error, buf);
  return buf;
}

static hid_t ck(hid_t id, const char *where, const char *what) {
  if (id < 0) die("%s: %s failed: %s", where, what, h5_reason());
  return id;
}

static void ckerr(herr_t err, const char *where, const char *what) {
  if (err < 0) die("%s: %s failed: %s", where, what, h5_reason());
}

/* ---- attributes ---- */

static void attr_write(hid_t loc, const char *where, const char *name, hid_t file_type,
                       hid_t mem_type, const void *value) {
  hid_t space = ck(H5Screate(H5S_SCALAR), where, "H5Screate");
  hid_t a = H5Acreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0) die("%s: cannot create attribute '%s': %s", where, name, h5_reason());
  if (H5Awrite(a, mem_type, value) < 0)
    die("%s: cannot write attribute '%s': %s", where, name, h5_reason());
  ckerr(H5Aclose(a), where, "H5Aclose");
  ckerr(H5Sclose(space), where, "H5Sclose");
}

static void attr_int(hid_t loc, const char *where, const char *name, int v) {
  attr_write(loc, where, name, H5T_STD_I32LE, H5T_NATIVE_INT, &v);
}

static void attr_double(hid_t loc, const char *where, const char *name, double v) {
  attr_write(loc, where, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

static void attr_u64(hid_t loc, const char *where, const char *name, uint64_t v) {
  attr_write(loc, where, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
}

static void attr_string(hid_t loc, const char *where, const char *name, const char *s) {
  hid_t type = ck(H5Tcopy(H5T_C_S1), where, "H5Tcopy");
  ckerr(H5Tset_size(type, strlen(s) + 1), where, "H5Tset_size");
  ckerr(H5Tset_strpad(type, H5T_STR_NULLTERM), where, "H5Tset_strpad");
  ckerr(H5Tset_cset(type, H5T_CSET_UTF8), where, "H5Tset_cset");
  attr_write(loc, where, name, type, type, s);
  ckerr(H5Tclose(type), where, "H5Tclose");
}

/* Opens a scalar attribute; dies naming it when absent or not scalar. */
static hid_t attr_open(hid_t loc, const char *where, const char *name) {
  htri_t e = H5Aexists(loc, name);
  if (e < 0) die("%s: cannot look up attribute '%s': %s", where, name, h5_reason());
  if (e == 0) die("%s: attribute '%s' missing (not a complete bertrain weights file)", where, name);
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
  if (a < 0) die("%s: cannot open attribute '%s': %s", where, name, h5_reason());
  hid_t space = ck(H5Aget_space(a), where, "H5Aget_space");
  hssize_t n = H5Sget_simple_extent_npoints(space);
  ckerr(H5Sclose(space), where, "H5Sclose");
  if (n != 1) die("%s: attribute '%s' should hold one value, holds %lld", where, name, (long long)n);
  return a;
}

static void attr_read(hid_t loc, const char *where, const char *name, hid_t mem_type, void *out) {
  hid_t a = attr_open(loc, where, name);
  if (H5Aread(a, mem_type, out) < 0)
    die("%s: cannot read attribute '%s' (wrong type?): %s", where, name, h5_reason());
  ckerr(H5Aclose(a), where, "H5Aclose");
}

static int read_int(hid_t loc, const char *where, const char *name) {
  int v;
  attr_read(loc, where, name, H5T_NATIVE_INT, &v);
  return v;
}

static uint64_t read_u64(hid_t loc, const char *where, const char *name) {
  uint64_t v;
  attr_read(loc, where, name, H5T_NATIVE_UINT64, &v);
  return v;
}

/* A string attribute, fixed or variable length; free() the result. */
static char *read_string(hid_t loc, const char *where, const char *name) {
  hid_t a = attr_open(loc, where, name);
  hid_t type = ck(H5Aget_type(a), where, "H5Aget_type");
  if (H5Tget_class(type) != H5T_STRING) die("%s: attribute '%s' is not a string", where, name);
  char *s;
  htri_t var = H5Tis_variable_str(type);
  ckerr(var, where, "H5Tis_variable_str");
  if (var) {
    char *v = NULL;
    if (H5Aread(a, type, &v) < 0)
      die("%s: cannot read attribute '%s': %s", where, name, h5_reason());
    s = xstrdup(v ? v : "");
    H5free_memory(v);
  } else {
    size_t size = H5Tget_size(type);
    if (size == 0) die("%s: attribute '%s': bad string size", where, name);
    s = xcalloc(size + 1, 1);
    if (H5Aread(a, type, s) < 0)
      die("%s: cannot read attribute '%s': %s", where, name, h5_reason());
  }
  ckerr(H5Tclose(type), where, "H5Tclose");
  ckerr(H5Aclose(a), where, "H5Aclose");
  return s;
}

/* ---- tensors ---- */

static void shape_text(char *buf, size_t n, int rank, const hsize_t *dims) {
  size_t used = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < rank && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, "%s%llu", i ? ", " : "",
                             (unsigned long long)dims[i]);
  if (used < n) snprintf(buf + used, n - used, "]");
}

static int param_dims(const Param *p, hsize_t *dims) {
  dims[0] = (hsize_t)p->shape[0];
  dims[1] = (hsize_t)p->shape[1];
  return p->ndim;
}

/* About 1 MiB per chunk: whole rows, so a checksum covers a few rows. */
static void chunk_dims(int rank, const hsize_t *dims, hsize_t *chunk) {
  const hsize_t target = 262144;
  if (rank == 1) {
    chunk[0] = dims[0] < target ? dims[0] : target;
    return;
  }
  hsize_t rows = target / dims[1];
  if (rows < 1) rows = 1;
  chunk[0] = dims[0] < rows ? dims[0] : rows;
  chunk[1] = dims[1];
}

static void write_tensor(hid_t loc, const char *where, const Param *p, const float *x) {
  hsize_t dims[2], chunk[2];
  int rank = param_dims(p, dims);
  chunk_dims(rank, dims, chunk);
  hid_t space = ck(H5Screate_simple(rank, dims, NULL), where, "H5Screate_simple");
  hid_t dcpl = ck(H5Pcreate(H5P_DATASET_CREATE), where, "H5Pcreate");
  ckerr(H5Pset_chunk(dcpl, rank, chunk), where, "H5Pset_chunk");
  ckerr(H5Pset_fletcher32(dcpl), where, "H5Pset_fletcher32");
  hid_t ds = H5Dcreate2(loc, p->name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (ds < 0) die("%s: cannot create dataset '%s': %s", where, p->name, h5_reason());
  if (H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
    die("%s: cannot write dataset '%s': %s", where, p->name, h5_reason());
  ckerr(H5Dclose(ds), where, "H5Dclose");
  ckerr(H5Pclose(dcpl), where, "H5Pclose");
  ckerr(H5Sclose(space), where, "H5Sclose");
}

void weights_write_tensors(hid_t loc, const char *where, const ParamTable *t, const float *buf) {
  Quiet q = quiet();
  for (int i = 0; i < t->n; i++) write_tensor(loc, where, &t->p[i], buf + t->p[i].offset);
  loud(q);
}

/* Reads one tensor; returns 0 when the dataset is absent. */
static int read_tensor(hid_t loc, const char *where, const Param *p, float *x) {
  htri_t e = H5Lexists(loc, p->name, H5P_DEFAULT);
  if (e < 0) die("%s: cannot look up dataset '%s': %s", where, p->name, h5_reason());
  if (e == 0) return 0;
  hid_t ds = H5Dopen2(loc, p->name, H5P_DEFAULT);
  if (ds < 0) die("%s: '%s' is not a readable dataset: %s", where, p->name, h5_reason());
  hid_t space = ck(H5Dget_space(ds), where, "H5Dget_space");
  int rank = H5Sget_simple_extent_ndims(space);
  hsize_t dims[H5S_MAX_RANK], want[2];
  int want_rank = param_dims(p, want);
  if (rank < 0 || rank > H5S_MAX_RANK || H5Sget_simple_extent_dims(space, dims, NULL) < 0)
    die("%s: dataset '%s': cannot read its shape: %s", where, p->name, h5_reason());
  int same = rank == want_rank;
  for (int i = 0; same && i < rank; i++) same = dims[i] == want[i];
  if (!same) {
    char have_s[128], want_s[128];
    shape_text(have_s, sizeof have_s, rank, dims);
    shape_text(want_s, sizeof want_s, want_rank, want);
    die("%s: dataset '%s' has shape %s but the model expects %s", where, p->name, have_s,
        want_s);
  }
  hid_t type = ck(H5Dget_type(ds), where, "H5Dget_type");
  if (H5Tget_class(type) != H5T_FLOAT)
    die("%s: dataset '%s' is not floating point", where, p->name);
  ckerr(H5Tclose(type), where, "H5Tclose");
  if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
    die("%s: cannot read dataset '%s' (corrupt file: checksum or data error): %s", where,
        p->name, h5_reason());
  ckerr(H5Sclose(space), where, "H5Sclose");
  ckerr(H5Dclose(ds), where, "H5Dclose");
  return 1;
}

int weights_read_tensors(hid_t loc, const char *where, const ParamTable *t, float *buf,
                         int allow_missing_classifier) {
  Quiet q = quiet();
  int missing = 0;
  for (int i = 0; i < t->n; i++) {
    const Param *p = &t->p[i];
    if (read_tensor(loc, where, p, buf + p->offset)) continue;
    if (!(allow_missing_classifier && p->part == PART_CLASSIFIER)) {
      hsize_t dims[2];
      char shape[128];
      shape_text(shape, sizeof shape, param_dims(p, dims), dims);
      die("%s: dataset '%s' (shape %s) missing: the file does not hold this model", where,
          p->name, shape);
    }
    missing++;
  }
  loud(q);
  return missing;
}

/* ---- the vocabulary ---- */

/* The vocabulary is stored as vocab.txt's bytes (every token followed by a
 * newline) in a checksummed uint8 dataset: variable-length strings live in
 * HDF5's global heap, which has no checksum, and a damaged heap can make the
 * library return garbage instead of an error. */
static void write_vocab(hid_t loc, const char *where, const Vocab *v) {
  for (int i = 0; i < v->size; i++)
    if (strchr(v->tokens[i], '\n')) die("%s: token %d of the vocabulary holds a newline", where, i);
  size_t len;
  char *blob = vocab_join(v->tokens, v->size, &len);
  hsize_t dims = len, chunk;
  chunk_dims(1, &dims, &chunk);
  hid_t space = ck(H5Screate_simple(1, &dims, NULL), where, "H5Screate_simple");
  hid_t dcpl = ck(H5Pcreate(H5P_DATASET_CREATE), where, "H5Pcreate");
  ckerr(H5Pset_chunk(dcpl, 1, &chunk), where, "H5Pset_chunk");
  ckerr(H5Pset_fletcher32(dcpl), where, "H5Pset_fletcher32");
  hid_t ds = H5Dcreate2(loc, "vocab", H5T_STD_U8LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (ds < 0) die("%s: cannot create dataset 'vocab': %s", where, h5_reason());
  if (H5Dwrite(ds, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, blob) < 0)
    die("%s: cannot write dataset 'vocab': %s", where, h5_reason());
  ckerr(H5Dclose(ds), where, "H5Dclose");
  ckerr(H5Pclose(dcpl), where, "H5Pclose");
  ckerr(H5Sclose(space), where, "H5Sclose");
  free(blob);
}

/* Reads the vocabulary and checks it against vocab_size and vocab_hash. */
static Vocab *read_vocab(hid_t loc, const char *where) {
  hid_t ds = H5Dopen2(loc, "vocab", H5P_DEFAULT);
  if (ds < 0) die("%s: cannot open dataset 'vocab': %s", where, h5_reason());
  hid_t space = ck(H5Dget_space(ds), where, "H5Dget_space");
  hssize_t len = H5Sget_simple_extent_npoints(space);
  hid_t type = ck(H5Dget_type(ds), where, "H5Dget_type");
  if (H5Sget_simple_extent_ndims(space) != 1 || len < 1 || H5Tget_class(type) != H5T_INTEGER ||
      H5Tget_size(type) != 1)
    die("%s: dataset 'vocab' should hold the bytes of vocab.txt", where);
  char *blob = xmalloc((size_t)len + 1);
  if (H5Dread(ds, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, blob) < 0)
    die("%s: cannot read dataset 'vocab' (corrupt file: checksum or data error): %s", where,
        h5_reason());
  ckerr(H5Tclose(type), where, "H5Tclose");
  ckerr(H5Sclose(space), where, "H5Sclose");
  ckerr(H5Dclose(ds), where, "H5Dclose");
  blob[len] = '\0';
  if (blob[len - 1] != '\n') die("%s: dataset 'vocab' does not end with a newline", where);
  int n = 0;
  for (hssize_t i = 0; i < len; i++) n += blob[i] == '\n';
  char **tokens = xmalloc((size_t)n * sizeof *tokens);
  char *p = blob;
  for (int i = 0; i < n; i++) {
    tokens[i] = p;
    p = strchr(p, '\n');
    if (!p) die("%s: dataset 'vocab' holds a NUL byte", where);
    *p++ = '\0';
  }
  char name[4096];
  snprintf(name, sizeof name, "%s:vocab", where);
  Vocab *v = vocab_from_tokens(tokens, n, name);
  free(tokens);
  free(blob);
  int size = read_int(loc, where, "vocab_size");
  if (v->size != size)
    die("%s: dataset 'vocab' holds %d tokens but vocab_size is %d", where, v->size, size);
  if (v->hash != read_u64(loc, where, "vocab_hash"))
    die("%s: dataset 'vocab' does not match its fingerprint vocab_hash (corrupt file)", where);
  return v;
}

/* ---- whole files ---- */

static const char *architecture(const ModelShape *s) {
  if (s->pretraining) return s->num_labels > 0 ? "BertForPreTraining+classifier" : "BertForPreTraining";
  return s->num_labels > 0 ? "BertForSequenceClassification" : "BertModel";
}

static char *config_text(const Config *cfg) {
  char *text = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&text, &len);
  if (!m) die("out of memory writing the config");
  config_write(cfg, m);
  if (fclose(m) != 0) die("out of memory writing the config");
  return text;
}

static void write_attrs(hid_t f, const char *where, const ParamTable *t, const Config *cfg,
                        const Vocab *vocab) {
  const ModelShape *s = &t->shape;
  attr_string(f, where, "format", WEIGHTS_FORMAT);
  attr_int(f, where, "format_version", WEIGHTS_FORMAT_VERSION);
  attr_string(f, where, "architecture", architecture(s));
  attr_int(f, where, "vocab_size", s->vocab);
  attr_int(f, where, "hidden", s->hidden);
  attr_int(f, where, "layers", s->layers);
  attr_int(f, where, "heads", s->heads);
  attr_int(f, where, "intermediate", s->intermediate);
  attr_int(f, where, "max_position", s->max_position);
  attr_int(f, where, "type_vocab", s->type_vocab);
  attr_int(f, where, "num_labels", s->num_labels);
  attr_int(f, where, "pretraining_heads", s->pretraining);
  attr_int(f, where, "pad_token_id", vocab->pad);
  attr_int(f, where, "lowercase", cfg->model.lowercase);
  attr_double(f, where, "initializer_range", cfg->model.initializer_range);
  attr_double(f, where, "dropout", cfg->model.dropout);
  attr_double(f, where, "attention_dropout", cfg->model.attention_dropout);
  attr_u64(f, where, "vocab_hash", vocab->hash);
  char *text = config_text(cfg);
  attr_string(f, where, "config", text);
  free(text);
}

WeightsFile *weights_create(const char *path, const ParamTable *t, const float *params,
                            const Config *cfg, const Vocab *vocab) {
  if (vocab->size != t->shape.vocab)
    die("%s: the vocabulary (%s) has %d tokens but the model %d", path, vocab->path,
        vocab->size, t->shape.vocab);
  Quiet q = quiet();
  WeightsFile *w = xcalloc(1, sizeof *w);
  w->path = xstrdup(path);
  w->tmp = xmalloc(strlen(path) + 5);
  sprintf(w->tmp, "%s.tmp", path);
  tmpfile_register(w->tmp);
  hid_t fapl = ck(H5Pcreate(H5P_FILE_ACCESS), w->tmp, "H5Pcreate");
  /* 1.8+ object headers carry checksums, so damaged metadata is caught too.
   * SEMI close: closing the file fails while an object is still open,
   * rather than leaving it half written when it is renamed into place. */
  ckerr(H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_LATEST), w->tmp,
        "H5Pset_libver_bounds");
  ckerr(H5Pset_fclose_degree(fapl, H5F_CLOSE_SEMI), w->tmp, "H5Pset_fclose_degree");
  w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  if (w->file < 0) die("cannot create %s: %s", w->tmp, h5_reason());
  ckerr(H5Pclose(fapl), w->tmp, "H5Pclose");
  write_attrs(w->file, w->tmp, t, cfg, vocab);
  write_vocab(w->file, w->tmp, vocab);
  weights_write_tensors(w->file, w->tmp, t, params);
  loud(q);
  return w;
}

void weights_commit(WeightsFile *w) {
  Quiet q = quiet();
  if (H5Fclose(w->file) < 0) die("cannot finish writing %s: %s", w->tmp, h5_reason());
  loud(q);
  commit_file(w->tmp, w->path);
  free(w->path);
  free(w->tmp);
  free(w);
}

void weights_save(const char *path, const ParamTable *t, const float *params, const Config *cfg,
                  const Vocab *vocab) {
  weights_commit(weights_create(path, t, params, cfg, vocab));
}

hid_t weights_open(const char *path) {
  if (!file_exists(path)) die("cannot open weights file %s: %s", path, strerror(ENOENT));
  Quiet q = quiet();
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    die("%s: cannot open as HDF5 (not an HDF5 file, truncated or corrupt): %s", path,
        h5_reason());
  htri_t e = H5Aexists(f, "format");
  if (e < 0) die("%s: cannot read the root attributes (corrupt file): %s", path, h5_reason());
  if (e == 0) die("%s: not a bertrain weights file (no 'format' attribute)", path);
  char *format = read_string(f, path, "format");
  if (strcmp(format, WEIGHTS_FORMAT) != 0)
    die("%s: not a bertrain weights file (format '%s', expected '%s')", path, format,
        WEIGHTS_FORMAT);
  free(format);
  int version = read_int(f, path, "format_version");
  if (version != WEIGHTS_FORMAT_VERSION)
    die("%s: weights format version %d; this bertrain reads version %d", path, version,
        WEIGHTS_FORMAT_VERSION);
  loud(q);
  return f;
}

static void close_file(hid_t f, const char *path) {
  if (H5Fclose(f) < 0) die("%s: cannot close: %s", path, h5_reason());
}

static void read_shape(hid_t f, const char *path, ModelShape *s) {
  s->vocab = read_int(f, path, "vocab_size");
  s->hidden = read_int(f, path, "hidden");
  s->layers = read_int(f, path, "layers");
  s->heads = read_int(f, path, "heads");
  s->intermediate = read_int(f, path, "intermediate");
  s->max_position = read_int(f, path, "max_position");
  s->type_vocab = read_int(f, path, "type_vocab");
  s->num_labels = read_int(f, path, "num_labels");
  s->pretraining = read_int(f, path, "pretraining_heads");
}

/* The file's own vocabulary is always read, so damage to it is caught. */
static void check_vocab(hid_t f, const char *path, const Vocab *vocab) {
  Vocab *mine = read_vocab(f, path);
  if (vocab && vocab->size != mine->size)
    die("%s: vocabulary size %d in the file but %d in the vocabulary in use (%s)", path,
        mine->size, vocab->size, vocab->path);
  if (vocab && vocab->hash != mine->hash)
    die("%s: the file's vocabulary differs from the one in use (%s): same size %d, different "
        "tokens", path, vocab->path, vocab->size);
  vocab_free(mine);
}

/* Every architecture key that differs, listed in one message. */
static void check_architecture(hid_t f, const char *path, const ModelShape *file,
                               const ParamTable *t, const Config *cfg) {
  static const struct {
    const char *key;
    size_t off;
  } KEYS[] = {
    {"vocabulary size", offsetof(ModelShape, vocab)},
    {"model.layers", offsetof(ModelShape, layers)},
    {"model.hidden", offsetof(ModelShape, hidden)},
    {"model.heads", offsetof(ModelShape, heads)},
    {"model.intermediate", offsetof(ModelShape, intermediate)},
    {"model.max_position", offsetof(ModelShape, max_position)},
    {"model.type_vocab", offsetof(ModelShape, type_vocab)},
  };
  char msg[2048] = "";
  size_t used = 0;
  for (size_t i = 0; i < ARRAY_LEN(KEYS); i++) {
    int have = *(const int *)((const char *)file + KEYS[i].off);
    int want = *(const int *)((const char *)&t->shape + KEYS[i].off);
    if (have != want && used < sizeof msg)
      used += (size_t)snprintf(msg + used, sizeof msg - used, "%s%s is %d in the file, %d in use",
                               used ? "; " : "", KEYS[i].key, have, want);
  }
  if (cfg) {
    int lower = read_int(f, path, "lowercase");
    if ((lower != 0) != (cfg->model.lowercase != 0) && used < sizeof msg)
      used += (size_t)snprintf(msg + used, sizeof msg - used,
                               "%smodel.lowercase is %s in the file, %s in use", used ? "; " : "",
                               lower ? "true" : "false", cfg->model.lowercase ? "true" : "false");
  }
  if (used) die("%s: the weights do not match the model configuration: %s", path, msg);
}

typedef struct Unused {
  const ParamTable *t;
  const char *path;
  int n;
  char list[1024];
} Unused;

static herr_t note_unused(hid_t g, const char *name, const H5L_info_t *info, void *data) {
  (void)info;
  Unused *u = data;
  if (params_find(u->t, name) || strcmp(name, "vocab") == 0) return 0;
  hid_t obj = H5Oopen(g, name, H5P_DEFAULT);
  if (obj < 0) die("%s: cannot open '%s': %s", u->path, name, h5_reason());
  H5I_type_t kind = H5Iget_type(obj);
  ckerr(H5Oclose(obj), u->path, "H5Oclose");
  if (kind != H5I_DATASET) return 0; /* groups belong to checkpoint extensions */
  size_t used = strlen(u->list);
  if (u->n < 8) snprintf(u->list + used, sizeof u->list - used, "%s%s", u->n ? ", " : "", name);
  else if (u->n == 8) snprintf(u->list + used, sizeof u->list - used, ", ...");
  u->n++;
  return 0;
}

static void report_unused(hid_t f, const char *path, const ParamTable *t) {
  Unused u = {t, path, 0, ""};
  hsize_t idx = 0;
  ckerr(H5Literate(f, H5_INDEX_NAME, H5_ITER_INC, &idx, note_unused, &u), path, "H5Literate");
  if (u.n) info("%s: ignoring %d dataset%s the model does not use: %s", path, u.n,
                u.n == 1 ? "" : "s", u.list);
}

int weights_load(const char *path, const ParamTable *t, float *params, const Config *cfg,
                 const Vocab *vocab) {
  hid_t f = weights_open(path);
  Quiet q = quiet();
  ModelShape file;
  read_shape(f, path, &file);
  check_vocab(f, path, vocab);
  check_architecture(f, path, &file, t, cfg);
  int missing = weights_read_tensors(f, path, t, params, 1);
  report_unused(f, path, t);
  close_file(f, path);
  loud(q);
  if (missing)
    info("%s: no classifier in the file; its %d tensors keep their initial values", path,
         missing);
  return missing;
}

void weights_read_shape(const char *path, ModelShape *s) {
  hid_t f = weights_open(path);
  Quiet q = quiet();
  read_shape(f, path, s);
  close_file(f, path);
  loud(q);
}

Vocab *weights_read_vocab(const char *path) {
  hid_t f = weights_open(path);
  Quiet q = quiet();
  Vocab *v = read_vocab(f, path);
  close_file(f, path);
  loud(q);
  return v;
}

void weights_read_model_config(const char *path, Config *cfg) {
  hid_t f = weights_open(path);
  Quiet q = quiet();
  ModelShape s;
  read_shape(f, path, &s);
  cfg->model.layers = s.layers;
  cfg->model.hidden = s.hidden;
  cfg->model.heads = s.heads;
  cfg->model.intermediate = s.intermediate;
  cfg->model.max_position = s.max_position;
  cfg->model.type_vocab = s.type_vocab;
  cfg->model.lowercase = read_int(f, path, "lowercase") != 0;
  close_file(f, path);
  loud(q);
}

char *weights_read_config_text(const char *path) {
  hid_t f = weights_open(path);
  Quiet q = quiet();
  char *text = read_string(f, path, "config");
  close_file(f, path);
  loud(q);
  return text;
}
