#define _POSIX_C_SOURCE 200809L
#include "classify.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

/* BERT's _truncate_seq_pair without randomness: drop the last token of the
 * longer text (of B when equal) until the pair fits. */
static void truncate_pair(size_t *na, size_t *nb, size_t max) {
  while (*na + *nb > max) {
    if (*na > *nb) (*na)--;
    else (*nb)--;
  }
}

Encoded *classify_encode(const GlueSet *set, Tokenizer *tok, int seq_length) {
  const Vocab *v = tokenizer_vocab(tok);
  vocab_require(v, "[CLS]", "sequence classification");
  vocab_require(v, "[SEP]", "sequence classification");
  int pair = set->text_b != NULL;
  if (seq_length < (pair ? 3 : 2))
    die("finetune.seq_length %d is too short for [CLS] and [SEP]", seq_length);
  Encoded *e = xcalloc(1, sizeof *e);
  e->n = set->n;
  e->seq_length = seq_length;
  e->ids = xcalloc((size_t)set->n * (size_t)seq_length, sizeof *e->ids);
  e->len = xcalloc((size_t)set->n, sizeof *e->len);
  e->len_a = xcalloc((size_t)set->n, sizeof *e->len_a);
  e->label = xcalloc((size_t)set->n, sizeof *e->label);
  int32_t *a = NULL, *b = NULL;
  size_t cap_a = 0, cap_b = 0;
  for (long i = 0; i < set->n; i++) {
    size_t na = tokenizer_encode(tok, set->text_a[i], strlen(set->text_a[i]), &a, &cap_a, 0);
    size_t nb = 0;
    if (pair) nb = tokenizer_encode(tok, set->text_b[i], strlen(set->text_b[i]), &b, &cap_b, 0);
    size_t room = (size_t)seq_length - (pair ? 3 : 2);
    if (na + nb > room) e->truncated++;
    truncate_pair(&na, &nb, room);
    int32_t *row = e->ids + (size_t)i * (size_t)seq_length;
    size_t k = 0;
    row[k++] = v->cls;
    memcpy(row + k, a, na * sizeof *row);
    k += na;
    row[k++] = v->sep;
    e->len_a[i] = (int)k;
    if (pair) {
      if (nb) memcpy(row + k, b, nb * sizeof *row);
      k += nb;
      row[k++] = v->sep;
    }
    e->len[i] = (int)k;
    e->label[i] = set->label[i];
  }
  free(a);
  free(b);
  return e;
}

void encoded_free(Encoded *e) {
  if (!e) return;
  free(e->ids);
  free(e->len);
  free(e->len_a);
  free(e->label);
  free(e);
}

void classify_batch_alloc(ClassifyBatch *cb, int max_n, int seq_length) {
  size_t n = (size_t)max_n * (size_t)seq_length;
  cb->max_n = max_n;
  cb->ids = xcalloc(n, sizeof *cb->ids);
  cb->seg = xcalloc(n, sizeof *cb->seg);
  cb->mask = xcalloc(n, sizeof *cb->mask);
  cb->labels = xcalloc((size_t)max_n, sizeof *cb->labels);
}

void classify_batch_free(ClassifyBatch *cb) {
  free(cb->ids);
  free(cb->seg);
  free(cb->mask);
  free(cb->labels);
  memset(cb, 0, sizeof *cb);
}

int classify_batch_len(const Encoded *e, const long *rows, int n) {
  int S = 1;
  for (int i = 0; i < n; i++)
    if (e->len[rows[i]] > S) S = e->len[rows[i]];
  return S;
}

const Batch *classify_batch_fill_to(ClassifyBatch *cb, const Encoded *e, const long *rows, int n,
                                    int S) {
  if (n > cb->max_n) die("classify: internal error: batch of %d rows, room for %d", n, cb->max_n);
  if (S > e->seq_length || S < classify_batch_len(e, rows, n))
    die("classify: internal error: padding to %d tokens", S);
  for (int i = 0; i < n; i++) {
    long r = rows[i];
    const int32_t *src = e->ids + (size_t)r * (size_t)e->seq_length;
    int32_t *ids = cb->ids + (size_t)i * S, *seg = cb->seg + (size_t)i * S,
            *mask = cb->mask + (size_t)i * S;
    for (int j = 0; j < S; j++) {
      int real = j < e->len[r];
      ids[j] = real ? src[j] : 0;
      seg[j] = real && j >= e->len_a[r] ? 1 : 0;
      mask[j] = real;
    }
    cb->labels[i] = e->label[r];
  }
  cb->b = (Batch){.B = n, .S = S, .P = 0, .input_ids = cb->ids, .segment_ids = cb->seg,
                  .input_mask = cb->mask, .labels = cb->labels};
  return &cb->b;
}

