/* The BERT model, written once against the ops table (ops.h), computing
 * exactly what Hugging Face's BertForPreTraining / BertForSequenceClassification
 * compute:
 *   embeddings: LayerNorm(word + token_type + position) (eps 1e-12), dropout
 *   L post-LN encoder layers:
 *     a = LayerNorm(x + dropout(Wo attn(Wq x, Wk x, Wv x) + bo))
 *     attn: softmax(Q K^T / sqrt(head_dim) + mask) with attention dropout,
 *           mask = ATTN_MASK_NEG at keys whose input_mask is 0
 *     y = LayerNorm(a + dropout(W2 gelu(W1 a + b1) + b2))   (exact erf GELU)
 *   pooler: tanh(Wp h[CLS] + bp)
 *   MODEL_PRETRAIN heads (cls.*), MLM on the gathered masked positions only:
 *     logits = LayerNorm(gelu(Wt h + bt)) E^T + cls.predictions.bias, with E
 *     the word embeddings (tied decoder); NSP logits = Wn pooled + bn.
 *     loss = mean CE over the real masked positions + mean NSP CE.
 *   MODEL_CLASSIFY head: logits = Wc dropout(pooled) + bc (classifier.*),
 *     loss = mean CE over the samples with a label >= 0.
 *
 * The Model allocates everything once in model_new (device memory through
 * ops->alloc: parameters, gradients, optimizer moments m and v, activations
 * for max_batch x seq_len); a step allocates nothing.
 *
 * Parameters, gradients, m and v share the ParamTable layout (params.h), so
 * the host copies below are laid out as params_alloc_host buffers. */
#ifndef BERTRAIN_MODEL_H
#define BERTRAIN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "ops.h"
#include "params.h"

#define BERT_LN_EPS 1e-12f

typedef enum {
  MODEL_PRETRAIN, /* MLM + NSP heads; the table must have pretraining = 1 */
  MODEL_CLASSIFY, /* classifier head; the table must have num_labels >= 2 */
} ModelMode;

typedef struct ModelOpts {
  ModelMode mode;
  int max_batch;      /* most samples per call */
  int seq_len;        /* most positions per sample (<= max_position) */
  int max_pred;       /* most masked positions per sample (PRETRAIN) */
  float dropout;      /* hidden_dropout_prob (also the classifier's dropout) */
  float attn_dropout; /* attention_probs_dropout_prob */
  int training;       /* 0: no gradients, optimizer state or backward buffers */
  int pad_id;         /* word id whose embedding row gets no gradient from the
                         input lookup (HF padding_idx; the tied decoder still
                         updates it); -1: none */
} ModelOpts;

/* One micro-batch, in host memory (the model validates every id and uploads
 * it into preallocated device buffers). B <= max_batch, S <= seq_len,
 * P <= max_pred. Arrays are row-major, sample outermost. */
typedef struct Batch {
  int B, S, P;
  const int32_t *input_ids;   /* [B*S] in [0, vocab) */
  const int32_t *segment_ids; /* [B*S] in [0, type_vocab); NULL = all 0 */
  const int32_t *input_mask;  /* [B*S] 1 = real token, 0 = padding; NULL = all 1 */
  /* PRETRAIN: [B*P] positions in [0, S) and their original token ids. As in
   * NVIDIA's shards, unused slots are position 0 with id 0 ([CLS] is never
   * masked): they are ignored. mlm_ids NULL: no MLM loss (logits only). */
  const int32_t *mlm_positions;
  const int32_t *mlm_ids;
  /* [B]: PRETRAIN the NSP label (0 = B follows A, 1 = random B, as HF);
   * CLASSIFY the class in [0, num_labels). -1 = no label (ignored).
   * NULL: no such loss (logits only). */
  const int32_t *labels;
} Batch;

/* Where this micro-batch's dropout masks come from (dropout_rng.h). For the
 * same (seed, step) a sample draws the same masks wherever it is processed:
 * first_sample is the global index of the batch's first sample among all
 * samples of this optimizer step (over micro-batches and ranks), so one
 * batch of 4 and two micro-batches of 2 at first_sample 0 and 2 drop the
 * same elements. Each dropout site and layer has its own tensor id. */
typedef struct DropoutCtx {
  uint64_t seed;
  uint32_t step;
  uint64_t first_sample;
} DropoutCtx;

/* Results of one call, on the host. Losses are means over this call's
 * counted rows (0 when there are none). */
typedef struct Stats {
  double loss;            /* mlm_loss + cls_loss (PRETRAIN); cls_loss (CLASSIFY) */
  double mlm_loss;        /* PRETRAIN: mean CE over real masked positions */
  double cls_loss;        /* NSP (PRETRAIN) or classifier (CLASSIFY) mean CE */
  long mlm_correct, mlm_count; /* argmax == label, and positions counted */
  long cls_correct, cls_count; /* the same for NSP / classifier samples */
} Stats;

typedef struct Model Model;

/* t (and ops) must outlive the model. Parameters start at zero: load them
 * with model_params_from_host or model_init_params. Dies on a mode the
 * table has no head for, or on sizes beyond the table (seq_len > max_position). */
