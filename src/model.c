/* The Model: buffers allocated once, batch validation and upload, the
 * forward / backward driver, optimizer steps and host transfers. The layer
 * and head arithmetic lives in model_encoder.c and model_heads.c. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"
#include "util.h"

/* ---- allocation ---- */

/* p, kept to be freed with the model. */
static void *track(Model *m, void *p) {
  grow((void **)&m->allocs, &m->alloc_cap, m->nalloc + 1, sizeof *m->allocs);
  m->allocs[m->nalloc++] = p;
  return p;
}
static float *fbuf(Model *m, size_t n) { return track(m, m->ops->alloc(n * sizeof(float))); }
static int32_t *ibuf(Model *m, size_t n) { return track(m, m->ops->alloc(n * sizeof(int32_t))); }
/* An activation buffer (the backend may keep it in bf16: Ops.alloc_act). */
static float *abuf(Model *m, size_t n) { return track(m, m->ops->alloc_act(n * sizeof(float))); }

static size_t off(const ParamTable *t, const char *name) { return params_get(t, name)->offset; }
static size_t off_opt(const ParamTable *t, const char *name) {
  const Param *p = params_find(t, name);
  return p ? p->offset : SIZE_MAX;
}

static void find_offsets(Model *m) {
  const ParamTable *t = m->t;
  TopOff *o = &m->top;
  o->wte = off(t, "bert.embeddings.word_embeddings.weight");
  o->wpe = off(t, "bert.embeddings.position_embeddings.weight");
  o->wtt = off(t, "bert.embeddings.token_type_embeddings.weight");
  o->eln_w = off(t, "bert.embeddings.LayerNorm.weight");
  o->eln_b = off(t, "bert.embeddings.LayerNorm.bias");
  o->pool_w = off(t, "bert.pooler.dense.weight");
  o->pool_b = off(t, "bert.pooler.dense.bias");
  o->mlm_bias = off_opt(t, "cls.predictions.bias");
  o->tr_w = off_opt(t, "cls.predictions.transform.dense.weight");
  o->tr_b = off_opt(t, "cls.predictions.transform.dense.bias");
  o->tln_w = off_opt(t, "cls.predictions.transform.LayerNorm.weight");
  o->tln_b = off_opt(t, "cls.predictions.transform.LayerNorm.bias");
  o->nsp_w = off_opt(t, "cls.seq_relationship.weight");
  o->nsp_b = off_opt(t, "cls.seq_relationship.bias");
  o->cls_w = off_opt(t, "classifier.weight");
  o->cls_b = off_opt(t, "classifier.bias");
  m->lay = xcalloc((size_t)m->L, sizeof *m->lay);
  for (int l = 0; l < m->L; l++) {
    LayerOff *y = &m->lay[l];
    y->q_w = params_layer(t, l, "attention.self.query.weight")->offset;
    y->q_b = params_layer(t, l, "attention.self.query.bias")->offset;
    y->k_w = params_layer(t, l, "attention.self.key.weight")->offset;
    y->k_b = params_layer(t, l, "attention.self.key.bias")->offset;
    y->v_w = params_layer(t, l, "attention.self.value.weight")->offset;
    y->v_b = params_layer(t, l, "attention.self.value.bias")->offset;
    y->ao_w = params_layer(t, l, "attention.output.dense.weight")->offset;
    y->ao_b = params_layer(t, l, "attention.output.dense.bias")->offset;
    y->ln1_w = params_layer(t, l, "attention.output.LayerNorm.weight")->offset;
    y->ln1_b = params_layer(t, l, "attention.output.LayerNorm.bias")->offset;
    y->in_w = params_layer(t, l, "intermediate.dense.weight")->offset;
    y->in_b = params_layer(t, l, "intermediate.dense.bias")->offset;
    y->out_w = params_layer(t, l, "output.dense.weight")->offset;
    y->out_b = params_layer(t, l, "output.dense.bias")->offset;
    y->ln2_w = params_layer(t, l, "output.LayerNorm.weight")->offset;
    y->ln2_b = params_layer(t, l, "output.LayerNorm.bias")->offset;
  }
  size_t HH = (size_t)m->H * (size_t)m->H;
  m->qkv_fused = 1;
  for (int l = 0; l < m->L; l++) {
    const LayerOff *y = &m->lay[l];
    m->qkv_fused &= y->k_w == y->q_w + HH && y->v_w == y->k_w + HH &&
                    y->k_b == y->q_b + (size_t)m->H && y->v_b == y->k_b + (size_t)m->H;
  }
  m->qkv_ld = m->qkv_fused ? 3 * m->H : m->H;
}

