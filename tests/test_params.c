/* Parameter layout (names, shapes, offsets as Hugging Face BERT), BERT
 * initialisation, and HDF5 weight files: round trip and the errors users see. */
#define _POSIX_C_SOURCE 200809L
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "params.h"
#include "test_util.h"
#include "util.h"
#include "vocab.h"
#include "weights_h5.h"

static char tmpdir[] = "/tmp/bertrain-test-params-XXXXXX";

/* A path in the test directory; kept until the test ends. */
static const char *tmp_path(const char *name) {
  char b[512];
  snprintf(b, sizeof b, "%s/%s", tmpdir, name);
  return xstrdup(b);
}

/* ---- layout ---- */

static size_t formula_count(const ModelShape *s) {
  size_t V = s->vocab, H = s->hidden, I = s->intermediate, P = s->max_position, T = s->type_vocab;
  size_t emb = (V + P + T) * H + 2 * H;
  size_t layer = 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H;
  size_t pooler = H * H + H;
  size_t heads = s->pretraining ? V + (H * H + H) + 2 * H + (2 * H + 2) : 0;
  size_t cls = s->num_labels ? (size_t)s->num_labels * H + (size_t)s->num_labels : 0;
  return emb + (size_t)s->layers * layer + pooler + heads + cls;
}

/* The floats kept for p: its count, or the vocabulary's stored rows. */
static size_t stored(const ParamTable *t, const Param *p) {
  int vocab = strcmp(p->name, "bert.embeddings.word_embeddings.weight") == 0 ||
              strcmp(p->name, "cls.predictions.bias") == 0;
  return vocab ? (size_t)t->vocab_rows * (size_t)p->shape[1] : p->count;
}

static void check_contiguous(const ParamTable *t) {
  size_t end = 0, sum = 0;
  int ok = 1;
  CHECK(t->vocab_rows >= t->shape.vocab && t->vocab_rows - t->shape.vocab < PARAM_VOCAB_ROUND);
  CHECK_INT(t->vocab_rows % PARAM_VOCAB_ROUND, 0);
  for (int i = 0; i < t->n; i++) {
    const Param *p = &t->p[i];
    ok &= p->offset % PARAM_ALIGN == 0;
    ok &= p->offset >= end && p->offset - end < PARAM_ALIGN;
    ok &= p->count == (size_t)p->shape[0] * (size_t)p->shape[1];
    ok &= p->ndim == 2 || p->shape[1] == 1;
    end = p->offset + stored(t, p);
    sum += p->count;
    for (int j = 0; j < i; j++) ok &= strcmp(t->p[j].name, p->name) != 0;
  }
  CHECK(ok);
  CHECK_INT(sum, params_count(t));
  CHECK(params_size(t) >= end && params_size(t) - end < PARAM_ALIGN);
  CHECK_INT(params_size(t) % PARAM_ALIGN, 0);
}

static size_t part_count(const ParamTable *t, ParamPart part) {
  size_t n = 0;
  for (int i = 0; i < t->n; i++)
    if (t->p[i].part == part) n += t->p[i].count;
  return n;
}

static void check_param(const ParamTable *t, int index, const char *name, int rows, int cols) {
  CHECK(index < t->n);
  if (index >= t->n) return;
  const Param *p = &t->p[index];
  CHECK_STR(p->name, name);
  CHECK_INT(p->shape[0], rows);
  CHECK_INT(p->ndim, cols ? 2 : 1);
  if (cols) CHECK_INT(p->shape[1], cols);
  CHECK(params_find(t, name) == p);
}

