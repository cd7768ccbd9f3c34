/* The pooler and the heads: masked LM (on the gathered masked positions
 * only, decoder tied to the word embeddings), next-sentence prediction and
 * the sequence classifier. Their backward passes add the gradient of the
 * sequence output into m->dh through gather_bwd. */
#include "model_internal.h"

static void pooler_forward(Model *m) {
  const Ops *o = m->ops;
  int B = m->B, H = m->H;
  o->gather_fwd(m->first, m->hidden[m->L], m->cls_idx, B, B * m->S, H);
  o->linear_fwd(m->pooled, m->first, W(m, m->top.pool_w), W(m, m->top.pool_b), B, H, H);
  o->tanh_fwd(m->pooled, m->pooled, (size_t)B * H);
}

/* m->dpool holds d(pooled) on entry. */
static void pooler_backward(Model *m) {
  const Ops *o = m->ops;
  int B = m->B, H = m->H;
  o->tanh_bwd(m->dpool, m->dpool, m->pooled, (size_t)B * H);
  o->linear_bwd(m->dfirst, G(m, m->top.pool_w), G(m, m->top.pool_b), m->dpool, m->first,
                W(m, m->top.pool_w), B, H, H, 0);
  o->gather_bwd(m->dh, m->dfirst, m->cls_idx, B, B * m->S, H);
}

static void mlm_forward(Model *m) {
  const Ops *o = m->ops;
  const TopOff *t = &m->top;
  int np = m->B * m->P, H = m->H;
  o->gather_fwd(m->gath, m->hidden[m->L], m->mlm_idx, np, m->B * m->S, H);
  o->linear_fwd(m->t1, m->gath, W(m, t->tr_w), W(m, t->tr_b), np, H, H);
  o->gelu_fwd(m->t2, m->t1, (size_t)np * H);
  o->layernorm_fwd(m->t3, m->t_mean, m->t_rstd, m->t2, W(m, t->tln_w), W(m, t->tln_b), np, H,
                   BERT_LN_EPS);
  /* over the stored rows (Vp): the extra logits are 0 and xent skips them */
  o->linear_fwd(m->mlm_logits, m->t3, W(m, t->wte), W(m, t->mlm_bias), np, H, m->Vp);
  if (m->has_mlm_labels && !m->mlm_bwd)
    o->xent_fwd(m->xent, m->mlm_logits, m->mlm_lab, np, m->V, m->Vp);
}

static void mlm_backward(Model *m, float scale) {
  const Ops *o = m->ops;
  const TopOff *t = &m->top;
  int np = m->B * m->P, H = m->H;
  float *dlogits = m->mlm_logits; /* in place: the logits are not needed again */
  o->xent_bwd(dlogits, m->xent, m->mlm_logits, m->mlm_lab, np, m->V, m->Vp, scale);
  /* the tied decoder's weight gradient lands in the word embeddings' */
  o->linear_bwd(m->dt, G(m, t->wte), G(m, t->mlm_bias), dlogits, m->t3, W(m, t->wte), np, H,
                m->Vp, 0);
  o->layernorm_bwd(m->dt, G(m, t->tln_w), G(m, t->tln_b), m->dt, m->t2, m->t_mean, m->t_rstd,
                   W(m, t->tln_w), np, H);
  o->gelu_bwd(m->dt, G(m, t->tr_b), m->dt, m->t1, (size_t)np * H, H);
  o->linear_bwd(m->dgath, G(m, t->tr_w), NULL, m->dt, m->gath, W(m, t->tr_w), np, H, H, 0);
  o->gather_bwd(m->dh, m->dgath, m->mlm_idx, np, m->B * m->S, H);
}

/* The input of the NSP / classifier dense layer. */
static const float *cls_input(const Model *m) {
  return m->o.mode == MODEL_CLASSIFY && m->p_hid > 0.0f ? m->pooled_drop : m->pooled;
}

static void cls_forward(Model *m) {
  const Ops *o = m->ops;
  int B = m->B, H = m->H;
  size_t w, b;
  if (m->o.mode == MODEL_PRETRAIN) {
    w = m->top.nsp_w;
    b = m->top.nsp_b;
  } else {
    w = m->top.cls_w;
    b = m->top.cls_b;
    if (m->p_hid > 0.0f)
      o->dropout_fwd(m->pooled_drop, m->pooled, (size_t)B * H, m->p_hid,
                     model_drop_key(m, DROP_CLS, (uint64_t)H));
  }
  o->linear_fwd(m->cls_logits, cls_input(m), W(m, w), W(m, b), B, H, m->ncls);
  if (m->has_labels && !m->cls_bwd)
    o->xent_fwd(m->xent + 3, m->cls_logits, m->labels, B, m->ncls, m->ncls);
}

static void cls_backward(Model *m, float scale) {
  const Ops *o = m->ops;
  int B = m->B, H = m->H;
  int pre = m->o.mode == MODEL_PRETRAIN;
  size_t w = pre ? m->top.nsp_w : m->top.cls_w, b = pre ? m->top.nsp_b : m->top.cls_b;
  o->xent_bwd(m->cls_logits, m->xent + 3, m->cls_logits, m->labels, B, m->ncls, m->ncls, scale);
  o->linear_bwd(m->dpool, G(m, w), G(m, b), m->cls_logits, cls_input(m), W(m, w), B, H, m->ncls,
                0);
  if (!pre && m->p_hid > 0.0f)
    o->dropout_bwd(m->dpool, m->dpool, (size_t)B * H, m->p_hid,
                   model_drop_key(m, DROP_CLS, (uint64_t)H));
  pooler_backward(m);
}

void heads_forward(Model *m) {
  pooler_forward(m);
  cls_forward(m);
  if (m->o.mode == MODEL_PRETRAIN) mlm_forward(m);
}

void heads_backward(Model *m, float loss_weight, long mlm_count, long cls_count) {
  if (m->mlm_bwd) mlm_backward(m, loss_weight / (float)mlm_count);
  if (m->cls_bwd) cls_backward(m, loss_weight / (float)cls_count);
}
