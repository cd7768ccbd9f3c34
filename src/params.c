#define _POSIX_C_SOURCE 200809L
#include "params.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "util.h"

void model_config_check(const Config *c) {
  if (c->model.hidden % c->model.heads != 0)
    die("model.hidden (%d) must be a multiple of model.heads (%d)", c->model.hidden,
        c->model.heads);
  if (c->data.seq_length > c->model.max_position)
    die("data.seq_length (%d) exceeds model.max_position (%d): the position embeddings "
        "cannot cover the sequence", c->data.seq_length, c->model.max_position);
}

ModelShape model_shape(const Config *c, int vocab_size, int num_labels, int pretraining) {
  ModelShape s = {
    .vocab = vocab_size,
    .hidden = c->model.hidden,
    .layers = c->model.layers,
    .heads = c->model.heads,
    .intermediate = c->model.intermediate,
    .max_position = c->model.max_position,
    .type_vocab = c->model.type_vocab,
    .num_labels = num_labels,
    .pretraining = pretraining ? 1 : 0,
  };
  return s;
}

static void check_shape(const ModelShape *s) {
  if (s->vocab < 1 || s->hidden < 1 || s->layers < 1 || s->heads < 1 || s->intermediate < 1 ||
      s->max_position < 1 || s->type_vocab < 1 || s->num_labels < 0)
    die("impossible model shape: vocab %d, hidden %d, layers %d, heads %d, intermediate %d, "
        "max_position %d, type_vocab %d, num_labels %d", s->vocab, s->hidden, s->layers, s->heads,
        s->intermediate, s->max_position, s->type_vocab, s->num_labels);
  if (s->hidden % s->heads != 0)
    die("model.hidden (%d) must be a multiple of model.heads (%d)", s->hidden, s->heads);
}

typedef struct Builder {
  ParamTable *t;
  size_t cap;
  ParamPart part;
} Builder;

static void add(Builder *b, int rows, int cols, ParamInit init, const char *fmt, ...)
    PRINTF_LIKE(5, 6);

/* cols == 0 means a 1-D tensor of rows elements. */
static void add(Builder *b, int rows, int cols, ParamInit init, const char *fmt, ...) {
  ParamTable *t = b->t;
  grow((void **)&t->p, &b->cap, (size_t)t->n + 1, sizeof *t->p);
  Param *p = &t->p[t->n++];
  memset(p, 0, sizeof *p);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->name, sizeof p->name, fmt, ap);
  va_end(ap);
  p->ndim = cols ? 2 : 1;
  p->shape[0] = rows;
  p->shape[1] = cols ? cols : 1;
  p->count = (size_t)rows * (size_t)p->shape[1];
  p->offset = (t->size + PARAM_ALIGN - 1) / PARAM_ALIGN * PARAM_ALIGN;
  p->init = init;
  p->part = b->part;
  /* Weight decay applies to matrices only, as in BERT's optimizer, which
   * exempts LayerNorm parameters and biases. */
  p->no_decay = cols == 0;
  t->size = p->offset + p->count;
  t->count += p->count;
}

/* Storage for `rows` rows of the tensor added last (which has fewer); the
 * rows beyond it are zero, as the alignment gaps are. */
static void reserve_rows(Builder *b, int rows) {
  const Param *p = &b->t->p[b->t->n - 1];
  b->t->size = p->offset + (size_t)rows * (size_t)p->shape[1];
}

/* Layer l's tensor "what" (l >= 0) or the tensor "what" itself (l < 0). */
#define NAMED(b, rows, cols, init, l, what, suffix)                                     \
  ((l) < 0 ? add(b, rows, cols, init, "%s." suffix, what)                               \
           : add(b, rows, cols, init, "bert.encoder.layer.%d.%s." suffix, l, what))

static void linear(Builder *b, int l, const char *what, int out, int in) {
  NAMED(b, out, in, INIT_NORMAL, l, what, "weight");
  NAMED(b, out, 0, INIT_ZEROS, l, what, "bias");
}

static void layer_norm(Builder *b, int l, const char *what, int n) {
  NAMED(b, n, 0, INIT_ONES, l, what, "weight");
  NAMED(b, n, 0, INIT_ZEROS, l, what, "bias");
}

/* Query, key and value weights side by side, then their biases, so that
 * one [3h, h] product computes all three (when h * h and h are multiples
 * of PARAM_ALIGN, the offsets leave no gaps between them). */
static void attention_qkv(Builder *b, int l, int h) {
  const char *what[3] = {"attention.self.query", "attention.self.key", "attention.self.value"};
  for (int i = 0; i < 3; i++) NAMED(b, h, h, INIT_NORMAL, l, what[i], "weight");
  for (int i = 0; i < 3; i++) NAMED(b, h, 0, INIT_ZEROS, l, what[i], "bias");
}

static void encoder_layer(Builder *b, const ModelShape *s, int l) {
  int h = s->hidden;
  attention_qkv(b, l, h);
  linear(b, l, "attention.output.dense", h, h);
  layer_norm(b, l, "attention.output.LayerNorm", h);
  linear(b, l, "intermediate.dense", s->intermediate, h);
  linear(b, l, "output.dense", h, s->intermediate);
  layer_norm(b, l, "output.LayerNorm", h);
}

