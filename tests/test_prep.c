/* Pre-training instance creation on synthetic corpora, the corpus reader,
 * and the HDF5 shard writer and reader. */
#define _POSIX_C_SOURCE 200809L
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "prep.h"
#include "rng.h"
#include "shard.h"
#include "test_util.h"
#include "tokenizer.h"
#include "util.h"
#include "vocab.h"

enum { PAD, UNK, CLS, SEP, MASK, FIRST_WORD };

static char g_tmp[256];

/* ---- synthetic corpora ---- */

/* A corpus whose token at global position t has id FIRST_WORD + t, so every
 * token of an instance tells where it came from. doc_len[d] sentences of
 * sent_len tokens each (sent_len <= 0: random lengths 1..-sent_len). */
static void coded_corpus(Corpus *c, const int *doc_len, size_t n_docs, int sent_len, uint32_t seed) {
  Rng r;
  rng_init(&r, seed, 99, 99);
  memset(c, 0, sizeof *c);
  size_t n_sents = 0;
  for (size_t d = 0; d < n_docs; d++) n_sents += (size_t)doc_len[d];
  c->n_docs = n_docs;
  c->n_sents = n_sents;
  c->doc_sent = xmalloc((n_docs + 1) * sizeof *c->doc_sent);
  c->sent_tok = xmalloc((n_sents + 1) * sizeof *c->sent_tok);
  uint64_t s = 0, t = 0;
  for (size_t d = 0; d < n_docs; d++) {
    c->doc_sent[d] = s;
    for (int k = 0; k < doc_len[d]; k++) {
      c->sent_tok[s++] = t;
      t += sent_len > 0 ? (uint64_t)sent_len : 1 + rng_below(&r, (uint32_t)-sent_len);
    }
  }
  c->doc_sent[n_docs] = s;
  c->sent_tok[s] = t;
  c->n_tokens = t;
  c->ids32 = xmalloc(t * sizeof *c->ids32);
  for (uint64_t i = 0; i < t; i++) c->ids32[i] = FIRST_WORD + (int32_t)i;
}

static PrepParams params(int seq, int pred, double prob, double short_prob, int vocab_size,
                         const uint8_t *pieces) {
  PrepParams p = {seq, pred, prob, short_prob, 0, 4242, vocab_size, CLS, SEP, MASK, pieces};
  return p;
}

/* Makes every instance of passes x documents into one Instances. */
static void make_all(const Corpus *c, const PrepParams *p, int passes, Instances *in) {
  PrepScratch *w = prep_scratch_new();
  size_t total = 0;
  for (int pass = 0; pass < passes; pass++)
    for (size_t d = 0; d < c->n_docs; d++) total += prep_document(c, p, (uint32_t)pass, d, w, NULL);
  instances_alloc(in, total, p->seq_length, p->max_predictions);
  size_t row = 0;
  for (int pass = 0; pass < passes; pass++)
    for (size_t d = 0; d < c->n_docs; d++) {
      PrepOut out = {in, NULL, row, total - row};
      row += prep_document(c, p, (uint32_t)pass, d, w, &out);
    }
  CHECK_INT(row, total);
  prep_scratch_free(w);
}

/* Row i's shape: L (real tokens) and la (tokens of A). */
typedef struct Row {
  const int32_t *ids, *pos, *lm;
  const int8_t *mask, *seg;
  int L, la, lb, npred;
} Row;

static Row row_of(const Instances *in, size_t i) {
  size_t S = (size_t)in->seq_length, P = (size_t)in->max_predictions;
  Row r = {in->input_ids + i * S, in->masked_lm_positions + i * P, in->masked_lm_ids + i * P,
           in->input_mask + i * S, in->segment_ids + i * S, 0, 0, 0, 0};
  while (r.L < in->seq_length && r.mask[r.L]) r.L++;
  while (r.la + 2 < r.L && r.seg[r.la + 2] == 0) r.la++;
  r.lb = r.L - r.la - 3;
  while (r.npred < in->max_predictions && r.pos[r.npred] != 0) r.npred++;
  return r;
}