static void test_bert_base_layout(void) {
  /* Hugging Face BertForPreTraining on bert-base-uncased: 110,106,428
   * parameters (the decoder weight tied to the word embeddings, counted
   * once); its BertModel part, pooler included, 109,482,240. */
  ModelShape s = {.vocab = 30522, .hidden = 768, .layers = 12, .heads = 12,
                  .intermediate = 3072, .max_position = 512, .type_vocab = 2,
                  .num_labels = 0, .pretraining = 1};
  ParamTable *t = params_build(&s);
  CHECK_INT(params_count(t), 110106428);
  CHECK_INT(part_count(t, PART_BERT), 109482240);
  CHECK_INT(params_count(t), formula_count(&s));
  CHECK_INT(t->n, 5 + 16 * 12 + 2 + 7);
  check_param(t, 0, "bert.embeddings.word_embeddings.weight", 30522, 768);
  check_param(t, 1, "bert.embeddings.position_embeddings.weight", 512, 768);
  check_param(t, 2, "bert.embeddings.token_type_embeddings.weight", 2, 768);
  check_param(t, 3, "bert.embeddings.LayerNorm.weight", 768, 0);
  check_param(t, 4, "bert.embeddings.LayerNorm.bias", 768, 0);
  /* q, k, v weights side by side, then their biases: one [3H, H] product */
  check_param(t, 5, "bert.encoder.layer.0.attention.self.query.weight", 768, 768);
  check_param(t, 6, "bert.encoder.layer.0.attention.self.key.weight", 768, 768);
  check_param(t, 7, "bert.encoder.layer.0.attention.self.value.weight", 768, 768);
  check_param(t, 8, "bert.encoder.layer.0.attention.self.query.bias", 768, 0);
  check_param(t, 10, "bert.encoder.layer.0.attention.self.value.bias", 768, 0);
  CHECK_INT(t->p[7].offset, t->p[5].offset + 2 * 768 * 768);
  CHECK_INT(t->p[10].offset, t->p[8].offset + 2 * 768);
  check_param(t, 11, "bert.encoder.layer.0.attention.output.dense.weight", 768, 768);
  check_param(t, 13, "bert.encoder.layer.0.attention.output.LayerNorm.weight", 768, 0);
  check_param(t, 15, "bert.encoder.layer.0.intermediate.dense.weight", 3072, 768);
  check_param(t, 16, "bert.encoder.layer.0.intermediate.dense.bias", 3072, 0);
  check_param(t, 17, "bert.encoder.layer.0.output.dense.weight", 768, 3072);
  check_param(t, 20, "bert.encoder.layer.0.output.LayerNorm.bias", 768, 0);
  check_param(t, 21, "bert.encoder.layer.1.attention.self.query.weight", 768, 768);
  check_param(t, 196, "bert.encoder.layer.11.output.LayerNorm.bias", 768, 0);
  check_param(t, 197, "bert.pooler.dense.weight", 768, 768);
  check_param(t, 198, "bert.pooler.dense.bias", 768, 0);
  check_param(t, 199, "cls.predictions.bias", 30522, 0);
  check_param(t, 200, "cls.predictions.transform.dense.weight", 768, 768);
  check_param(t, 202, "cls.predictions.transform.LayerNorm.weight", 768, 0);
  check_param(t, 204, "cls.seq_relationship.weight", 2, 768);
  check_param(t, 205, "cls.seq_relationship.bias", 2, 0);
  CHECK(params_find(t, "cls.predictions.decoder.weight") == NULL);
  CHECK(params_find(t, "classifier.weight") == NULL);
  CHECK(params_layer(t, 3, "intermediate.dense.bias") == params_find(t, "bert.encoder.layer.3.intermediate.dense.bias"));
  /* Weight decay: matrices yes, biases and LayerNorm no; embeddings decay. */
  CHECK(!params_find(t, "bert.embeddings.word_embeddings.weight")->no_decay);
  CHECK(!params_find(t, "bert.encoder.layer.0.attention.self.query.weight")->no_decay);
  CHECK(params_find(t, "bert.encoder.layer.0.attention.self.query.bias")->no_decay);
  CHECK(params_find(t, "bert.embeddings.LayerNorm.weight")->no_decay);
  CHECK(params_find(t, "cls.predictions.bias")->no_decay);
  CHECK(params_find(t, "bert.embeddings.LayerNorm.weight")->init == INIT_ONES);
  CHECK(params_find(t, "cls.predictions.bias")->init == INIT_ZEROS);
  CHECK(params_find(t, "bert.pooler.dense.weight")->init == INIT_NORMAL);
  check_contiguous(t);
  params_free(t);

  /* BertForSequenceClassification, 2 labels: 109,483,778. */
  s.pretraining = 0;
  s.num_labels = 2;
  t = params_build(&s);
  CHECK_INT(params_count(t), 109483778);
  check_param(t, t->n - 2, "classifier.weight", 2, 768);
  check_param(t, t->n - 1, "classifier.bias", 2, 0);
  CHECK(params_find(t, "cls.predictions.bias") == NULL);
  check_contiguous(t);
  params_free(t);

  /* An odd shape: every tensor still aligned, counts still add up. */
  ModelShape odd = {.vocab = 1001, .hidden = 12, .layers = 3, .heads = 3, .intermediate = 37,
                    .max_position = 17, .type_vocab = 3, .num_labels = 5, .pretraining = 1};
  t = params_build(&odd);
  CHECK_INT(params_count(t), formula_count(&odd));
  CHECK_INT(t->vocab_rows, 1008);
  check_contiguous(t);
  /* the word embeddings' and the MLM bias's stored rows past the vocabulary
   * are zero after init, as the decoder's padded products need */
  float *buf = params_alloc_host(t);
  for (size_t i = 0; i < params_size(t); i++) buf[i] = 7.0f;
  params_init(t, buf, 1, 0.02, -1);
  int pad_zero = 1;
  const char *vocab_tensors[2] = {"bert.embeddings.word_embeddings.weight", "cls.predictions.bias"};
  for (int k = 0; k < 2; k++) {
    const Param *p = params_get(t, vocab_tensors[k]);
    for (size_t i = p->count; i < stored(t, p); i++) pad_zero &= buf[p->offset + i] == 0.0f;
  }
  CHECK(pad_zero);
  free(buf);
  params_free(t);
}

