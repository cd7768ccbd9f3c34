/* Sequence classification on GLUE data: examples encoded as BERT does,
 * batches for the model, and evaluation shared by finetune and predict (so
 * that predict reproduces finetune's validation figures exactly). */
#ifndef BERTRAIN_CLASSIFY_H
#define BERTRAIN_CLASSIFY_H

#include <stdint.h>

#include "glue.h"
#include "model.h"
#include "tokenizer.h"

/* Samples per evaluation forward pass: fixed, so that evaluation computes
 * the same batches (hence bit-identical logits) wherever it runs. */
#define CLASSIFY_EVAL_BATCH 64

/* [CLS] A [SEP] (B [SEP]) token ids, cut to seq_length tokens. */
typedef struct Encoded {
  long n;
  int seq_length;
  int32_t *ids;  /* [n * seq_length], row i's first len[i] used */
  int *len;      /* tokens of row i, specials included */
  int *len_a;    /* [CLS] A [SEP]: segment 0; the rest is segment 1 */
  int *label;    /* class, or -1 */
  long truncated; /* rows that had to be cut */
} Encoded;

/* Tokenizes every example. Pairs are cut as BERT's _truncate_seq_pair does
 * (a token off the end of the longer text, B when they are as long, until
 * both fit), single texts by dropping their end. Needs [CLS] and [SEP]. */
Encoded *classify_encode(const GlueSet *set, Tokenizer *tok, int seq_length);
void encoded_free(Encoded *e);

/* Host buffers for batches of up to max_n rows of e's seq_length. */
typedef struct ClassifyBatch {
  int max_n;
  int32_t *ids, *seg, *mask, *labels;
  Batch b;
} ClassifyBatch;

void classify_batch_alloc(ClassifyBatch *cb, int max_n, int seq_length);
void classify_batch_free(ClassifyBatch *cb);
/* Rows rows[0..n) of e, padded to the longest of them. */
const Batch *classify_batch_fill(ClassifyBatch *cb, const Encoded *e, const long *rows, int n);

/* Counts of an evaluation of labelled data (labels 0/1 for F1: class 1 is
 * the positive class, as in GLUE's MRPC F1). */
typedef struct ClassifyEval {
  long n, correct, tp, fp, fn;
  double loss; /* mean cross-entropy over labelled rows */
} ClassifyEval;

/* Predicts every row of e in order, CLASSIFY_EVAL_BATCH rows at a time, in
 * eval mode; pred[i] gets row i's class (argmax, the first on ties). Rows
 * with labels are counted in ev. */
void classify_evaluate(Model *m, const Encoded *e, int *pred, ClassifyEval *ev);

double eval_accuracy(const ClassifyEval *ev);
double eval_f1(const ClassifyEval *ev);

#endif