/* The row's tokens before masking. */
static void original(const Row *r, int32_t *out) {
  memcpy(out, r->ids, (size_t)r->L * sizeof *out);
  for (int k = 0; k < r->npred; k++) out[r->pos[k]] = r->lm[k];
}

/* Layout, padding and mask bookkeeping every instance must satisfy. */
static int check_row(const Instances *in, size_t i, const PrepParams *p, int exact_count) {
  Row r = row_of(in, i);
  int S = in->seq_length, P = in->max_predictions, ok = 1;
  ok &= r.L >= 5 && r.L <= S && r.la >= 1 && r.lb >= 1;
  ok &= r.ids[0] == CLS && r.ids[r.la + 1] == SEP && r.ids[r.L - 1] == SEP;
  for (int k = 0; k < r.L; k++) ok &= r.mask[k] == 1 && r.seg[k] == (k >= r.la + 2);
  for (int k = r.L; k < S; k++) ok &= r.ids[k] == 0 && r.mask[k] == 0 && r.seg[k] == 0;
  for (int k = r.npred; k < P; k++) ok &= r.pos[k] == 0 && r.lm[k] == 0;
  int want = prep_num_to_predict(r.L, p->masked_lm_prob, p->max_predictions);
  if (want > r.L - 3) want = r.L - 3;
  ok &= r.npred <= want && r.npred <= P && (r.npred >= 1 || !exact_count);
  if (exact_count) ok &= r.npred == want;
  for (int k = 0; k < r.npred; k++) {
    int at = r.pos[k];
    ok &= at > 0 && at < r.L - 1 && at != r.la + 1;  /* never [CLS], [SEP] or padding */
    ok &= k == 0 || at > r.pos[k - 1];                /* sorted, distinct */
    ok &= r.lm[k] != CLS && r.lm[k] != SEP && r.lm[k] >= 0 && r.lm[k] < p->vocab_size;
  }
  for (int k = 0; k < r.L; k++) {
    int masked = 0;
    for (int j = 0; j < r.npred; j++) masked |= r.pos[j] == k;
    if (!masked && k != 0 && k != r.la + 1 && k != r.L - 1)
      ok &= r.ids[k] != CLS && r.ids[k] != SEP && r.ids[k] != MASK;
  }
  if (!ok) fprintf(stderr, "row %zu is malformed (L %d, la %d, masked %d)\n", i, r.L, r.la, r.npred);
  return ok;
}

/* ---- tests ---- */

static void test_rounding(void) {
  CHECK_INT(prep_round_half_even(2.5), 2);
  CHECK_INT(prep_round_half_even(3.5), 4);
  CHECK_INT(prep_round_half_even(0.5), 0);
  CHECK_INT(prep_round_half_even(19.2), 19);
  CHECK_INT(prep_round_half_even(19.5), 20);
  CHECK_INT(prep_num_to_predict(128, 0.15, 20), 19);  /* 19.2 */
  CHECK_INT(prep_num_to_predict(10, 0.25, 20), 2);    /* 2.5 -> 2 */
  CHECK_INT(prep_num_to_predict(14, 0.25, 20), 4);    /* 3.5 -> 4 */
  CHECK_INT(prep_num_to_predict(2, 0.25, 20), 1);     /* 0.5 -> 0 -> at least 1 */
  CHECK_INT(prep_num_to_predict(200, 0.15, 20), 20);  /* capped */
}

/* Layout, padding, mask counts on a corpus of random sentence lengths, for
 * several masking rates (some hitting exact halves). */
