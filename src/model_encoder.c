/* Embeddings and the post-LN encoder layers, forward and backward, in Hugging
 * Face's order: hidden dropout is applied to each sub-block's output
 * projection before the residual add, then LayerNorm. The backward keeps the
 * gradient of the running hidden state in ONE buffer (m->dh), updating it in
 * place through each LayerNorm and adding the branch gradients into it
 * (linear_bwd with accumulate_dx) for the residual connections. */
#include "model_internal.h"

static DropoutKey layer_key(const Model *m, int l, int site, uint64_t per_sample) {
  return model_drop_key(m, DROP_LAYER0 + (uint32_t)(DROP_PER_LAYER * l + site), per_sample);
}

static void layer_forward(Model *m, int l) {
  const Ops *o = m->ops;
  const LayerOff *w = &m->lay[l];
  LayerAct *a = &m->act[l];
  const float *x = m->hidden[l];
  float *y = m->hidden[l + 1];
  int B = m->B, S = m->S, H = m->H, I = m->I, n = B * S;
  size_t per_tok = (size_t)S * H;

  if (m->qkv_fused) {
    o->linear_fwd(a->q, x, W(m, w->q_w), W(m, w->q_b), n, H, 3 * H);
  } else {
    o->linear_fwd(a->q, x, W(m, w->q_w), W(m, w->q_b), n, H, H);
    o->linear_fwd(a->k, x, W(m, w->k_w), W(m, w->k_b), n, H, H);
    o->linear_fwd(a->v, x, W(m, w->v_w), W(m, w->v_b), n, H, H);
  }
  o->attn_fwd(a->ctx, a->probs, a->q, a->k, a->v, m->qkv_ld, m->mask, B, S, m->nh, m->hd,
              m->p_attn, layer_key(m, l, DROP_ATTN_PROBS, (uint64_t)m->nh * S * S));
  o->linear_fwd(a->r1, a->ctx, W(m, w->ao_w), W(m, w->ao_b), n, H, H);
  o->residual_ln_fwd(a->a, a->r1, a->mean1, a->rstd1, a->r1, x, W(m, w->ln1_w), W(m, w->ln1_b),
                     n, H, BERT_LN_EPS, m->p_hid, layer_key(m, l, DROP_ATTN_OUT, per_tok));

  o->linear_fwd(a->h1, a->a, W(m, w->in_w), W(m, w->in_b), n, H, I);
  o->gelu_fwd(a->g, a->h1, (size_t)n * I);
  o->linear_fwd(a->r2, a->g, W(m, w->out_w), W(m, w->out_b), n, I, H);
  o->residual_ln_fwd(y, a->r2, a->mean2, a->rstd2, a->r2, a->a, W(m, w->ln2_w), W(m, w->ln2_b),
                     n, H, BERT_LN_EPS, m->p_hid, layer_key(m, l, DROP_FFN_OUT, per_tok));
}