static void test_presets(void) {
  static const struct {
    const char *file;
    int layers, hidden, heads, intermediate;
  } PRESETS[] = {
    {"configs/bert-tiny.ini", 2, 128, 2, 512},
    {"configs/bert-mini.ini", 4, 256, 4, 1024},
    {"configs/bert-base.ini", 12, 768, 12, 3072},
  };
  for (size_t i = 0; i < ARRAY_LEN(PRESETS); i++) {
    Config c;
    config_defaults(&c);
    config_load_file(&c, src_path(PRESETS[i].file));
    model_config_check(&c);
    CHECK_INT(c.model.layers, PRESETS[i].layers);
    CHECK_INT(c.model.hidden, PRESETS[i].hidden);
    CHECK_INT(c.model.heads, PRESETS[i].heads);
    CHECK_INT(c.model.intermediate, PRESETS[i].intermediate);
    CHECK_INT(c.model.max_position, 512);
    CHECK_INT(c.model.type_vocab, 2);
    CHECK(c.model.dropout == 0.1 && c.model.attention_dropout == 0.1);
    CHECK(c.model.initializer_range == 0.02);
    if (i == 2) {
      ModelShape s = model_shape(&c, 30522, 0, 1);
      ParamTable *t = params_build(&s);
      CHECK_INT(params_count(t), 110106428);
      params_free(t);
    }
    config_free(&c);
  }
  Config c;
  config_defaults(&c);
  CHECK_INT(c.model.layers, 4);
  CHECK_INT(c.model.hidden, 256);
  CHECK_INT(c.run.seed, 42);
  config_free(&c);
}

/* ---- initialisation ---- */

static const ModelShape MEDIUM = {.vocab = 3000, .hidden = 64, .layers = 2, .heads = 4,
                                  .intermediate = 256, .max_position = 128, .type_vocab = 2,
                                  .num_labels = 2, .pretraining = 1};