/* The three thirds of one [n, 3H] buffer: interleaved per token when the
 * product is fused, else one [n, H] block after another. */
static void qkv_split(const Model *m, float *buf, size_t n, float **q, float **k, float **v) {
  size_t step = m->qkv_fused ? (size_t)m->H : n * (size_t)m->H;
  *q = buf;
  *k = buf + step;
  *v = buf + 2 * step;
}

/* The tensors a mode trains: BertModel plus its own head. */
/* Where each encoder layer's tensors start in the buffer (they are added
 * layer by layer, after the embeddings), and where the pooler and heads
 * start after them. */
static void find_parts(Model *m) {
  const ParamTable *t = m->t;
  m->part = xcalloc((size_t)m->L + 1, sizeof *m->part);
  int i = 0;
  for (int l = 0; l < m->L; l++) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "bert.encoder.layer.%d.", l);
    while (i < t->n && strncmp(t->p[i].name, prefix, strlen(prefix)) != 0) i++;
    if (i == t->n) die("model: no tensors of encoder layer %d in the parameter table", l);
    m->part[l] = t->p[i].offset;
  }
  while (i < t->n && strncmp(t->p[i].name, "bert.encoder.layer.", 19) == 0) i++;
  m->part[m->L] = i < t->n ? t->p[i].offset : t->size;
}

static void build_ranges(Model *m) {
  ParamPart head = m->o.mode == MODEL_PRETRAIN ? PART_PRETRAIN : PART_CLASSIFIER;
  m->ranges = xcalloc((size_t)m->t->n, sizeof *m->ranges);
  for (int i = 0; i < m->t->n; i++) {
    const Param *p = &m->t->p[i];
    if (p->part != PART_BERT && p->part != head) continue;
    ParamRange *r = &m->ranges[m->nranges++];
    r->offset = p->offset;
    r->count = p->count;
    r->decay = !p->no_decay;
  }
}

static void alloc_layers(Model *m, size_t n, size_t probs) {
  size_t H = (size_t)m->H, I = (size_t)m->I;
  int sets = m->o.training ? m->L : 1; /* eval-only: one set serves every layer */
  m->act = xcalloc((size_t)m->L, sizeof *m->act);
  for (int l = 0; l < sets; l++) {
    LayerAct *a = &m->act[l];
    qkv_split(m, abuf(m, 3 * n * H), n, &a->q, &a->k, &a->v);
    a->probs = abuf(m, probs);
    a->ctx = abuf(m, n * H);
    a->r1 = abuf(m, n * H);
    a->a = abuf(m, n * H);
    a->mean1 = fbuf(m, n);
    a->rstd1 = fbuf(m, n);
    a->h1 = abuf(m, n * I);
    a->g = abuf(m, n * I);
    a->r2 = abuf(m, n * H);
    a->mean2 = fbuf(m, n);
    a->rstd2 = fbuf(m, n);
  }
  for (int l = sets; l < m->L; l++) m->act[l] = m->act[0];
  m->hidden = xcalloc((size_t)m->L + 1, sizeof *m->hidden);
  if (m->o.training) {
    for (int l = 0; l <= m->L; l++) m->hidden[l] = abuf(m, n * H);
  } else { /* layer l reads hidden[l] and writes hidden[l+1]: two buffers alternate */
    float *h0 = abuf(m, n * H), *h1 = abuf(m, n * H);
    for (int l = 0; l <= m->L; l++) m->hidden[l] = l % 2 ? h1 : h0;
  }
}

/* Each part rounded up to 64 elements, so that every view is as aligned as
 * a buffer of its own (the fast paths of the kernels that read them want
 * 16-byte alignment). */
static size_t part_len(size_t n) { return (n + 63) / 64 * 64; }