static void test_layout(void) {
  int docs[300];
  Rng r;
  rng_init(&r, 7, 0, 0);
  for (int d = 0; d < 300; d++) docs[d] = 1 + (int)rng_below(&r, 12);
  Corpus c;
  coded_corpus(&c, docs, 300, -40, 1);
  const double probs[] = {0.15, 0.25, 0.5, 0.9};
  for (size_t k = 0; k < ARRAY_LEN(probs); k++) {
    PrepParams p = params(64, 12, probs[k], 0.1, FIRST_WORD + (int)c.n_tokens, NULL);
    Instances in;
    make_all(&c, &p, 2, &in);
    int bad = 0;
    for (size_t i = 0; i < in.n; i++) bad += !check_row(&in, i, &p, 1);
    CHECK_INT(bad, 0);
    CHECK(in.n > 300);
    instances_free(&in);
  }
  corpus_free(&c);
}

/* A and B are runs of the corpus; when B is the true next, it follows A in
 * the same document; truncation keeps every instance within seq_length. */
static void test_pairs_and_truncation(void) {
  int docs[200];
  Rng r;
  rng_init(&r, 8, 0, 0);
  for (int d = 0; d < 200; d++) docs[d] = 1 + (int)rng_below(&r, 6);
  Corpus c;
  coded_corpus(&c, docs, 200, -150, 2); /* sentences up to 150 tokens: lots of truncation */
  PrepParams p = params(48, 8, 0.15, 0.2, FIRST_WORD + (int)c.n_tokens, NULL);
  Instances in;
  make_all(&c, &p, 3, &in);
  int32_t *tok = xmalloc((size_t)p.seq_length * sizeof *tok);
  uint8_t *starts = xcalloc(c.n_tokens + 1, 1); /* sentence boundaries */
  for (size_t k = 0; k <= c.n_sents; k++) starts[c.sent_tok[k]] = 1;
  int bad = 0, full = 0, front = 0, back = 0, a_longer = 0, b_longer = 0;
  for (size_t i = 0; i < in.n; i++) {
    Row row = row_of(&in, i);
    bad += !check_row(&in, i, &p, 1);
    original(&row, tok);
    full += row.L == p.seq_length;
    /* A starts and ends on sentence boundaries unless trimmed there. */
    front += !starts[tok[1] - FIRST_WORD];
    back += !starts[tok[row.la] - FIRST_WORD + 1];
    /* Trimming the longer side, B on ties, leaves A one longer when both
     * were long; A one shorter only when A was exactly that short. */
    a_longer += row.la == 23 && row.lb == 22;
    b_longer += row.la == 22 && row.lb == 23;
    int ok = 1;
    for (int k = 2; k <= row.la; k++) ok &= tok[k] == tok[k - 1] + 1;
    for (int k = row.la + 3; k < row.L - 1; k++) ok &= tok[k] == tok[k - 1] + 1;
    if (!in.next_sentence_labels[i]) {
      /* The true next segment: B follows A, maybe with tokens trimmed between them. */
      ok &= tok[row.la + 2] > tok[row.la];
      uint64_t ta = (uint64_t)(tok[1] - FIRST_WORD), tb = (uint64_t)(tok[row.L - 2] - FIRST_WORD);
      size_t d = 0;
      while (c.sent_tok[c.doc_sent[d + 1]] <= ta) d++;
      ok &= tb < c.sent_tok[c.doc_sent[d + 1]];
    }
    bad += !ok;
  }
  CHECK_INT(bad, 0);
  CHECK(full > (int)in.n / 4); /* truncation really happened */
  CHECK(front > (front + back) / 4 && back > (front + back) / 4); /* both ends, about half each */
  CHECK(a_longer > 50 && a_longer > 5 * b_longer);
  free(starts);
  free(tok);
  instances_free(&in);
  corpus_free(&c);
}

/* sd bound: |observed - expected| <= 4 sqrt(n p (1 - p)). */
static int within_4sd(double count, double n, double prob, const char *what) {
  double sd = sqrt(n * prob * (1 - prob)), dev = fabs(count - n * prob);
  int ok = dev <= 4 * sd;
  if (!ok) fprintf(stderr, "%s: %.0f of %.0f, expected %.1f +- %.1f (4 sd)\n", what, count, n, n * prob, 4 * sd);
  return ok;
}