static void test_init_statistics(void) {
  ParamTable *t = params_build(&MEDIUM);
  float *buf = params_alloc_host(t);
  for (size_t i = 0; i < params_size(t); i++) buf[i] = 7.0f; /* init must overwrite gaps too */
  const double range = 0.02;
  params_init(t, buf, 42, range, 0);
  /* Normal truncated at 2 std: std 0.8796 * range, 71.5% within 1 std. */
  double z2 = erf(2.0 / sqrt(2.0)), phi2 = exp(-2.0) / sqrt(2.0 * 3.14159265358979323846);
  double want_std = range * sqrt(1.0 - 4.0 * phi2 / z2);
  double want_within1 = erf(1.0 / sqrt(2.0)) / z2;
  double n = 0, sum = 0, sumsq = 0, within1 = 0, maxabs = 0;
  int ones_ok = 1, zeros_ok = 1, tensors_ok = 1;
  for (int i = 0; i < t->n; i++) {
    const Param *p = &t->p[i];
    const float *x = buf + p->offset;
    size_t skip = strcmp(p->name, "bert.embeddings.word_embeddings.weight") == 0 ? (size_t)p->shape[1] : 0;
    if (p->init == INIT_ONES)
      for (size_t k = 0; k < p->count; k++) ones_ok &= x[k] == 1.0f;
    if (p->init == INIT_ZEROS)
      for (size_t k = 0; k < p->count; k++) zeros_ok &= x[k] == 0.0f;
    if (p->init != INIT_NORMAL) continue;
    double tn = 0, tsq = 0;
    for (size_t k = skip; k < p->count; k++) {
      double v = x[k];
      n++, sum += v, sumsq += v * v, tn++, tsq += v * v;
      within1 += fabs(v) <= range;
      if (fabs(v) > maxabs) maxabs = fabs(v);
    }
    double tstd = sqrt(tsq / tn);
    if (fabs(tstd / want_std - 1.0) > 0.25) {
      tensors_ok = 0;
      fprintf(stderr, "%s: std %g, expected %g\n", p->name, tstd, want_std);
    }
  }
  double mean = sum / n, std = sqrt(sumsq / n - mean * mean);
  printf("init: %.0f values, mean %.3g, std %.6f (expected %.6f), within 1 std %.4f (expected %.4f), max |x| %.6f\n",
         n, mean, std, want_std, within1 / n, want_within1, maxabs);
  CHECK(n > 300000);
  CHECK(fabs(mean) < 5.0 * want_std / sqrt(n));
  CHECK(fabs(std / want_std - 1.0) < 0.01);
  CHECK(fabs(within1 / n - want_within1) < 0.005);
  CHECK(maxabs <= (float)(2.0 * range));
  CHECK(maxabs > 0.039);
  CHECK(ones_ok);
  CHECK(zeros_ok);
  CHECK(tensors_ok);
  /* The [PAD] row (id 0) is zero as HF does for padding_idx; row 1 is not. */
  const float *emb = params_view(t, buf, "bert.embeddings.word_embeddings.weight");
  int pad_zero = 1, row1_nonzero = 0;
  for (int k = 0; k < MEDIUM.hidden; k++) {
    pad_zero &= emb[k] == 0.0f;
    row1_nonzero |= emb[MEDIUM.hidden + k] != 0.0f;
  }
  CHECK(pad_zero);
  CHECK(row1_nonzero);
  /* Alignment gaps are zero. */
  int gaps_zero = 1;
  size_t end = 0;
  for (int i = 0; i <= t->n; i++) {
    size_t start = i < t->n ? t->p[i].offset : params_size(t);
    for (size_t k = end; k < start; k++) gaps_zero &= buf[k] == 0.0f;
    if (i < t->n) end = t->p[i].offset + t->p[i].count;
  }
  CHECK(gaps_zero);
  free(buf);
  params_free(t);
}

static int same_tensor(const ParamTable *ta, const float *a, const ParamTable *tb, const float *b,
                       const char *name) {
  const Param *pa = params_get(ta, name), *pb = params_get(tb, name);
  return pa->count == pb->count && memcmp(a + pa->offset, b + pb->offset, pa->count * 4) == 0;
}

static void test_init_determinism(void) {
  ParamTable *t = params_build(&MEDIUM);
  float *a = params_alloc_host(t), *b = params_alloc_host(t);
  params_init(t, a, 42, 0.02, 0);
  params_init(t, b, 42, 0.02, 0);
  CHECK(memcmp(a, b, params_size(t) * sizeof *a) == 0);
  params_init(t, b, 43, 0.02, 0);
  size_t equal = 0, normal = 0;
  for (int i = 0; i < t->n; i++) {
    const Param *p = &t->p[i];
    if (p->init != INIT_NORMAL) continue;
    for (size_t k = 0; k < p->count; k++) {
      normal++;
      equal += a[p->offset + k] == b[p->offset + k];
    }
  }
  CHECK(equal < normal / 100);
  /* Different tensors draw different values. */
  CHECK(memcmp(params_view(t, a, "bert.encoder.layer.0.attention.self.query.weight"),
               params_view(t, a, "bert.encoder.layer.0.attention.self.key.weight"),
               64 * 64 * sizeof(float)) != 0);
  CHECK(params_view(t, a, "bert.pooler.dense.bias") ==
        a + params_find(t, "bert.pooler.dense.bias")->offset);
  CHECK(memcmp(params_view(t, a, "bert.encoder.layer.0.attention.self.query.weight"),
               params_view(t, a, "bert.encoder.layer.1.attention.self.query.weight"),
               64 * 64 * sizeof(float)) != 0);
  /* A tensor's values depend only on seed and name: a table without the
   * pre-training heads (fine-tuning) starts from the same encoder. */
  ModelShape ft = MEDIUM;
  ft.pretraining = 0;
  ParamTable *u = params_build(&ft);
  float *c = params_alloc_host(u);
  params_init(u, c, 42, 0.02, 0);
  int all_same = 1;
  for (int i = 0; i < u->n; i++) all_same &= same_tensor(t, a, u, c, u->p[i].name);
  CHECK(all_same);
  free(a);
  free(b);
  free(c);
  params_free(t);
  params_free(u);
}