static void alloc_inputs(Model *m, size_t n, size_t B, size_t BP) {
  const size_t len[7] = {part_len(n), part_len(n), part_len(n), part_len(B), part_len(B),
                         part_len(BP), part_len(BP)};
  int32_t **view[7] = {&m->ids, &m->types, &m->mask, &m->cls_idx, &m->labels, &m->mlm_idx,
                       &m->mlm_lab};
  m->inputs_n = 0;
  for (int i = 0; i < 7; i++) m->inputs_n += len[i];
  m->inputs = ibuf(m, m->inputs_n);
  m->h_inputs = xcalloc(m->inputs_n, sizeof *m->h_inputs);
  size_t at = 0;
  for (int i = 0; i < 7; i++) {
    *view[i] = m->inputs + at;
    at += len[i];
  }
}

/* The host staging part of device view v. */
static int32_t *staged(const Model *m, const int32_t *v) { return m->h_inputs + (v - m->inputs); }

static void alloc_buffers(Model *m) {
  const ModelOpts *o = &m->o;
  size_t H = (size_t)m->H, B = (size_t)o->max_batch, S = (size_t)o->seq_len;
  size_t n = B * S, BP = B * (size_t)(o->mode == MODEL_PRETRAIN ? o->max_pred : 1);
  size_t sz = m->t->size;
  m->params = fbuf(m, sz);
  m->ops->params_at(m->params, sz);
  if (o->training) {
    m->grads = fbuf(m, sz);
    m->m = fbuf(m, sz);
    m->v = fbuf(m, sz);
    m->grad_sumsq = fbuf(m, 1);
  }
  alloc_inputs(m, n, B, BP);

  m->emb = abuf(m, n * H);
  m->emb_mean = fbuf(m, n);
  m->emb_rstd = fbuf(m, n);
  alloc_layers(m, n, B * (size_t)m->nh * S * S);
  m->first = abuf(m, B * H);
  m->pooled = abuf(m, B * H);
  m->pooled_drop = abuf(m, B * H);
  m->cls_logits = abuf(m, B * (size_t)m->ncls);
  m->xent = fbuf(m, 6);
  if (o->mode == MODEL_PRETRAIN) {
    m->gath = abuf(m, BP * H);
    m->t1 = abuf(m, BP * H);
    m->t2 = abuf(m, BP * H);
    m->t3 = abuf(m, BP * H);
    m->t_mean = fbuf(m, BP);
    m->t_rstd = fbuf(m, BP);
    m->mlm_logits = abuf(m, BP * (size_t)m->Vp);
  }
  if (!o->training) return;
  m->dh = abuf(m, n * H);
  m->tmp = abuf(m, n * H);
  m->dctx = abuf(m, n * H);
  qkv_split(m, abuf(m, 3 * n * H), n, &m->dq, &m->dk, &m->dv);
  m->dg = abuf(m, n * (size_t)m->I);
  m->dfirst = abuf(m, B * H);
  m->dpool = abuf(m, B * H);
  m->pad_row = fbuf(m, H);
  if (o->mode == MODEL_PRETRAIN) {
    m->dgath = abuf(m, BP * H);
    m->dt = abuf(m, BP * H);
  }
}

static void check_opts(const ParamTable *t, const ModelOpts *o) {
  const ModelShape *s = &t->shape;
  if (o->mode == MODEL_PRETRAIN && !s->pretraining)
    die("model: pre-training needs the pre-training heads (cls.*), which this model lacks");
  if (o->mode == MODEL_CLASSIFY && s->num_labels < 2)
    die("model: classification needs a classifier with at least 2 labels (num_labels %d)",
        s->num_labels);
  if (o->mode != MODEL_PRETRAIN && o->mode != MODEL_CLASSIFY)
    die("model: unknown mode %d", (int)o->mode);
  if (o->max_batch < 1 || o->seq_len < 1)
    die("model: batch size (%d) and sequence length (%d) must be positive", o->max_batch,
        o->seq_len);
  if (o->seq_len > s->max_position)
    die("model: sequence length %d exceeds model.max_position (%d)", o->seq_len,
        s->max_position);
  if (o->mode == MODEL_PRETRAIN && (o->max_pred < 1 || o->max_pred > o->seq_len))
    die("model: max predictions per sequence (%d) must be in [1, %d]", o->max_pred, o->seq_len);
  if (!(o->dropout >= 0.0f && o->dropout < 1.0f) ||
      !(o->attn_dropout >= 0.0f && o->attn_dropout < 1.0f))
    die("model: dropout probabilities must be in [0, 1) (got %g and %g)", o->dropout,
        o->attn_dropout);
  if (o->pad_id >= s->vocab) die("model: pad id %d is outside the vocabulary (%d)", o->pad_id,
                                 s->vocab);
}

