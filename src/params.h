/* The parameter layout of BERT: one table describing where every tensor lives
 * in ONE contiguous float buffer. Parameters, gradients and optimizer moments
 * all use the same layout, so one offset names a tensor in each of them and
 * an optimizer can sweep each buffer as a flat array.
 *
 * Names and shapes are exactly those of Hugging Face's state_dict
 * (BertForPreTraining, plus BertForSequenceClassification's classifier), with
 * weights stored as PyTorch stores them: nn.Linear weight is (out, in),
 * row-major, so y = x W^T + b; embeddings are (rows, hidden).
 *
 * Tied weights are stored once:
 *   cls.predictions.decoder.weight  IS bert.embeddings.word_embeddings.weight
 *   cls.predictions.decoder.bias    IS cls.predictions.bias
 * A converter from a Hugging Face state_dict drops those two keys (after
 * checking they equal their targets); one to Hugging Face adds them as copies.
 * Old Google checkpoints name LayerNorm parameters gamma/beta: they map to
 * weight/bias. The buffer position_ids of BertEmbeddings is not a parameter.
 *
 * Table order is HF state_dict order (module parameters before children's),
 * e.g. cls.predictions.bias comes before cls.predictions.transform.*. */
#ifndef BERTRAIN_PARAMS_H
#define BERTRAIN_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define PARAM_NAME_MAX 96
/* Every tensor starts on a multiple of this many floats (64 bytes), so
 * vector loads and GPU kernels may assume aligned tensors. The gap floats
 * are zero and stay zero (their gradient is zero). */
#define PARAM_ALIGN 16
/* The word embeddings and the MLM bias keep storage for the vocabulary
 * rounded up to this many rows, the extra rows zero: the tied decoder's
 * products then run over whole 16-byte rows of bf16 (BERT's 30,522 words
 * become 30,528), which the fast matrix kernels need. The table still
 * describes them [V, H] and [V], as Hugging Face does. */
#define PARAM_VOCAB_ROUND 8

typedef struct ModelShape {
  int vocab;        /* V: vocabulary size, from the vocab file */
  int hidden;       /* H */
  int layers;       /* L */
  int heads;        /* attention heads; H % heads == 0 */
  int intermediate; /* I: feed-forward size */
  int max_position; /* P: position embeddings */
  int type_vocab;   /* T: token type (segment) embeddings */
  int num_labels;   /* rows of classifier.*; 0 = no classifier */
  int pretraining;  /* 1: include the pre-training heads cls.* */
} ModelShape;

typedef enum {
  INIT_NORMAL, /* normal(0, initializer_range) truncated at 2 std */
  INIT_ZEROS,
  INIT_ONES,
} ParamInit;

typedef enum {
  PART_BERT,       /* bert.*: BertModel (embeddings, encoder, pooler) */
  PART_PRETRAIN,   /* cls.*: masked-LM and next-sentence heads */
  PART_CLASSIFIER, /* classifier.*: BertForSequenceClassification head */
} ParamPart;

typedef struct Param {
  char name[PARAM_NAME_MAX]; /* the Hugging Face state_dict key */
  int ndim;                  /* 1 or 2 */
  int shape[2];              /* shape[1] == 1 when ndim == 1 */
  size_t count;              /* shape[0] * shape[1] */
  size_t offset;             /* in floats; a multiple of PARAM_ALIGN */
  int no_decay;              /* bias or LayerNorm parameter: no weight decay */
  ParamInit init;
  ParamPart part;
} Param;

typedef struct ParamTable {
  ModelShape shape;
  int n;        /* tensors */
  Param *p;     /* p[0..n), in buffer order */
  size_t count; /* parameters (sum of counts) */
  size_t size;  /* floats in the buffer, alignment gaps included */
  int vocab_rows; /* rows stored for the word embeddings (PARAM_VOCAB_ROUND) */
} ParamTable;

/* Checks the [model] section for consistency (hidden divisible by heads,
 * data.seq_length within max_position, ...); dies naming the keys. */
void model_config_check(const Config *c);
/* The shape the config describes, for a vocabulary of vocab_size tokens. */
ModelShape model_shape(const Config *c, int vocab_size, int num_labels, int pretraining);

/* Builds the layout; dies on an impossible shape. */
ParamTable *params_build(const ModelShape *s);
void params_free(ParamTable *t);
size_t params_count(const ParamTable *t); /* trainable parameters */
size_t params_size(const ParamTable *t);  /* floats a buffer needs */
/* The tensor called name, or NULL. */
const Param *params_find(const ParamTable *t, const char *name);
/* As params_find, but dies naming the tensor when it is absent. */
const Param *params_get(const ParamTable *t, const char *name);
/* bert.encoder.layer.<layer>.<suffix>, e.g. suffix "attention.self.query.weight". */
const Param *params_layer(const ParamTable *t, int layer, const char *suffix);
/* buf + offset of the named tensor (params, grads or moments alike). */
float *params_view(const ParamTable *t, float *buf, const char *name);

/* A zeroed, 64-byte aligned host buffer of params_size floats; free() it. */
float *params_alloc_host(const ParamTable *t);

/* BERT initialisation of every tensor: INIT_NORMAL tensors from a normal
 * distribution with std init_range, values beyond 2 std redrawn (TF's
 * truncated_normal, as in Google's BERT; the redraw leaves the std at
 * 0.8796 * init_range); biases 0, LayerNorm weight 1 and bias 0. Row pad_id
 * of the word embeddings is zeroed as Hugging Face does for padding_idx
 * (pad_id < 0: none). Each tensor draws from its own Philox stream named by
 * (seed, hash of its name), so its values depend on nothing but the seed and
 * the tensor: not on thread count, table order or which heads are present. */
void params_init(const ParamTable *t, float *buf, uint64_t seed, double init_range, int pad_id);
/* The same for one tensor (e.g. a classifier head added to loaded weights). */
void params_init_one(const ParamTable *t, const Param *p, float *buf, uint64_t seed,
                     double init_range, int pad_id);

#endif