/* ---- HDF5 weights ---- */

static const ModelShape SMALL = {.vocab = 50, .hidden = 8, .layers = 2, .heads = 2,
                                 .intermediate = 16, .max_position = 16, .type_vocab = 2,
                                 .num_labels = 0, .pretraining = 1};

static Vocab *make_vocab(int n, const char *last) {
  char **tokens = xcalloc((size_t)n, sizeof *tokens);
  static const char *const special[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (int i = 0; i < n; i++) {
    char buf[32];
    snprintf(buf, sizeof buf, "w%d", i);
    tokens[i] = xstrdup(i < 5 ? special[i] : (i == n - 1 && last) ? last : buf);
  }
  Vocab *v = vocab_from_tokens(tokens, n, "test-vocab");
  for (int i = 0; i < n; i++) free(tokens[i]);
  free(tokens);
  return v;
}

static void config_for(Config *c, const ModelShape *s) {
  char buf[128];
  config_defaults(c);
  snprintf(buf, sizeof buf, "model.hidden=%d", s->hidden);
  config_set(c, buf);
  snprintf(buf, sizeof buf, "model.layers=%d", s->layers);
  config_set(c, buf);
  snprintf(buf, sizeof buf, "model.heads=%d", s->heads);
  config_set(c, buf);
  snprintf(buf, sizeof buf, "model.intermediate=%d", s->intermediate);
  config_set(c, buf);
  snprintf(buf, sizeof buf, "model.max_position=%d", s->max_position);
  config_set(c, buf);
  config_set(c, "model.dropout=0.125");
}

/* Writes a file of shape s (vocab of s->vocab tokens) initialised with seed. */
static void save_model(const char *path, const ModelShape *s, uint64_t seed) {
  Config c;
  config_for(&c, s);
  Vocab *v = make_vocab(s->vocab, NULL);
  ParamTable *t = params_build(s);
  float *buf = params_alloc_host(t);
  params_init(t, buf, seed, 0.02, v->pad);
  weights_save(path, t, buf, &c, v);
  free(buf);
  params_free(t);
  vocab_free(v);
  config_free(&c);
}

static void copy_file(const char *from, const char *to) {
  FILE *f = fopen(from, "rb"), *g = fopen(to, "wb");
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, g);
  fclose(f);
  fclose(g);
}