/* The 80/10/10 split of masked tokens and the coin of random next. Documents
 * of two 70-token sentences with a target of 125: the first instance of a
 * document always has a two-sentence chunk, so its random-next label is a
 * fair coin; a random next puts the second sentence back, which then makes
 * a second instance (forced random). */
static void test_statistics(void) {
  enum { DOCS = 1500 };
  int docs[DOCS];
  for (int d = 0; d < DOCS; d++) docs[d] = 2;
  Corpus c;
  coded_corpus(&c, docs, DOCS, 70, 3);
  int V = FIRST_WORD + (int)c.n_tokens;
  PrepParams p = params(128, 20, 0.15, 0.0, V, NULL);
  Instances in;
  make_all(&c, &p, 2, &in);
  double masked = 0, as_mask = 0, kept = 0, firsts = 0, first_random = 0, seconds_random = 0, seconds = 0;
  int bad = 0;
  int32_t *tok = xmalloc(128 * sizeof *tok);
  for (size_t i = 0; i < in.n; i++) {
    Row r = row_of(&in, i);
    bad += !check_row(&in, i, &p, 1);
    for (int k = 0; k < r.npred; k++) {
      masked++;
      int32_t now = r.ids[r.pos[k]];
      as_mask += now == MASK;
      kept += now == r.lm[k];
    }
    original(&r, tok);
    uint64_t ta = (uint64_t)(tok[1] - FIRST_WORD);
    size_t d = ta / 140;
    int in_first = ta < d * 140 + 70;
    if (in_first) {
      firsts++;
      first_random += in.next_sentence_labels[i];
    } else {
      seconds++;
      seconds_random += in.next_sentence_labels[i];
    }
  }
  CHECK_INT(bad, 0);
  CHECK(masked >= 20000);
  /* A random replacement may hit [MASK] or the original by chance (1/V each). */
  double p_mask = 0.8 + 0.1 / V, p_kept = 0.1 + 0.1 / V, p_other = 0.1 * (1 - 2.0 / V);
  CHECK(within_4sd(as_mask, masked, p_mask, "[MASK] replacements"));
  CHECK(within_4sd(kept, masked, p_kept, "kept originals"));
  CHECK(within_4sd(masked - as_mask - kept, masked, p_other, "random replacements"));
  CHECK_INT(firsts, 2 * DOCS); /* one first instance per (pass, document) */
  CHECK(within_4sd(first_random, firsts, 0.5, "random next"));
  CHECK_INT(seconds, first_random);      /* a second instance exactly when the first was random */
  CHECK_INT(seconds_random, seconds);    /* and it is a forced random next */
  free(tok);
  instances_free(&in);
  corpus_free(&c);
}

