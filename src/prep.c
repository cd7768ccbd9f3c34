/* Instance creation: the sentence-pair layout and the masking of Google's
 * create_pretraining_data.py, on token ids. */
#include "prep.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "util.h"

void corpus_free(Corpus *c) {
  if (!c) return;
  free(c->doc_sent);
  free(c->sent_tok);
  free(c->ids16);
  free(c->ids32);
  memset(c, 0, sizeof *c);
}

void instances_alloc(Instances *in, size_t n, int seq_length, int max_predictions) {
  size_t s = (size_t)seq_length, p = (size_t)max_predictions;
  in->n = n;
  in->seq_length = seq_length;
  in->max_predictions = max_predictions;
  in->input_ids = xcalloc(n * s, sizeof *in->input_ids);
  in->input_mask = xcalloc(n * s, sizeof *in->input_mask);
  in->segment_ids = xcalloc(n * s, sizeof *in->segment_ids);
  in->masked_lm_positions = xcalloc(n * p, sizeof *in->masked_lm_positions);
  in->masked_lm_ids = xcalloc(n * p, sizeof *in->masked_lm_ids);
  in->next_sentence_labels = xcalloc(n, sizeof *in->next_sentence_labels);
}

void instances_free(Instances *in) {
  free(in->input_ids);
  free(in->input_mask);
  free(in->segment_ids);
  free(in->masked_lm_positions);
  free(in->masked_lm_ids);
  free(in->next_sentence_labels);
  memset(in, 0, sizeof *in);
}

typedef struct Masked {
  int32_t pos, id;
} Masked;

struct PrepScratch {
  uint32_t *grp_pos;   /* candidate positions, group by group */
  uint32_t *grp_start; /* group g holds grp_pos[grp_start[g] .. grp_start[g + 1]) */
  uint32_t *order;     /* the groups in shuffled order */
  Masked *masked;
  size_t cap_pos, cap_start, cap_order, cap_masked;
};

PrepScratch *prep_scratch_new(void) { return xcalloc(1, sizeof(PrepScratch)); }

void prep_scratch_free(PrepScratch *w) {
  if (!w) return;
  free(w->grp_pos);
  free(w->grp_start);
  free(w->order);
  free(w->masked);
  free(w);
}

long prep_round_half_even(double x) {
  /* rint() rounds half to even in the default rounding mode, like Python 3's round(). */
  return (long)rint(x);
}

int prep_num_to_predict(int len, double masked_lm_prob, int max_predictions) {
  long n = prep_round_half_even((double)len * masked_lm_prob);
  if (n < 1) n = 1;
  return n < max_predictions ? (int)n : max_predictions;
}

/* A run of tokens [lo, hi) of the corpus. */
typedef struct Span {
  uint64_t lo, hi;
} Span;

static uint64_t span_len(Span s) { return s.hi - s.lo; }

/* Google's truncate_seq_pair: trim the longer side (B on ties) at a random end. */
static void truncate_pair(Span *a, Span *b, uint64_t max_tokens, Rng *r) {
  while (span_len(*a) + span_len(*b) > max_tokens) {
    Span *t = span_len(*a) > span_len(*b) ? a : b;
    if (rng_uniform(r) < 0.5) t->lo++;
    else t->hi--;
  }
}

/* Groups the maskable positions of tokens[0..len): every position but
 * [CLS]/[SEP]; with whole-word masking a "##" piece joins the group before
 * it. Returns the number of groups. */
static uint32_t candidate_groups(const PrepParams *p, const int32_t *tokens, int len,
                                 PrepScratch *w) {
  grow((void **)&w->grp_pos, &w->cap_pos, (size_t)len, sizeof *w->grp_pos);
  grow((void **)&w->grp_start, &w->cap_start, (size_t)len + 1, sizeof *w->grp_start);
  uint32_t ng = 0, np = 0;
  for (int i = 0; i < len; i++) {
    int32_t id = tokens[i];
    if (id == p->cls || id == p->sep) continue;
    int joins = p->whole_word_mask && ng > 0 && id >= 0 && id < p->vocab_size && p->is_piece[id];
    if (!joins) w->grp_start[ng++] = np;
    w->grp_pos[np++] = (uint32_t)i;
  }
  w->grp_start[ng] = np;
  return ng;
}

static void sort_masked(Masked *m, int n) {
  for (int i = 1; i < n; i++) {
    Masked x = m[i];
    int j = i - 1;
    while (j >= 0 && m[j].pos > x.pos) {
      m[j + 1] = m[j];
      j--;
    }
    m[j + 1] = x;
  }
}

/* Google's create_masked_lm_predictions on tokens[0..len) in place; the
 * positions and original ids go to pos[] and ids[] (zero padded to P). */