static void test_roundtrip(void) {
  const char *path = tmp_path("small.h5");
  Config c;
  config_for(&c, &SMALL);
  Vocab *v = make_vocab(SMALL.vocab, NULL);
  ParamTable *t = params_build(&SMALL);
  float *a = params_alloc_host(t), *b = params_alloc_host(t);
  params_init(t, a, 5, 0.02, v->pad);
  weights_save(path, t, a, &c, v);
  CHECK(file_exists(path));
  CHECK(!file_exists(tmp_path("small.h5.tmp")));
  CHECK_INT(weights_load(path, t, b, &c, v), 0);
  CHECK(memcmp(a, b, params_size(t) * sizeof *a) == 0);

  ModelShape s;
  weights_read_shape(path, &s);
  CHECK(memcmp(&s, &SMALL, sizeof s) == 0);
  Vocab *w = weights_read_vocab(path);
  CHECK_INT(w->size, v->size);
  CHECK(w->hash == v->hash);
  CHECK_STR(w->tokens[4], "[MASK]");
  CHECK_INT(w->mask, 4);
  char *text = weights_read_config_text(path);
  CHECK(strstr(text, "[model]\n") != NULL);
  CHECK(strstr(text, "hidden = 8\n") != NULL);
  CHECK(strstr(text, "dropout = 0.125\n") != NULL);
  Config d;
  config_defaults(&d);
  weights_read_model_config(path, &d);
  CHECK_INT(d.model.hidden, 8);
  CHECK_INT(d.model.layers, 2);
  CHECK_INT(d.model.intermediate, 16);
  CHECK_INT(d.model.max_position, 16);

  /* Attributes a converter reads, and a checksummed dataset per tensor. */
  hid_t f = weights_open(path);
  int ival = 0;
  hid_t at = H5Aopen(f, "num_labels", H5P_DEFAULT);
  CHECK(at >= 0 && H5Aread(at, H5T_NATIVE_INT, &ival) >= 0);
  CHECK_INT(ival, 0);
  H5Aclose(at);
  double dval = 0;
  at = H5Aopen(f, "dropout", H5P_DEFAULT);
  CHECK(at >= 0 && H5Aread(at, H5T_NATIVE_DOUBLE, &dval) >= 0);
  CHECK(dval == 0.125);
  H5Aclose(at);
  hid_t ds = H5Dopen2(f, "bert.encoder.layer.1.intermediate.dense.weight", H5P_DEFAULT);
  CHECK(ds >= 0);
  hid_t dcpl = H5Dget_create_plist(ds);
  CHECK(H5Pget_layout(dcpl) == H5D_CHUNKED);
  CHECK(H5Pget_nfilters(dcpl) == 1);
  unsigned flags = 0;
  size_t nelem = 0;
  CHECK(H5Pget_filter2(dcpl, 0, &flags, &nelem, NULL, 0, NULL, NULL) == H5Z_FILTER_FLETCHER32);
  H5Pclose(dcpl);
  H5Dclose(ds);
  H5Fclose(f);

  /* Fine-tuning: a file without a classifier into a table with one (and no
   * pre-training heads): encoder loaded, classifier left as initialised. */
  ModelShape fs = SMALL;
  fs.pretraining = 0;
  fs.num_labels = 3;
  ParamTable *u = params_build(&fs);
  float *x = params_alloc_host(u), *y = params_alloc_host(u);
  params_init(u, x, 99, 0.02, v->pad);
  memcpy(y, x, params_size(u) * sizeof *x);
  CHECK_INT(weights_load(path, u, x, &c, v), 2);
  int ok = 1;
  for (int i = 0; i < u->n; i++) {
    const Param *p = &u->p[i];
    if (p->part == PART_CLASSIFIER) ok &= same_tensor(u, x, u, y, p->name);
    else ok &= same_tensor(u, x, t, a, p->name);
  }
  CHECK(ok);
  /* ... and saved again it reads back as BertForSequenceClassification. */
  const char *path2 = tmp_path("finetuned.h5");
  weights_save(path2, u, x, &c, v);
  memset(y, 0, params_size(u) * sizeof *y);
  CHECK_INT(weights_load(path2, u, y, &c, v), 0);
  CHECK(memcmp(x, y, params_size(u) * sizeof *x) == 0);
  weights_read_shape(path2, &s);
  CHECK_INT(s.num_labels, 3);
  CHECK_INT(s.pretraining, 0);

  free(text);
  free(a);
  free(b);
  free(x);
  free(y);
  params_free(t);
  params_free(u);
  vocab_free(v);
  vocab_free(w);
  config_free(&c);
  config_free(&d);
}

/* ---- errors ---- */

typedef struct LoadArgs {
  const char *path;
  ModelShape shape;
  const char *last_token; /* NULL: the vocabulary the files were written with */
  int exit_after;         /* exit(3) after a successful load, to read its report */
} LoadArgs;

static void load_child(void *arg) {
  LoadArgs *l = arg;
  Config c;
  config_for(&c, &l->shape);
  Vocab *v = make_vocab(l->shape.vocab, l->last_token);
  ParamTable *t = params_build(&l->shape);
  float *buf = params_alloc_host(t);
  weights_load(l->path, t, buf, &c, v);
  if (l->exit_after) exit(3);
}

static void edit_file(const char *path, void (*edit)(hid_t f)) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  if (f < 0) { fprintf(stderr, "cannot open %s\n", path); exit(2); }
  edit(f);
  H5Fclose(f);
}

static void widen_pooler(hid_t f) {
  H5Ldelete(f, "bert.pooler.dense.weight", H5P_DEFAULT);
  hsize_t dims[2] = {8, 9};
  hid_t space = H5Screate_simple(2, dims, NULL);
  hid_t ds = H5Dcreate2(f, "bert.pooler.dense.weight", H5T_IEEE_F32LE, space, H5P_DEFAULT,
                        H5P_DEFAULT, H5P_DEFAULT);
  float zero[72] = {0};
  H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, zero);
  H5Dclose(ds);
  H5Sclose(space);
}

static void drop_layer_norm(hid_t f) {
  H5Ldelete(f, "bert.encoder.layer.1.output.LayerNorm.bias", H5P_DEFAULT);
}