/* Whole-word masking: a word ("w ##x ##y") is masked entirely or not at all. */
static void test_whole_word(void) {
  enum { WORDS = 100, PIECES = 100 };
  int V = FIRST_WORD + WORDS + PIECES;
  uint8_t *pieces = xcalloc((size_t)V, 1);
  for (int i = FIRST_WORD + WORDS; i < V; i++) pieces[i] = 1;
  int docs[400];
  Rng r;
  rng_init(&r, 9, 0, 0);
  for (int d = 0; d < 400; d++) docs[d] = 1 + (int)rng_below(&r, 8);
  Corpus c;
  coded_corpus(&c, docs, 400, -30, 4);
  /* Re-code as words of 1 to 4 pieces, in uint16. */
  c.ids16 = xmalloc(c.n_tokens * sizeof *c.ids16);
  for (uint64_t t = 0; t < c.n_tokens; t++) {
    int start = t == 0 || rng_below(&r, 3) == 0;
    c.ids16[t] = (uint16_t)(start ? FIRST_WORD + (int)rng_below(&r, WORDS)
                                  : FIRST_WORD + WORDS + (int)rng_below(&r, PIECES));
  }
  free(c.ids32);
  c.ids32 = NULL;
  PrepParams p = params(64, 10, 0.15, 0.1, V, pieces);
  p.whole_word_mask = 1;
  Instances in;
  make_all(&c, &p, 2, &in);
  int bad = 0, split = 0, multi = 0;
  int32_t tok[64];
  for (size_t i = 0; i < in.n; i++) {
    Row row = row_of(&in, i);
    bad += !check_row(&in, i, &p, 0);
    original(&row, tok);
    uint8_t is_masked[64] = {0};
    for (int k = 0; k < row.npred; k++) is_masked[row.pos[k]] = 1;
    /* Walk the groups as Google's tool forms them. */
    int prev = -1; /* last position of the current group */
    for (int k = 1; k < row.L - 1; k++) {
      if (k == row.la + 1) continue;
      if (pieces[tok[k]] && prev >= 0) {
        split += is_masked[k] != is_masked[prev];
        multi += is_masked[k];
      }
      prev = k;
    }
  }
  CHECK_INT(bad, 0);
  CHECK_INT(split, 0);
  CHECK(multi > 1000); /* pieces were masked with their words */
  instances_free(&in);
  corpus_free(&c);
  free(pieces);
}

/* Same (seed, pass, document): same instances; counting agrees with making. */
static void test_determinism(void) {
  int docs[50];
  for (int d = 0; d < 50; d++) docs[d] = 3 + d % 7;
  Corpus c;
  coded_corpus(&c, docs, 50, -25, 5);
  PrepParams p = params(32, 5, 0.15, 0.1, FIRST_WORD + (int)c.n_tokens, NULL);
  PrepScratch *w = prep_scratch_new();
  int same = 1, differs = 0;
  for (size_t d = 0; d < 50; d++) {
    size_t n = prep_document(&c, &p, 1, d, w, NULL);
    Instances a, b, e;
    instances_alloc(&a, n, 32, 5);
    instances_alloc(&b, n, 32, 5);
    instances_alloc(&e, n, 32, 5);
    PrepOut oa = {&a, NULL, 0, n}, ob = {&b, NULL, 0, n}, oe = {&e, NULL, 0, n};
    same &= prep_document(&c, &p, 1, d, w, &oa) == n;
    same &= prep_document(&c, &p, 1, d, w, &ob) == n;
    same &= memcmp(a.input_ids, b.input_ids, n * 32 * 4) == 0;
    same &= memcmp(a.masked_lm_positions, b.masked_lm_positions, n * 5 * 4) == 0;
    same &= memcmp(a.next_sentence_labels, b.next_sentence_labels, n) == 0;
    size_t ne = prep_document(&c, &p, 2, d, w, NULL); /* another pass */
    if (ne == n) {
      prep_document(&c, &p, 2, d, w, &oe);
      differs += memcmp(a.input_ids, e.input_ids, n * 32 * 4) != 0;
    } else {
      differs++;
    }
    instances_free(&a);
    instances_free(&b);
    instances_free(&e);
  }
  CHECK(same);
  CHECK(differs >= 45);
  /* Rows given explicitly: instance k goes to rows[k]. */
  size_t n = prep_document(&c, &p, 0, 7, w, NULL);
  Instances a, b;
  instances_alloc(&a, n, 32, 5);
  instances_alloc(&b, n, 32, 5);
  uint32_t *rows = xmalloc(n * sizeof *rows);
  for (size_t k = 0; k < n; k++) rows[k] = (uint32_t)(n - 1 - k);
  PrepOut oa = {&a, NULL, 0, n}, ob = {&b, rows, 0, n};
  prep_document(&c, &p, 0, 7, w, &oa);
  prep_document(&c, &p, 0, 7, w, &ob);
  int rev = 1;
  for (size_t k = 0; k < n; k++) rev &= memcmp(a.input_ids + k * 32, b.input_ids + (n - 1 - k) * 32, 32 * 4) == 0;
  CHECK(rev);
  free(rows);
  instances_free(&a);
  instances_free(&b);
  prep_scratch_free(w);
  corpus_free(&c);
}