static void mask_tokens(const PrepParams *p, int32_t *tokens, int len, Rng *r, PrepScratch *w,
                        int32_t *pos, int32_t *ids) {
  uint32_t ng = candidate_groups(p, tokens, len, w);
  grow((void **)&w->order, &w->cap_order, ng, sizeof *w->order);
  for (uint32_t g = 0; g < ng; g++) w->order[g] = g;
  rng_shuffle(r, w->order, ng, sizeof *w->order);

  int want = prep_num_to_predict(len, p->masked_lm_prob, p->max_predictions);
  grow((void **)&w->masked, &w->cap_masked, (size_t)want, sizeof *w->masked);
  int n = 0;
  for (uint32_t k = 0; k < ng && n < want; k++) {
    uint32_t g = w->order[k];
    uint32_t first = w->grp_start[g], size = w->grp_start[g + 1] - first;
    if ((uint32_t)n + size > (uint32_t)want) continue;
    for (uint32_t j = 0; j < size; j++) {
      uint32_t at = w->grp_pos[first + j];
      int32_t original = tokens[at];
      if (rng_uniform(r) < 0.8) tokens[at] = p->mask;
      else if (rng_uniform(r) >= 0.5) tokens[at] = (int32_t)rng_below(r, (uint32_t)p->vocab_size);
      w->masked[n].pos = (int32_t)at;
      w->masked[n].id = original;
      n++;
    }
  }
  sort_masked(w->masked, n);
  int P = p->max_predictions;
  for (int i = 0; i < P; i++) {
    pos[i] = i < n ? w->masked[i].pos : 0;
    ids[i] = i < n ? w->masked[i].id : 0;
  }
}

/* Writes [CLS] A [SEP] B [SEP] as row row of out, masks it and labels it. */
static void emit(const Corpus *c, const PrepParams *p, Span a, Span b, int random_next,
                 Rng *content, PrepScratch *w, Instances *out, size_t row) {
  truncate_pair(&a, &b, (uint64_t)p->seq_length - 3, content);
  size_t S = (size_t)p->seq_length, P = (size_t)p->max_predictions;
  int32_t *ids = out->input_ids + row * S;
  int8_t *mask = out->input_mask + row * S, *seg = out->segment_ids + row * S;
  int la = (int)span_len(a), lb = (int)span_len(b), len = la + lb + 3;
  memset(ids, 0, S * sizeof *ids);
  memset(mask, 0, S);
  memset(seg, 0, S);
  int k = 0;
  ids[k++] = p->cls;
  for (uint64_t t = a.lo; t < a.hi; t++) ids[k++] = corpus_id(c, t);
  ids[k++] = p->sep;
  for (uint64_t t = b.lo; t < b.hi; t++) ids[k++] = corpus_id(c, t);
  ids[k++] = p->sep;
  memset(mask, 1, (size_t)len);
  memset(seg + la + 2, 1, (size_t)(lb + 1));
  mask_tokens(p, ids, len, content, w, out->masked_lm_positions + row * P,
              out->masked_lm_ids + row * P);
  out->next_sentence_labels[row] = (int8_t)(random_next ? 1 : 0);
}

/* Sentences [first, first + n) as a token span (they are contiguous). */
static Span sentences(const Corpus *c, uint64_t first, uint64_t n) {
  Span s = {c->sent_tok[first], c->sent_tok[first + n]};
  return s;
}

/* B for a random next: sentences of another document from a random start
 * until target tokens are reached. */
static Span random_b(const Corpus *c, size_t doc, uint64_t target, Rng *r) {
  size_t other = doc;
  for (int tries = 0; tries < 10; tries++) {
    other = rng_below(r, (uint32_t)c->n_docs);
    if (other != doc) break;
  }
  uint64_t s0 = c->doc_sent[other], s1 = c->doc_sent[other + 1];
  uint64_t j = s0 + rng_below(r, (uint32_t)(s1 - s0));
  Span b = {c->sent_tok[j], c->sent_tok[j]};
  for (; j < s1; j++) {
    b.hi = c->sent_tok[j + 1];
    if (span_len(b) >= target) break;
  }
  return b;
}

size_t prep_document(const Corpus *c, const PrepParams *p, uint32_t pass, size_t doc,
                     PrepScratch *w, const PrepOut *out) {
  Rng layout, content;
  rng_init(&layout, p->seed, pass, (uint32_t)doc);
  rng_init(&content, p->seed, PREP_STREAM_CONTENT + pass, (uint32_t)doc);
  uint64_t max_tokens = (uint64_t)p->seq_length - 3, target = max_tokens;
  if (rng_uniform(&layout) < p->short_seq_prob)
    target = 2 + rng_below(&layout, (uint32_t)max_tokens - 1);

  uint64_t s0 = c->doc_sent[doc], s1 = c->doc_sent[doc + 1];
  uint64_t chunk = s0, chunk_len = 0;
  size_t count = 0;
  for (uint64_t i = s0; i < s1; i++) {
    chunk_len += c->sent_tok[i + 1] - c->sent_tok[i];
    if (i != s1 - 1 && chunk_len < target) continue;
    uint64_t n = i - chunk + 1, a_end = 1;
    if (n >= 2) a_end = 1 + rng_below(&layout, (uint32_t)(n - 1));
    Span a = sentences(c, chunk, a_end), b;
    int random_next = n == 1 || rng_uniform(&layout) < 0.5;
    if (random_next) {
      uint64_t la = span_len(a);
      b = random_b(c, doc, target > la ? target - la : 0, &layout);
      i -= n - a_end; /* the unused sentences start the next chunk */
    } else {
      b = sentences(c, chunk + a_end, n - a_end);
    }
    if (out) {
      if (count >= out->limit)
        die("internal error: document %zu of pass %u makes more instances than counted", doc, pass);
      size_t row = out->rows ? out->rows[count] : out->first_row + count;
      emit(c, p, a, b, random_next, &content, w, out->in, row);
    }
    count++;
    chunk = i + 1;
    chunk_len = 0;
  }
  return count;
}