static void bump_version(hid_t f) {
  H5Adelete(f, "format_version");
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, "format_version", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT);
  int two = 2;
  H5Awrite(a, H5T_NATIVE_INT, &two);
  H5Aclose(a);
  H5Sclose(space);
}

static void drop_format(hid_t f) { H5Adelete(f, "format"); }

/* Flips a byte inside the stored values of word embedding row 1. */
static int flip_data_byte(const char *path) {
  Vocab *v = make_vocab(SMALL.vocab, NULL);
  ParamTable *t = params_build(&SMALL);
  float *buf = params_alloc_host(t);
  params_init(t, buf, 1, 0.02, v->pad);
  const float *row1 = params_view(t, buf, "bert.embeddings.word_embeddings.weight") + SMALL.hidden;
  FILE *f = fopen(path, "r+b");
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  unsigned char *data = malloc((size_t)size);
  fseek(f, 0, SEEK_SET);
  int found = 0;
  if (fread(data, 1, (size_t)size, f) == (size_t)size) {
    for (long i = 0; i + 32 <= size && !found; i++) {
      if (memcmp(data + i, row1, 32) != 0) continue;
      fseek(f, i + 5, SEEK_SET);
      fputc(data[i + 5] ^ 0x10, f);
      found = 1;
    }
  }
  fclose(f);
  free(data);
  free(buf);
  params_free(t);
  vocab_free(v);
  return found;
}

static void truncate_file(const char *path) {
  FILE *f = fopen(path, "rb");
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fclose(f);
  if (truncate(path, size / 2) != 0) perror("truncate");
}

static void check_config(void *arg) {
  Config c;
  config_defaults(&c);
  config_set(&c, arg);
  model_config_check(&c);
}

static void test_errors(void) {
  const char *good = tmp_path("good.h5");
  save_model(good, &SMALL, 1);

  ModelShape wide = SMALL;
  wide.hidden = 16;
  const char *widefile = tmp_path("wide.h5");
  save_model(widefile, &wide, 1);
  LoadArgs l = {widefile, SMALL, NULL, 0};
  expect_death("hidden size differs", load_child, &l,
               (const char *const[]){widefile, "model.hidden is 16 in the file, 8 in use", NULL});

  const char *shaped = tmp_path("shaped.h5");
  copy_file(good, shaped);
  edit_file(shaped, widen_pooler);
  l = (LoadArgs){shaped, SMALL, NULL, 0};
  expect_death("dataset shape differs", load_child, &l,
               (const char *const[]){shaped, "'bert.pooler.dense.weight'", "[8, 9]", "[8, 8]",
                                     NULL});

  ModelShape bigger = SMALL;
  bigger.vocab = 51;
  l = (LoadArgs){good, bigger, NULL, 0};
  expect_death("vocabulary size differs", load_child, &l,
               (const char *const[]){good, "vocabulary size 50 in the file but 51", "test-vocab",
                                     NULL});
  l = (LoadArgs){good, SMALL, "other", 0};
  expect_death("vocabulary tokens differ", load_child, &l,
               (const char *const[]){good, "vocabulary differs", NULL});

  const char *missing = tmp_path("missing.h5");
  copy_file(good, missing);
  edit_file(missing, drop_layer_norm);
  l = (LoadArgs){missing, SMALL, NULL, 0};
  expect_death("missing dataset", load_child, &l,
               (const char *const[]){missing, "'bert.encoder.layer.1.output.LayerNorm.bias'",
                                     "missing", NULL});

  const char *flipped = tmp_path("flipped.h5");
  copy_file(good, flipped);
  CHECK(flip_data_byte(flipped));
  l = (LoadArgs){flipped, SMALL, NULL, 0};
  expect_death("flipped byte", load_child, &l,
               (const char *const[]){flipped, "'bert.embeddings.word_embeddings.weight'",
                                     "Fletcher32", NULL});

  const char *cut = tmp_path("truncated.h5");
  copy_file(good, cut);
  truncate_file(cut);
  l = (LoadArgs){cut, SMALL, NULL, 0};
  expect_death("truncated file", load_child, &l,
               (const char *const[]){cut, "truncated", NULL});

  const char *v2 = tmp_path("version2.h5");
  copy_file(good, v2);
  edit_file(v2, bump_version);
  l = (LoadArgs){v2, SMALL, NULL, 0};
  expect_death("format version", load_child, &l,
               (const char *const[]){v2, "format version 2", "reads version 1", NULL});

  const char *foreign = tmp_path("foreign.h5");
  copy_file(good, foreign);
  edit_file(foreign, drop_format);
  l = (LoadArgs){foreign, SMALL, NULL, 0};
  expect_death("not a weights file", load_child, &l,
               (const char *const[]){foreign, "not a bertrain weights file", NULL});

  const char *text = tmp_path("text.h5");
  FILE *f = fopen(text, "w");
  fputs("not hdf5\n", f);
  fclose(f);
  l = (LoadArgs){text, SMALL, NULL, 0};
  expect_death("not HDF5", load_child, &l,
               (const char *const[]){text, "cannot open as HDF5", NULL});
  l = (LoadArgs){tmp_path("absent.h5"), SMALL, NULL, 0};
  expect_death("absent file", load_child, &l,
               (const char *const[]){"absent.h5", "No such file", NULL});

  /* Loading pre-training weights for fine-tuning reports the unused heads. */
  ModelShape ft = SMALL;
  ft.pretraining = 0;
  ft.num_labels = 2;
  l = (LoadArgs){good, ft, NULL, 1};
  expect_death("unused datasets reported", load_child, &l,
               (const char *const[]){"ignoring 7 datasets the model does not use",
                                     "cls.predictions.bias", "no classifier in the file", NULL});

  expect_death("hidden not a multiple of heads", check_config, "model.heads=3",
               (const char *const[]){"model.hidden (256) must be a multiple of model.heads (3)",
                                     NULL});
  expect_death("sequence longer than positions", check_config, "model.max_position=64",
               (const char *const[]){"data.seq_length (128) exceeds model.max_position (64)",
                                     NULL});
}