ParamTable *params_build(const ModelShape *s) {
  check_shape(s);
  ParamTable *t = xcalloc(1, sizeof *t);
  t->shape = *s;
  Builder b = {t, 0, PART_BERT};
  int h = s->hidden;
  t->vocab_rows = (s->vocab + PARAM_VOCAB_ROUND - 1) / PARAM_VOCAB_ROUND * PARAM_VOCAB_ROUND;
  add(&b, s->vocab, h, INIT_NORMAL, "bert.embeddings.word_embeddings.weight");
  reserve_rows(&b, t->vocab_rows);
  add(&b, s->max_position, h, INIT_NORMAL, "bert.embeddings.position_embeddings.weight");
  add(&b, s->type_vocab, h, INIT_NORMAL, "bert.embeddings.token_type_embeddings.weight");
  layer_norm(&b, -1, "bert.embeddings.LayerNorm", h);
  for (int l = 0; l < s->layers; l++) encoder_layer(&b, s, l);
  linear(&b, -1, "bert.pooler.dense", h, h);
  if (s->pretraining) {
    b.part = PART_PRETRAIN;
    add(&b, s->vocab, 0, INIT_ZEROS, "cls.predictions.bias");
    reserve_rows(&b, t->vocab_rows);
    linear(&b, -1, "cls.predictions.transform.dense", h, h);
    layer_norm(&b, -1, "cls.predictions.transform.LayerNorm", h);
    linear(&b, -1, "cls.seq_relationship", 2, h);
  }
  if (s->num_labels > 0) {
    b.part = PART_CLASSIFIER;
    linear(&b, -1, "classifier", s->num_labels, h);
  }
  t->size = (t->size + PARAM_ALIGN - 1) / PARAM_ALIGN * PARAM_ALIGN;
  return t;
}

void params_free(ParamTable *t) {
  if (!t) return;
  free(t->p);
  free(t);
}

size_t params_count(const ParamTable *t) { return t->count; }
size_t params_size(const ParamTable *t) { return t->size; }

const Param *params_find(const ParamTable *t, const char *name) {
  for (int i = 0; i < t->n; i++)
    if (strcmp(t->p[i].name, name) == 0) return &t->p[i];
  return NULL;
}

const Param *params_get(const ParamTable *t, const char *name) {
  const Param *p = params_find(t, name);
  if (!p) die("the model has no parameter tensor '%s'", name);
  return p;
}

const Param *params_layer(const ParamTable *t, int layer, const char *suffix) {
  char name[PARAM_NAME_MAX * 2];
  snprintf(name, sizeof name, "bert.encoder.layer.%d.%s", layer, suffix);
  return params_get(t, name);
}

float *params_view(const ParamTable *t, float *buf, const char *name) {
  return buf + params_get(t, name)->offset;
}

float *params_alloc_host(const ParamTable *t) {
  void *p = NULL;
  size_t bytes = t->size * sizeof(float);
  if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
    die("out of memory allocating %zu parameter floats", t->size);
  memset(p, 0, bytes);
  return p;
}

/* Standard normal pairs by Box-Muller; both values are used. */
typedef struct Normal {
  Rng rng;
  double spare;
  int has_spare;
} Normal;

static double std_normal(Normal *g) {
  if (g->has_spare) {
    g->has_spare = 0;
    return g->spare;
  }
  double u1 = 1.0 - rng_uniform(&g->rng); /* (0, 1]: log is finite */
  double u2 = rng_uniform(&g->rng);
  double r = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
  g->spare = r * sin(a);
  g->has_spare = 1;
  return r * cos(a);
}

static void fill_truncated_normal(float *x, size_t n, uint64_t seed, const char *name,
                                  double std) {
  uint64_t h = fnv1a64("init/", 5, FNV1A64_INIT);
  h = fnv1a64(name, strlen(name), h);
  Normal g = {.has_spare = 0};
  rng_init(&g.rng, seed, (uint32_t)h, (uint32_t)(h >> 32));
  for (size_t i = 0; i < n; i++) {
    double z;
    do z = std_normal(&g);
    while (fabs(z) > 2.0);
    x[i] = (float)(std * z);
  }
}

void params_init_one(const ParamTable *t, const Param *p, float *buf, uint64_t seed,
                     double init_range, int pad_id) {
  float *x = buf + p->offset;
  switch (p->init) {
  case INIT_NORMAL: fill_truncated_normal(x, p->count, seed, p->name, init_range); break;
  case INIT_ZEROS: memset(x, 0, p->count * sizeof *x); break;
  case INIT_ONES:
    for (size_t i = 0; i < p->count; i++) x[i] = 1.0f;
    break;
  }
  if (pad_id >= 0 && pad_id < t->shape.vocab &&
      strcmp(p->name, "bert.embeddings.word_embeddings.weight") == 0)
    memset(x + (size_t)pad_id * (size_t)p->shape[1], 0, (size_t)p->shape[1] * sizeof *x);
}

void params_init(const ParamTable *t, float *buf, uint64_t seed, double init_range, int pad_id) {
  memset(buf, 0, t->size * sizeof *buf); /* the alignment gaps */
  for (int i = 0; i < t->n; i++) params_init_one(t, &t->p[i], buf, seed, init_range, pad_id);
}