static void overflow_limit(void *arg) {
  const Corpus *c = arg;
  PrepParams p = params(32, 5, 0.15, 0.0, FIRST_WORD + (int)c->n_tokens, NULL);
  PrepScratch *w = prep_scratch_new();
  Instances in;
  instances_alloc(&in, 100, 32, 5);
  PrepOut out = {&in, NULL, 0, 1};
  prep_document(c, &p, 0, 0, w, &out);
}

static void test_limit(void) {
  int docs[2] = {40, 3};
  Corpus c;
  coded_corpus(&c, docs, 2, 20, 6);
  const char *want[] = {"more instances than counted", NULL};
  expect_death("unit over its counted instances", overflow_limit, &c, want);
  corpus_free(&c);
}

/* Python's str.strip(). */
static void test_strip(void) {
  struct { const char *in, *out; } cases[] = {
    {"  abc  ", "abc"}, {"\t\x0b\x0c abc\r", "abc"}, {"", ""}, {"   ", ""},
    {"\xe3\x80\x80" "abc" "\xc2\xa0", "abc"},           /* U+3000, U+00A0: whitespace */
    {"\xe2\x80\x8b" "abc", "\xe2\x80\x8b" "abc"},       /* U+200B is not */
    {"\x1c" "a b" "\x1f", "a b"}, {"\xe2\x80\xa8x\xc2\x85", "x"}, /* U+2028, U+0085 */
    {"x\xff ", "x\xff"},                               /* invalid byte: stops there */
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    size_t a, b;
    py_strip(cases[i].in, strlen(cases[i].in), &a, &b);
    char got[64];
    memcpy(got, cases[i].in + a, b - a);
    got[b - a] = '\0';
    CHECK_STR(got, cases[i].out);
  }
}

/* ---- the corpus reader ---- */