/* Loads path in a child; exit 0 when weights, vocabulary and config text
 * equal the reference, 4 when something differs, 1 when load died. */
static int load_matches(const char *path, const ParamTable *t, const float *ref,
                        const Vocab *vocab, const char *text) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    if (!freopen("/dev/null", "w", stderr)) _exit(2);
    float *buf = params_alloc_host(t);
    weights_load(path, t, buf, NULL, NULL);
    Vocab *v = weights_read_vocab(path);
    char *cfg = weights_read_config_text(path);
    int same = memcmp(buf, ref, params_size(t) * sizeof *buf) == 0 && v->hash == vocab->hash &&
               v->size == vocab->size && strcmp(cfg, text) == 0;
    _exit(same ? 0 : 4);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Damage anywhere in a file is either reported or harmless: every flipped
 * byte (a sample of them) makes loading die or read exactly the original
 * weights, vocabulary and config. */
static void test_corruption_sweep(void) {
  const char *good = tmp_path("sweep.h5"), *bad = tmp_path("sweep-flipped.h5");
  save_model(good, &SMALL, 3);
  ParamTable *t = params_build(&SMALL);
  float *ref = params_alloc_host(t);
  weights_load(good, t, ref, NULL, NULL);
  Vocab *vocab = weights_read_vocab(good);
  char *text = weights_read_config_text(good);
  FILE *f = fopen(good, "rb");
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  unsigned char *data = malloc((size_t)size);
  fseek(f, 0, SEEK_SET);
  CHECK(fread(data, 1, (size_t)size, f) == (size_t)size);
  fclose(f);
  int died = 0, same = 0, wrong = 0;
  for (long pos = 0; pos < size; pos += 41) {
    data[pos] ^= 0x55;
    FILE *g = fopen(bad, "wb");
    fwrite(data, 1, (size_t)size, g);
    fclose(g);
    data[pos] ^= 0x55;
    int rc = load_matches(bad, t, ref, vocab, text);
    if (rc == 1) died++;
    else if (rc == 0) same++;
    else {
      wrong++;
      fprintf(stderr, "flipped byte %ld of %ld: load ended with status %d\n", pos, size, rc);
    }
  }
  printf("corruption sweep: %d flips detected, %d harmless, %d wrong\n", died, same, wrong);
  CHECK_INT(wrong, 0);
  CHECK(died > 4 * same);
  free(data);
  free(ref);
  free(text);
  vocab_free(vocab);
  params_free(t);
}

int main(void) {
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 2;
  }
  test_bert_base_layout();
  test_presets();
  test_init_statistics();
  test_init_determinism();
  test_roundtrip();
  test_errors();
  test_corruption_sweep();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmpdir);
  return test_finish();
}