Model *model_new(const Ops *ops, const ParamTable *t, const ModelOpts *o);
void model_free(Model *m);

const ParamTable *model_table(const Model *m);
const ModelOpts *model_opts(const Model *m);

/* Forward, then (train = 1) backward. train = 0 is eval mode: no dropout, no
 * backward, gradients untouched. Gradients ACCUMULATE over calls until
 * model_zero_grad: a call adds loss_weight * d(loss)/d(params), where loss
 * is the per-call mean described in Stats. Gradient accumulation over k
 * micro-batches uses loss_weight = 1/k, i.e. the mean of the per-micro-batch
 * means (equal to the full-batch mean when the micro-batches count the same
 * number of masked positions / labels). train = 1 needs every label array. */
void model_forward_backward(Model *m, const Batch *b, int train, DropoutCtx d,
                            float loss_weight, Stats *out);

/* Outputs of the last model_forward_backward, copied to host arrays. Logits
 * are only valid after a train = 0 call (training overwrites them with their
 * gradient). */
void model_mlm_logits(const Model *m, float *host);  /* [B*P, vocab] (PRETRAIN) */
void model_cls_logits(const Model *m, float *host);  /* [B, 2] NSP or [B, num_labels] */
void model_sequence_output(const Model *m, float *host); /* [B*S, hidden] last layer */
void model_pooled_output(const Model *m, float *host);   /* [B, hidden] */

/* ---- training (needs opts.training) ---- */
void model_zero_grad(Model *m);
/* Global L2 norm of the whole gradient buffer (ops->sumsq), read by the
 * host (a wait on the device). Clip with OptParams.grad_scale = min(1,
 * max_norm / norm), or take model_step_clipped. */
float model_grad_norm(Model *m);
/* The norm model_grad_norm or model_step_clipped last took (a wait). */
float model_last_grad_norm(Model *m);

typedef enum { OPT_ADAMW, OPT_LAMB } ModelOptKind; /* cli.h has an OptKind */
/* One optimizer step over the tensors this mode trains: embeddings, encoder,
 * pooler and the mode's head; the other head (if in the table) is left as it
 * is. Weight decay and LAMB's trust ratio skip biases and LayerNorm
 * parameters (ParamTable no_decay). The caller fills o (step from 1). */
void model_step(Model *m, ModelOptKind kind, const OptParams *o);
/* model_step with the gradient clipped to max_norm (0: not clipped) on the
 * device: the norm is taken and applied there, so the host does not wait
 * for it; when it is not finite, nothing changes (the step is skipped:
 * check model_last_grad_norm). o->grad_scale multiplies as in model_step. */
void model_step_clipped(Model *m, ModelOptKind kind, const OptParams *o, float max_norm);

/* ---- transfers; host buffers hold params_size(table) floats ---- */
void model_params_to_host(const Model *m, float *host);
void model_params_from_host(Model *m, const float *host);
/* BERT initialisation (params_init) of every tensor, uploaded. */
void model_init_params(Model *m, uint64_t seed, double init_range, int pad_id);
/* Optimizer moments m and v (checkpoints). */
void model_opt_to_host(const Model *m, float *m_host, float *v_host);
void model_opt_from_host(Model *m, const float *m_host, const float *v_host);
void model_grads_to_host(const Model *m, float *host);

/* Device buffers (params_size floats each) for collective operations, e.g.
 * an all-reduce of the gradients or a broadcast of the parameters. */
/* For overlapping the gradient all-reduce with the backward: while a hook
 * is set, each train call of model_forward_backward calls fn(ctx, offset,
 * count) as soon as the gradients [offset, offset + count) of the buffer are
 * final for the call (queued, on GPUs): the pooler and heads first, then
 * each encoder layer from the last to the first, then the embeddings (the
 * word embeddings, tied to the MLM decoder, are final only then). The
 * ranges are adjacent and cover the buffer. fn NULL removes the hook. */
typedef void (*GradReadyFn)(void *ctx, size_t offset, size_t count);
void model_set_grad_hook(Model *m, GradReadyFn fn, void *ctx);

float *model_params_dev(Model *m);
float *model_grads_dev(Model *m);
size_t model_buffer_size(const Model *m); /* floats */

/* Matrix-multiply FLOPs of one training step (forward + backward = 3 x the
 * forward's) on B sequences of S tokens, P gathered MLM positions each
 * (PRETRAIN) or the classifier (CLASSIFY). Per sequence, forward:
 *   S L 2 (4H^2 + 2HI)   Q, K, V, output projections and the FFN
 * + L 4 S^2 H            Q K^T and probs V
 * + 2H^2                 pooler
 * + 2H 2 or 2H labels    NSP or classifier
 * + P (2H^2 + 2HV)       MLM transform and tied decoder (PRETRAIN)
 * Embeddings, LayerNorm, softmax, GELU and biases (O(S H)) are left out. */
double model_train_flops(const ModelShape *s, ModelMode mode, int B, int S, int P);

#endif