/* m->dh: d(layer output) on entry, d(layer input) on return. */
static void layer_backward(Model *m, int l) {
  const Ops *o = m->ops;
  const LayerOff *w = &m->lay[l];
  const LayerAct *a = &m->act[l];
  const float *x = m->hidden[l];
  float *dh = m->dh;
  int B = m->B, S = m->S, H = m->H, I = m->I, n = B * S;
  size_t per_tok = (size_t)S * H;

  /* output LayerNorm, FFN branch; dh becomes d(a), the FFN input */
  float *dbranch = m->p_hid > 0.0f ? m->tmp : NULL;
  o->residual_ln_bwd(dh, dbranch, G(m, w->ln2_w), G(m, w->ln2_b), dh, a->r2, a->mean2, a->rstd2,
                     W(m, w->ln2_w), n, H, m->p_hid, layer_key(m, l, DROP_FFN_OUT, per_tok));
  const float *dffn = dbranch ? dbranch : dh;
  o->linear_bwd(m->dg, G(m, w->out_w), G(m, w->out_b), dffn, a->g, W(m, w->out_w), n, I, H, 0);
  /* the FFN's input bias gradient is summed by the GELU's backward */
  o->gelu_bwd(m->dg, G(m, w->in_b), m->dg, a->h1, (size_t)n * I, I);
  o->linear_bwd(dh, G(m, w->in_w), NULL, m->dg, a->a, W(m, w->in_w), n, H, I, 1);

  /* attention LayerNorm, attention branch; dh becomes d(x) */
  o->residual_ln_bwd(dh, dbranch, G(m, w->ln1_w), G(m, w->ln1_b), dh, a->r1, a->mean1, a->rstd1,
                     W(m, w->ln1_w), n, H, m->p_hid, layer_key(m, l, DROP_ATTN_OUT, per_tok));
  const float *dproj = dbranch ? dbranch : dh;
  o->linear_bwd(m->dctx, G(m, w->ao_w), G(m, w->ao_b), dproj, a->ctx, W(m, w->ao_w), n, H, H,
                0);
  o->attn_bwd(m->dq, m->dk, m->dv, m->dctx, a->probs, a->q, a->k, a->v, m->qkv_ld, B, S, m->nh,
              m->hd, m->p_attn, layer_key(m, l, DROP_ATTN_PROBS, (uint64_t)m->nh * S * S));
  if (m->qkv_fused) {
    o->linear_bwd(dh, G(m, w->q_w), G(m, w->q_b), m->dq, x, W(m, w->q_w), n, H, 3 * H, 1);
  } else {
    o->linear_bwd(dh, G(m, w->q_w), G(m, w->q_b), m->dq, x, W(m, w->q_w), n, H, H, 1);
    o->linear_bwd(dh, G(m, w->k_w), G(m, w->k_b), m->dk, x, W(m, w->k_w), n, H, H, 1);
    o->linear_bwd(dh, G(m, w->v_w), G(m, w->v_b), m->dv, x, W(m, w->v_w), n, H, H, 1);
  }
}

void encoder_forward(Model *m) {
  const Ops *o = m->ops;
  const TopOff *t = &m->top;
  int B = m->B, S = m->S, H = m->H, n = B * S;
  o->embed_fwd(m->emb, m->ids, m->types, W(m, t->wte), W(m, t->wpe), W(m, t->wtt), B, S, H, m->V,
               m->T);
  o->layernorm_fwd(m->hidden[0], m->emb_mean, m->emb_rstd, m->emb, W(m, t->eln_w),
                   W(m, t->eln_b), n, H, BERT_LN_EPS);
  if (m->p_hid > 0.0f)
    o->dropout_fwd(m->hidden[0], m->hidden[0], (size_t)n * H, m->p_hid,
                   model_drop_key(m, DROP_EMB, (uint64_t)S * H));
  for (int l = 0; l < m->L; l++) layer_forward(m, l);
}

void encoder_backward(Model *m) {
  const Ops *o = m->ops;
  const TopOff *t = &m->top;
  int B = m->B, S = m->S, H = m->H, n = B * S;
  for (int l = m->L - 1; l >= 0; l--) {
    layer_backward(m, l);
    model_grads_ready(m, l);
  }
  if (m->p_hid > 0.0f)
    o->dropout_bwd(m->dh, m->dh, (size_t)n * H, m->p_hid,
                   model_drop_key(m, DROP_EMB, (uint64_t)S * H));
  o->layernorm_bwd(m->dh, G(m, t->eln_w), G(m, t->eln_b), m->dh, m->emb, m->emb_mean,
                   m->emb_rstd, W(m, t->eln_w), n, H);
  /* HF's padding_idx: the pad row gets no gradient from the lookup (the
   * tied decoder's contribution, added earlier, stays). */
  float *pad = m->o.pad_id >= 0 ? G(m, t->wte) + (size_t)m->o.pad_id * H : NULL;
  if (pad) o->copy(m->pad_row, pad, (size_t)H * sizeof(float));
  o->embed_bwd(G(m, t->wte), G(m, t->wpe), G(m, t->wtt), m->dh, m->ids, m->types, B, S, H, m->V, m->T);
  if (pad) o->copy(pad, m->pad_row, (size_t)H * sizeof(float));
  model_grads_ready(m, -1);
}
