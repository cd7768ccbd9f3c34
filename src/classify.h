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
/* Tokens of the longest of rows[0..n) (at least 1). */
int classify_batch_len(const Encoded *e, const long *rows, int n);
/* Rows rows[0..n) padded to S tokens (S >= classify_batch_len), e.g. a
 * rank's share of a global batch padded as the whole batch would be, so
 * that dropout masks (indexed by position in the padded batch) and results
 * do not depend on how the batch is split. */
const Batch *classify_batch_fill_to(ClassifyBatch *cb, const Encoded *e, const long *rows, int n,
                                    int S);

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

/* The same evaluation split among `parts` workers (ranks), with results
 * identical to classify_evaluate's: the rows form classify_eval_chunks(e)
 * chunks of CLASSIFY_EVAL_BATCH, and worker `part` evaluates the chunks c
 * with c % parts == part, setting pred[] of their rows, counting them in ev
 * (ev->loss left 0) and setting chunk_loss[c] to chunk c's summed
 * cross-entropy (0 for the other workers' chunks). Sum ev's counts and
 * chunk_loss over the workers, then classify_eval_finish sets ev->loss,
 * adding the chunks in classify_evaluate's order. */
long classify_eval_chunks(const Encoded *e);
void classify_evaluate_part(Model *m, const Encoded *e, int part, int parts, int *pred,
                            ClassifyEval *ev, double *chunk_loss);
void classify_eval_finish(ClassifyEval *ev, const double *chunk_loss, long chunks);

double eval_accuracy(const ClassifyEval *ev);
double eval_f1(const ClassifyEval *ev);

#endif
