/* Shared by model.c, model_encoder.c and model_heads.c: the Model struct
 * (tensor offsets, device buffers) and the per-part forward / backward. */
#ifndef BERTRAIN_MODEL_INTERNAL_H
#define BERTRAIN_MODEL_INTERNAL_H

#include "model.h"

/* Offsets (floats) of one encoder layer's tensors in the flat buffers. */
typedef struct LayerOff {
  size_t q_w, q_b, k_w, k_b, v_w, v_b, ao_w, ao_b, ln1_w, ln1_b;
  size_t in_w, in_b, out_w, out_b, ln2_w, ln2_b;
} LayerOff;

/* What one layer's forward keeps for its backward (device). In eval-only
 * models every layer shares one set. */
typedef struct LayerAct {
  float *q, *k, *v;      /* [n, H] */
  float *probs;          /* [B, heads, S, S] softmax before dropout */
  float *ctx;            /* [n, H] attention output before the projection */
  float *r1, *a;         /* [n, H] x + dropout(proj), a = LayerNorm(r1) */
  float *mean1, *rstd1;  /* [n] */
  float *h1, *g;         /* [n, I] before and after GELU */
  float *r2;             /* [n, H] a + dropout(ffn) */
  float *mean2, *rstd2;  /* [n] */
} LayerAct;

/* Offsets of the non-layer tensors; SIZE_MAX where the table lacks them. */
typedef struct TopOff {
  size_t wte, wpe, wtt, eln_w, eln_b, pool_w, pool_b;
  size_t mlm_bias, tr_w, tr_b, tln_w, tln_b, nsp_w, nsp_b;
  size_t cls_w, cls_b;
} TopOff;

/* Dropout tensor ids: one per site, and per layer for the encoder's. */
enum { DROP_EMB = 1, DROP_CLS = 2, DROP_LAYER0 = 16 };
enum { DROP_ATTN_PROBS = 0, DROP_ATTN_OUT = 1, DROP_FFN_OUT = 2, DROP_PER_LAYER = 3 };

struct Model {
  const Ops *ops;
  const ParamTable *t;
  ModelOpts o;
  int V, H, L, nh, hd, I, T, ncls; /* ncls: 2 (NSP) or num_labels */
  int Vp;                           /* ParamTable.vocab_rows: the MLM logits' row stride */
  TopOff top;
  LayerOff *lay;

  float *params, *grads, *m, *v; /* device, t->size floats (grads/m/v: training) */
  ParamRange *ranges;            /* the tensors model_step updates */
  int nranges;
  /* The buffer's parts in backward order: [0, part[0]) embeddings,
   * [part[l], part[l+1]) encoder layer l, [part[L], size) pooler and heads. */
  size_t *part;
  GradReadyFn grad_ready;
  void *grad_ready_ctx;

  /* current call */
  int B, S, P;
  float p_hid, p_attn; /* dropout in effect for this call (0 in eval) */
  DropoutCtx drop;

  /* device inputs: views of one buffer, uploaded in one transfer from
   * h_inputs, where each view's part sits at the same offset */
  int32_t *ids, *types, *mask;  /* [B*S] */
  int32_t *cls_idx;             /* [B]: row of each sample's [CLS] */
  int32_t *labels;              /* [B] */
  int32_t *mlm_idx, *mlm_lab;   /* [B*P]: row in the sequence output, label or -1 */
  int32_t *inputs, *h_inputs;
  size_t inputs_n;              /* elements of both */

  /* activations */
  float *emb, *emb_mean, *emb_rstd; /* embedding sum [n, H] before LayerNorm */
  float **hidden;                   /* [L+1] of [n, H]: layer inputs, then output */
  LayerAct *act;                    /* [L] */
  /* 1: q, k, v weights (and biases) are adjacent, so one product makes all
   * three, interleaved per token ([n, 3H], row stride qkv_ld = 3H);
   * 0: three products into three [n, H] blocks (qkv_ld = H). */
  int qkv_fused, qkv_ld;
  float *first, *pooled, *pooled_drop, *cls_logits; /* [B, H] x3, [B, ncls] */
  float *gath, *t1, *t2, *t3, *t_mean, *t_rstd;     /* MLM transform [B*P, H] */
  float *mlm_logits;                                /* [B*P, V] */
  float *xent;                                      /* [6]: MLM then NSP/CLS */
  float *grad_sumsq;                                /* [1]: training only */
  int has_mlm_labels, has_labels;
  /* this call's backward runs the head, and takes its loss from xent_bwd
   * (a pass over the logits fewer than xent_fwd in the forward) */
  int mlm_bwd, cls_bwd;

  /* backward scratch (training) */
  float *dh, *tmp, *dctx, *dq, *dk, *dv, *dg; /* [n,H] x6, [n,I] */
  float *dfirst, *dpool;                      /* [B, H] */
  float *dgath, *dt;                          /* [B*P, H] */
  float *pad_row;                             /* [H] saved pad-id gradient row */

  void **allocs; /* every device buffer, for model_free */
  size_t nalloc, alloc_cap;
};

#define W(m, off) ((m)->params + (off))
#define G(m, off) ((m)->grads + (off))

DropoutKey model_drop_key(const Model *m, uint32_t tensor, uint64_t per_sample);

/* model_encoder.c */
void encoder_forward(Model *m);
void encoder_backward(Model *m); /* from m->dh = d(sequence output) */
/* Calls the gradient hook, if set, for part -1 (embeddings), 0..L-1 (a
 * layer) or L (pooler and heads). */
void model_grads_ready(Model *m, int part);

/* model_heads.c: forward returns nothing; backward adds into m->dh (zeroed
 * by the caller) and scales by loss_weight / count. */
void heads_forward(Model *m);
void heads_backward(Model *m, float loss_weight, long mlm_count, long cls_count);

#endif