static const char *tmp_path(const char *name) {
  static char buf[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", g_tmp, name);
  return buf[k];
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  fputs(text, f);
  fclose(f);
}

static Vocab *tiny_vocab(void) {
  char *toks[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "##s"};
  return vocab_from_tokens(toks, (int)ARRAY_LEN(toks), "tiny");
}

static void test_corpus_load(void) {
  /* File 1: doc "a b" / "c"; a whitespace-only line ends it; a line of
   * control characters has no tokens and is skipped; two blank lines make
   * an empty document (dropped); the file's end ends "bs". File 2 starts a
   * new document. */
  char f1[512], f2[512];
  snprintf(f1, sizeof f1, "%s", tmp_path("c1.txt"));
  snprintf(f2, sizeof f2, "%s", tmp_path("c2.txt"));
  write_text(f1, "  a b \nc\n \t \n\x01\x02\nb\n\n\n\nbs\n");
  write_text(f2, "c a\n\n");
  Vocab *v = tiny_vocab();
  Tokenizer *t = tokenizer_new(v, 1, 100);
  Corpus c;
  char *files[] = {f1, f2};
  corpus_load(&c, files, 2, t, v->size);
  CHECK_INT(c.n_docs, 4);
  CHECK_INT(c.n_sents, 5);
  CHECK_INT(c.n_tokens, 8);
  CHECK(c.ids16 != NULL && c.ids32 == NULL);
  const uint64_t want_docs[] = {0, 2, 3, 4, 5};
  for (int i = 0; i <= 4; i++) CHECK_INT(c.doc_sent[i], want_docs[i]);
  const uint64_t want_sent[] = {0, 2, 3, 4, 6, 8};
  for (int i = 0; i <= 5; i++) CHECK_INT(c.sent_tok[i], want_sent[i]);
  const int want_ids[] = {5, 6, 7, 6, 6, 8, 7, 5}; /* a b | c | b | b ##s | c a */
  for (int i = 0; i < 8; i++) CHECK_INT(corpus_id(&c, (uint64_t)i), want_ids[i]);
  corpus_free(&c);
  /* More than 65,536 ids: int32 storage, same content. */
  corpus_load(&c, files, 2, t, 70000);
  CHECK(c.ids32 != NULL && c.ids16 == NULL && c.n_tokens == 8 && corpus_id(&c, 5) == 8);
  corpus_free(&c);
  tokenizer_free(t);
  vocab_free(v);
}

static void load_bad_utf8(void *arg) {
  (void)arg;
  Vocab *v = tiny_vocab();
  Tokenizer *t = tokenizer_new(v, 1, 100);
  char path[512];
  snprintf(path, sizeof path, "%s", tmp_path("bad.txt"));
  write_text(path, "a\nb\n\nc \xc3\x28 a\n");
  char *files[] = {path};
  Corpus c;
  corpus_load(&c, files, 1, t, v->size);
}

static void test_corpus_errors(void) {
  const char *want[] = {"bad.txt:4: invalid UTF-8", NULL};
  expect_death("invalid UTF-8 in the corpus", load_bad_utf8, NULL, want);
}

static void test_gather_without_mpi(void) {
  uint64_t counts[1];
  const char data[] = "hello";
  unsigned char *out = allgather_bytes(data, 5, counts, 2);
  CHECK(counts[0] == 5 && memcmp(out, "hello", 5) == 0);
  free(out);
}

/* ---- shards ---- */

static void fill_instances(Instances *in, size_t n) {
  instances_alloc(in, n, 16, 4);
  for (size_t i = 0; i < n * 16; i++) {
    in->input_ids[i] = (int32_t)(i * 7 + 1);
    in->input_mask[i] = (int8_t)(i % 2);
    in->segment_ids[i] = (int8_t)(i % 3 == 0);
  }
  for (size_t i = 0; i < n * 4; i++) {
    in->masked_lm_positions[i] = (int32_t)(i % 16);
    in->masked_lm_ids[i] = (int32_t)(100000 + i);
  }
  for (size_t i = 0; i < n; i++) in->next_sentence_labels[i] = (int8_t)(i % 2);
}

static int rows_equal(const Instances *a, size_t from, const Instances *b, size_t count) {
  size_t S = 16, P = 4;
  return memcmp(a->input_ids + from * S, b->input_ids, count * S * 4) == 0 &&
         memcmp(a->input_mask + from * S, b->input_mask, count * S) == 0 &&
         memcmp(a->segment_ids + from * S, b->segment_ids, count * S) == 0 &&
         memcmp(a->masked_lm_positions + from * P, b->masked_lm_positions, count * P * 4) == 0 &&
         memcmp(a->masked_lm_ids + from * P, b->masked_lm_ids, count * P * 4) == 0 &&
         memcmp(a->next_sentence_labels + from, b->next_sentence_labels, count) == 0;
}

static void test_shard_roundtrip(void) {
  Instances in, got;
  fill_instances(&in, 5000);
  ShardAttrs a = {0, SHARD_FORMAT_VERSION, 30522, 16, 4, 777, 5, 1, 2, 3, 0xfedcba9876543210ULL, 0.15, 0.1};
  const char *path = tmp_path("s.h5");
  shard_write(path, &in, &a);
  CHECK(file_exists(path));
  char tmp[600];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  CHECK(!file_exists(tmp));
  Shard *s = shard_open(path);
  CHECK_INT(s->n, 5000);
  CHECK_INT(s->seq_length, 16);
  CHECK_INT(s->max_predictions, 4);
  CHECK(s->attrs.present);
  CHECK_INT(s->attrs.vocab_size, 30522);
  CHECK(s->attrs.vocab_hash == 0xfedcba9876543210ULL);
  CHECK_INT(s->attrs.seed, 777);
  CHECK_INT(s->attrs.shard_index, 2);
  CHECK_INT(s->attrs.num_shards, 3);
  CHECK_INT(s->attrs.whole_word_mask, 1);
  CHECK(s->attrs.masked_lm_prob == 0.15 && s->attrs.short_seq_prob == 0.1);
  instances_alloc(&got, 1000, 16, 4);
  shard_read(s, 3333, 1000, &got);
  CHECK(rows_equal(&in, 3333, &got, 1000));
  shard_read(s, 4999, 1, &got);
  CHECK(rows_equal(&in, 4999, &got, 1));
  shard_close(s);
  instances_free(&got);
  instances_free(&in);
}

/* Writes a file with the datasets (all but skip), types of `bytes` bytes. */
static void write_foreign(const char *path, const char *skip, int bytes, hsize_t n, hsize_t lm_width) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t type = bytes == 8 ? H5T_STD_I64LE : H5T_STD_I32LE;
  hsize_t widths[6] = {16, 16, 16, 4, lm_width, 0};
  int64_t *buf = xcalloc(n * 16, sizeof *buf);
  for (hsize_t i = 0; i < n * 16; i++) buf[i] = (int64_t)i;
  for (int k = 0; k < SHARD_NUM_DATASETS; k++) {
    if (skip && strcmp(skip, SHARD_DATASETS[k]) == 0) continue;
    hsize_t dims[2] = {n, widths[k]};
    hid_t sp = H5Screate_simple(widths[k] ? 2 : 1, dims, NULL);
    hid_t ds = H5Dcreate2(f, SHARD_DATASETS[k], type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Dclose(ds);
    H5Sclose(sp);
  }
  H5Fclose(f);
  free(buf);
}

static void open_it(void *arg) { shard_open(arg); }

static void test_shard_foreign(void) {
  /* A shard without our attributes, 64-bit integers: read with conversion. */
  const char *path = tmp_path("nv.h5");
  write_foreign(path, NULL, 8, 10, 4);
  Shard *s = shard_open(path);
  CHECK(!s->attrs.present);
  CHECK(s->n == 10 && s->seq_length == 16 && s->max_predictions == 4);
  Instances got;
  instances_alloc(&got, 2, 16, 4);
  shard_read(s, 8, 2, &got);
  CHECK_INT(got.input_ids[0], 8 * 16);
  CHECK_INT(got.input_ids[31], 9 * 16 + 15);
  CHECK_INT(got.masked_lm_ids[0], 8 * 4);
  CHECK_INT(got.next_sentence_labels[1], 9);
  instances_free(&got);
  shard_close(s);

  char miss[512];
  snprintf(miss, sizeof miss, "%s", tmp_path("missing.h5"));
  write_foreign(miss, "masked_lm_ids", 4, 10, 4);
  const char *want1[] = {"missing.h5", "dataset masked_lm_ids is missing", NULL};
  expect_death("shard without masked_lm_ids", open_it, miss, want1);

  char shape[512];
  snprintf(shape, sizeof shape, "%s", tmp_path("shape.h5"));
  write_foreign(shape, NULL, 4, 10, 5);
  const char *want2[] = {"shape.h5", "dataset masked_lm_ids has shape [10, 5]", NULL};
  expect_death("shard with inconsistent shapes", open_it, shape, want2);

  char text[512];
  snprintf(text, sizeof text, "%s", tmp_path("text.h5"));
  write_text(text, "not hdf5\n");
  const char *want3[] = {"text.h5", "not an HDF5 file", NULL};
  expect_death("a text file as shard", open_it, text, want3);
}

int main(void) {
  snprintf(g_tmp, sizeof g_tmp, "/tmp/test_prep.XXXXXX");
  if (!mkdtemp(g_tmp)) { perror("mkdtemp"); return 2; }
  test_rounding();
  test_layout();
  test_pairs_and_truncation();
  test_statistics();
  test_whole_word();
  test_determinism();
  test_limit();
  test_strip();
  test_corpus_load();
  test_corpus_errors();
  test_gather_without_mpi();
  test_shard_roundtrip();
  test_shard_foreign();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
  return test_finish();
}