Model *model_new(const Ops *ops, const ParamTable *t, const ModelOpts *o) {
  check_opts(t, o);
  Model *m = xcalloc(1, sizeof *m);
  m->ops = ops;
  m->t = t;
  m->o = *o;
  const ModelShape *s = &t->shape;
  m->V = s->vocab;
  m->Vp = t->vocab_rows;
  m->H = s->hidden;
  m->L = s->layers;
  m->nh = s->heads;
  m->hd = s->hidden / s->heads;
  m->I = s->intermediate;
  m->T = s->type_vocab;
  m->ncls = o->mode == MODEL_PRETRAIN ? 2 : s->num_labels;
  find_offsets(m);
  build_ranges(m);
  find_parts(m);
  alloc_buffers(m);
  return m;
}

void model_free(Model *m) {
  if (!m) return;
  for (size_t i = 0; i < m->nalloc; i++) m->ops->free(m->allocs[i]);
  free(m->allocs);
  free(m->lay);
  free(m->ranges);
  free(m->part);
  free(m->act);
  free(m->hidden);
  free(m->h_inputs);
  free(m);
}

const ParamTable *model_table(const Model *m) { return m->t; }
const ModelOpts *model_opts(const Model *m) { return &m->o; }

DropoutKey model_drop_key(const Model *m, uint32_t tensor, uint64_t per_sample) {
  DropoutKey k = {m->drop.seed, m->drop.step, tensor, m->drop.first_sample * per_sample};
  return k;
}

/* ---- batch validation and upload ---- */

static void check_range(const char *what, const int32_t *x, int B, int S, int lo, int hi) {
  if (!x) return;
  for (int i = 0; i < B * S; i++)
    if (x[i] < lo || x[i] >= hi)
      die("batch: %s[sample %d, position %d] = %d is outside [%d, %d)", what, i / S, i % S,
          (int)x[i], lo, hi);
}

static void check_batch(const Model *m, const Batch *b, int train) {
  const ModelOpts *o = &m->o;
  if (b->B < 1 || b->B > o->max_batch)
    die("batch: %d samples, the model takes 1 to %d", b->B, o->max_batch);
  if (b->S < 1 || b->S > o->seq_len)
    die("batch: sequence length %d, the model takes 1 to %d", b->S, o->seq_len);
  if (!b->input_ids) die("batch: input_ids missing");
  check_range("input_ids", b->input_ids, b->B, b->S, 0, m->V);
  check_range("segment_ids", b->segment_ids, b->B, b->S, 0, m->T);
  check_range("input_mask", b->input_mask, b->B, b->S, 0, 2);
  check_range("labels", b->labels, b->B, 1, -1, m->ncls);
  if (o->mode == MODEL_PRETRAIN) {
    if (b->P < 1 || b->P > o->max_pred)
      die("batch: %d predictions per sequence, the model takes 1 to %d", b->P, o->max_pred);
    if (!b->mlm_positions) die("batch: masked_lm_positions missing");
    check_range("masked_lm_positions", b->mlm_positions, b->B, b->P, 0, b->S);
    check_range("masked_lm_ids", b->mlm_ids, b->B, b->P, 0, m->V);
    if (train && !b->mlm_ids) die("batch: training needs masked_lm_ids");
  }
  if (train && !b->labels)
    die("batch: training needs %s labels", o->mode == MODEL_PRETRAIN ? "next-sentence" : "class");
}

/* Copies n elements of src (NULL: fill) into view v's staging part. */
static void stage(const Model *m, const int32_t *v, const int32_t *src, size_t n, int32_t fill) {
  int32_t *h = staged(m, v);
  if (src) memcpy(h, src, n * sizeof *h);
  else for (size_t i = 0; i < n; i++) h[i] = fill;
}

/* Uploads the batch in one transfer (a transfer is a wait on the device
 * while it is idle); returns the counted MLM positions and labels. */