const Batch *classify_batch_fill(ClassifyBatch *cb, const Encoded *e, const long *rows, int n) {
  return classify_batch_fill_to(cb, e, rows, n, classify_batch_len(e, rows, n));
}

long classify_eval_chunks(const Encoded *e) {
  return (e->n + CLASSIFY_EVAL_BATCH - 1) / CLASSIFY_EVAL_BATCH;
}

/* Chunk c's rows: predictions into pred, counts into ev; returns the summed
 * cross-entropy of its labelled rows. */
static double evaluate_chunk(Model *m, const Encoded *e, long c, ClassifyBatch *cb, float *logits,
                             int *pred, ClassifyEval *ev) {
  int nl = model_table(m)->shape.num_labels;
  long start = c * CLASSIFY_EVAL_BATCH, rows[CLASSIFY_EVAL_BATCH];
  int n = e->n - start < CLASSIFY_EVAL_BATCH ? (int)(e->n - start) : CLASSIFY_EVAL_BATCH;
  for (int i = 0; i < n; i++) rows[i] = start + i;
  const Batch *b = classify_batch_fill(cb, e, rows, n);
  Stats st;
  DropoutCtx d = {0, 0, 0};
  model_forward_backward(m, b, 0, d, 1.0f, &st);
  model_cls_logits(m, logits);
  for (int i = 0; i < n; i++) {
    const float *l = logits + (size_t)i * nl;
    int best = 0;
    for (int k = 1; k < nl; k++)
      if (l[k] > l[best]) best = k;
    pred[start + i] = best;
    int label = e->label[start + i];
    if (label < 0) continue;
    ev->n++;
    ev->correct += best == label;
    ev->tp += best == 1 && label == 1;
    ev->fp += best == 1 && label != 1;
    ev->fn += best != 1 && label == 1;
  }
  return st.cls_loss * (double)st.cls_count;
}

void classify_evaluate_part(Model *m, const Encoded *e, int part, int parts, int *pred,
                            ClassifyEval *ev, double *chunk_loss) {
  int nl = model_table(m)->shape.num_labels;
  ClassifyBatch cb;
  classify_batch_alloc(&cb, CLASSIFY_EVAL_BATCH, e->seq_length);
  float *logits = xmalloc((size_t)CLASSIFY_EVAL_BATCH * (size_t)nl * sizeof *logits);
  memset(ev, 0, sizeof *ev);
  long chunks = classify_eval_chunks(e);
  for (long c = 0; c < chunks; c++)
    chunk_loss[c] = c % parts == part ? evaluate_chunk(m, e, c, &cb, logits, pred, ev) : 0;
  free(logits);
  classify_batch_free(&cb);
}

void classify_eval_finish(ClassifyEval *ev, const double *chunk_loss, long chunks) {
  double loss_sum = 0;
  for (long c = 0; c < chunks; c++) loss_sum += chunk_loss[c];
  ev->loss = ev->n ? loss_sum / (double)ev->n : 0;
}

void classify_evaluate(Model *m, const Encoded *e, int *pred, ClassifyEval *ev) {
  long chunks = classify_eval_chunks(e);
  double *chunk_loss = xcalloc((size_t)chunks, sizeof *chunk_loss);
  classify_evaluate_part(m, e, 0, 1, pred, ev, chunk_loss);
  classify_eval_finish(ev, chunk_loss, chunks);
  free(chunk_loss);
}

double eval_accuracy(const ClassifyEval *ev) {
  return ev->n ? (double)ev->correct / (double)ev->n : 0;
}

double eval_f1(const ClassifyEval *ev) {
  long denom = 2 * ev->tp + ev->fp + ev->fn;
  return denom ? 2.0 * (double)ev->tp / (double)denom : 0;
}