static void upload(Model *m, const Batch *b, long *mlm_count, long *cls_count) {
  size_t n = (size_t)b->B * b->S;
  stage(m, m->ids, b->input_ids, n, 0);
  stage(m, m->types, b->segment_ids, n, 0);
  stage(m, m->mask, b->input_mask, n, 1);
  int32_t *cls = staged(m, m->cls_idx);
  for (int i = 0; i < b->B; i++) cls[i] = i * b->S;
  *cls_count = 0;
  if (b->labels) {
    stage(m, m->labels, b->labels, (size_t)b->B, 0);
    for (int i = 0; i < b->B; i++) *cls_count += b->labels[i] >= 0;
  }
  *mlm_count = 0;
  if (m->o.mode == MODEL_PRETRAIN) {
    int32_t *idx = staged(m, m->mlm_idx), *lab = staged(m, m->mlm_lab);
    for (int i = 0; i < b->B * b->P; i++) {
      int pos = b->mlm_positions[i], id = b->mlm_ids ? b->mlm_ids[i] : -1;
      idx[i] = (i / b->P) * b->S + pos;
      lab[i] = (pos == 0 && id == 0) ? -1 : id;
      *mlm_count += lab[i] >= 0;
    }
  }
  m->ops->to_device(m->inputs, m->h_inputs, m->inputs_n * sizeof(int32_t));
}

/* ---- forward / backward ---- */

void model_forward_backward(Model *m, const Batch *b, int train, DropoutCtx d, float loss_weight,
                            Stats *out) {
  if (train && !m->o.training) die("model: a training call on a model built for inference");
  check_batch(m, b, train);
  long mlm_count, cls_count;
  upload(m, b, &mlm_count, &cls_count);
  m->B = b->B;
  m->S = b->S;
  m->P = m->o.mode == MODEL_PRETRAIN ? b->P : 0;
  m->p_hid = train ? m->o.dropout : 0.0f;
  m->p_attn = train ? m->o.attn_dropout : 0.0f;
  m->drop = d;
  m->has_labels = b->labels != NULL;
  m->has_mlm_labels = m->o.mode == MODEL_PRETRAIN && b->mlm_ids != NULL;
  m->mlm_bwd = train && m->has_mlm_labels && mlm_count > 0;
  m->cls_bwd = train && m->has_labels && cls_count > 0;

  encoder_forward(m);
  heads_forward(m);
  /* the backward is issued before the losses are read: reading them waits
   * for the device, which would then idle until the backward's first
   * launch (the losses are the heads' first step back) */
  if (m->mlm_bwd || m->cls_bwd) {
    m->ops->zero(m->dh, (size_t)m->B * m->S * m->H * sizeof(float));
    heads_backward(m, loss_weight, mlm_count, cls_count);
    model_grads_ready(m, m->L);
    encoder_backward(m);
  }

  float x[6] = {0};
  m->ops->to_host(x, m->xent, sizeof x);
  Stats st = {0};
  if (m->has_mlm_labels) {
    st.mlm_loss = x[0];
    st.mlm_correct = lround(x[1]);
    st.mlm_count = mlm_count;
  }
  if (m->has_labels) {
    st.cls_loss = x[3];
    st.cls_correct = lround(x[4]);
    st.cls_count = cls_count;
  }
  st.loss = st.mlm_loss + st.cls_loss;
  if (out) *out = st;
}

void model_set_grad_hook(Model *m, GradReadyFn fn, void *ctx) {
  m->grad_ready = fn;
  m->grad_ready_ctx = ctx;
}

void model_grads_ready(Model *m, int part) {
  if (!m->grad_ready) return;
  size_t lo = part < 0 ? 0 : m->part[part];
  size_t hi = part < 0 ? m->part[0] : part < m->L ? m->part[part + 1] : m->t->size;
  m->grad_ready(m->grad_ready_ctx, lo, hi - lo);
}

/* ---- outputs ---- */

void model_mlm_logits(const Model *m, float *host) {
  if (m->o.mode != MODEL_PRETRAIN) die("model: no MLM logits outside pre-training");
  size_t rows = (size_t)m->B * m->P, V = (size_t)m->V, Vp = (size_t)m->Vp;
  if (Vp == V) {
    m->ops->to_host(host, m->mlm_logits, rows * V * sizeof(float));
    return;
  }
  float *all = xmalloc(rows * Vp * sizeof *all); /* rows of Vp: the stored rows */
  m->ops->to_host(all, m->mlm_logits, rows * Vp * sizeof(float));
  for (size_t r = 0; r < rows; r++) memcpy(host + r * V, all + r * Vp, V * sizeof *host);
  free(all);
}
void model_cls_logits(const Model *m, float *host) {
  m->ops->to_host(host, m->cls_logits, (size_t)m->B * m->ncls * sizeof(float));
}
void model_sequence_output(const Model *m, float *host) {
  m->ops->to_host(host, m->hidden[m->L], (size_t)m->B * m->S * m->H * sizeof(float));
}
void model_pooled_output(const Model *m, float *host) {
  m->ops->to_host(host, m->pooled, (size_t)m->B * m->H * sizeof(float));
}

/* ---- training ---- */

static void need_training(const Model *m, const char *what) {
  if (!m->o.training) die("model: %s needs a model built for training", what);
}

void model_zero_grad(Model *m) {
  need_training(m, "model_zero_grad");
  m->ops->zero(m->grads, m->t->size * sizeof(float));
}

static void grad_sumsq(Model *m) { m->ops->sumsq(m->grad_sumsq, m->grads, m->t->size); }

float model_last_grad_norm(Model *m) {
  need_training(m, "model_last_grad_norm");
  float s;
  m->ops->to_host(&s, m->grad_sumsq, sizeof s);
  return sqrtf(s);
}

float model_grad_norm(Model *m) {
  need_training(m, "model_grad_norm");
  grad_sumsq(m);
  return model_last_grad_norm(m);
}

void model_step(Model *m, ModelOptKind kind, const OptParams *o) {
  need_training(m, "model_step");
  if (kind == OPT_LAMB) m->ops->lamb(m->params, m->grads, m->m, m->v, m->ranges, m->nranges, o);
  else m->ops->adamw(m->params, m->grads, m->m, m->v, m->ranges, m->nranges, o);
}

void model_step_clipped(Model *m, ModelOptKind kind, const OptParams *o, float max_norm) {
  need_training(m, "model_step_clipped");
  grad_sumsq(m);
  OptParams c = *o;
  c.grad_sumsq = m->grad_sumsq;
  c.max_norm = max_norm;
  model_step(m, kind, &c);
}

/* ---- transfers ---- */

static size_t bytes(const Model *m) { return m->t->size * sizeof(float); }

void model_params_to_host(const Model *m, float *host) { m->ops->to_host(host, m->params, bytes(m)); }
void model_params_from_host(Model *m, const float *host) {
  m->ops->to_device(m->params, host, bytes(m));
}
void model_init_params(Model *m, uint64_t seed, double init_range, int pad_id) {
  float *h = params_alloc_host(m->t);
  params_init(m->t, h, seed, init_range, pad_id);
  model_params_from_host(m, h);
  free(h);
}
void model_opt_to_host(const Model *m, float *m_host, float *v_host) {
  need_training(m, "model_opt_to_host");
  m->ops->to_host(m_host, m->m, bytes(m));
  m->ops->to_host(v_host, m->v, bytes(m));
}
void model_opt_from_host(Model *m, const float *m_host, const float *v_host) {
  need_training(m, "model_opt_from_host");
  m->ops->to_device(m->m, m_host, bytes(m));
  m->ops->to_device(m->v, v_host, bytes(m));
}
void model_grads_to_host(const Model *m, float *host) {
  need_training(m, "model_grads_to_host");
  m->ops->to_host(host, m->grads, bytes(m));
}
float *model_params_dev(Model *m) { return m->params; }
float *model_grads_dev(Model *m) {
  need_training(m, "model_grads_dev");
  return m->grads;
}
size_t model_buffer_size(const Model *m) { return m->t->size; }

double model_train_flops(const ModelShape *s, ModelMode mode, int B, int S, int P) {
  double H = s->hidden, I = s->intermediate, L = s->layers, V = s->vocab;
  double fwd = S * L * 2.0 * (4.0 * H * H + 2.0 * H * I) + L * 4.0 * (double)S * S * H +
               2.0 * H * H;
  if (mode == MODEL_PRETRAIN) fwd += 2.0 * H * 2.0 + P * (2.0 * H * H + 2.0 * H * V);
  else fwd += 2.0 * H * s->num_labels;
  return 3.0 * B * fwd;
}
