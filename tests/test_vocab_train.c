/* WordPiece vocabulary training: a worked example, agreement with a naive
 * recount-everything trainer on random corpora, determinism, sizes, and
 * that every training word splits into the trained pieces without [UNK]. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "test_util.h"
#include "tokenizer.h"
#include "util.h"
#include "vocab.h"
#include "vocab_train.h"

typedef struct WC {
  const char *word;
  int64_t count;
} WC;

static WordCounts *counts_of(const WC *w, int n) {
  WordCounts *wc = word_counts_new();
  for (int i = 0; i < n; i++) word_counts_add(wc, w[i].word, strlen(w[i].word), w[i].count);
  return wc;
}

static char **train(const WordCounts *wc, int size, int64_t min_frequency, int *n) {
  VocabTrainOptions o = {size, min_frequency, NULL, NULL};
  return vocab_train(wc, &o, n);
}

static int same_list(char **a, int na, char **b, int nb) {
  if (na != nb) return 0;
  for (int i = 0; i < na; i++)
    if (strcmp(a[i], b[i]) != 0) return 0;
  return 1;
}

/* hug 10, pug 5, pun 12, bun 4, hugs 5. Alphabet: b g h n p s u, then
 * ##g ##n ##s ##u. Pair counts: ##u ##g 20, p ##u 17, ##u ##n 16, h ##u 15,
 * ##g ##s 5, b ##u 4. Merges: ##ug (20); then ##u ##n is still 16 -> ##un;
 * h ##ug 15 -> hug; p ##un 12 -> pun; then p ##ug and hug ##s tie at 5 and
 * "hugs" < "pug" byte-wise; pug; bun (4); then no pair is left. */
static const WC HUG[] = {{"hug", 10}, {"pug", 5}, {"pun", 12}, {"bun", 4}, {"hugs", 5}};
static const char *const HUG_VOCAB[] = {
  "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "b", "g", "h", "n", "p", "s", "u",
  "##g", "##n", "##s", "##u", "##ug", "##un", "hug", "pun", "hugs", "pug", "bun",
};

static void test_worked_example(void) {
  WordCounts *wc = counts_of(HUG, 5);
  CHECK_INT(vocab_train_min_size(wc), 16);
  CHECK_INT(word_counts_distinct(wc), 5);
  CHECK_INT(word_counts_total(wc), 36);
  int n;
  char **v = train(wc, 1000, 1, &n);
  CHECK_INT(n, (int)ARRAY_LEN(HUG_VOCAB));
  for (int i = 0; i < n && i < (int)ARRAY_LEN(HUG_VOCAB); i++) CHECK_STR(v[i], HUG_VOCAB[i]);
  vocab_tokens_free(v, n);
  /* min_frequency 5 stops before "bun" (seen 4 times). */
  v = train(wc, 1000, 5, &n);
  CHECK_INT(n, (int)ARRAY_LEN(HUG_VOCAB) - 1);
  CHECK_STR(v[n - 1], "pug");
  vocab_tokens_free(v, n);
  /* A size the corpus allows is met exactly: a prefix of the full list. */
  for (int size = 16; size <= 22; size++) {
    v = train(wc, size, 1, &n);
    CHECK_INT(n, size);
    int prefix = 1;
    for (int i = 0; i < n; i++) prefix &= strcmp(v[i], HUG_VOCAB[i]) == 0;
    CHECK(prefix);
    vocab_tokens_free(v, n);
  }
  word_counts_free(wc);
}

static void train_too_small(void *arg) {
  int n;
  train(arg, 15, 1, &n);
}

static void test_too_small(void) {
  WordCounts *wc = counts_of(HUG, 5);
  const char *const expect[] = {"15 tokens is too small", "at least 16", NULL};
  expect_death("size below specials + alphabet", train_too_small, wc, expect);
  word_counts_free(wc);
}

/* Code points, not bytes: "é" (2 bytes), "ж" (2), "€" (3), "𝒜" (4). */
static void test_code_points(void) {
  const WC w[] = {{"café", 7}, {"жж", 3}, {"€5", 2}, {"a\xF0\x9D\x92\x9C", 4}};
  WordCounts *wc = counts_of(w, 4);
  int n;
  char **v = train(wc, 100, 2, &n);
  /* bare: 5 a c f é ж € 𝒜 (byte order) = 8; ##: ##5 ##a ##f ##é ##ж ##𝒜 = 6. */
  CHECK_INT(vocab_train_min_size(wc), 5 + 8 + 6);
  const char *const alphabet[] = {"5",   "a",   "c",   "f",   "é",   "ж",   "€",
                                  "𝒜",   "##5", "##a", "##f", "##é", "##ж", "##𝒜"};
  for (int i = 0; i < 14 && 5 + i < n; i++) CHECK_STR(v[5 + i], alphabet[i]);
  /* café 7: c ##a 7, ##a ##f 7, ##f ##é 7: ties go to "##af" < "##fé" < "ca". */
  CHECK(n > 19);
  if (n > 19) CHECK_STR(v[19], "##af");
  int have_cafe = 0, have_zhzh = 0, have_a_script = 0;
  for (int i = 0; i < n; i++) {
    have_cafe |= strcmp(v[i], "café") == 0;
    have_zhzh |= strcmp(v[i], "жж") == 0;
    have_a_script |= strcmp(v[i], "a\xF0\x9D\x92\x9C") == 0;
  }
  CHECK(have_cafe && have_zhzh && have_a_script);
  vocab_tokens_free(v, n);
  word_counts_free(wc);
}

static void bad_utf8(void *arg) {
  (void)arg;
  WordCounts *wc = word_counts_new();
  word_counts_add(wc, "a\xC3", 2, 1);
  vocab_train_min_size(wc);
}

static void test_invalid_utf8_dies(void) {
  const char *const expect[] = {"not valid UTF-8", NULL};
  expect_death("invalid UTF-8 word", bad_utf8, NULL, expect);
}

/* ---- A naive trainer: recounts every pair before every merge. ---- */

typedef struct NaiveWord {
  char **sym;
  int n;
  int64_t count;
} NaiveWord;

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int utf8_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

static int list_index(char **list, int n, const char *s) {
  for (int i = 0; i < n; i++)
    if (strcmp(list[i], s) == 0) return i;
  return -1;
}

static char *merged(const char *a, const char *b) {
  if (strncmp(b, "##", 2) == 0) b += 2;
  char *s = malloc(strlen(a) + strlen(b) + 1);
  strcpy(s, a);
  strcat(s, b);
  return s;
}

static char **naive_train(const WC *w, int nw, int size, int64_t minf, int *nout) {
  char **vocab = malloc(sizeof(char *) * (size_t)(size + 64 * nw + 16));
  int nv = 0;
  for (int i = 0; i < VOCAB_NUM_SPECIALS; i++) vocab[nv++] = strdup(VOCAB_SPECIALS[i]);
  char *bare[256], *cont[256];
  int nb = 0, nc = 0;
  NaiveWord *words = calloc((size_t)nw, sizeof *words);
  for (int k = 0; k < nw; k++) {
    const char *s = w[k].word;
    words[k].count = w[k].count;
    words[k].sym = malloc(sizeof(char *) * strlen(s));
    for (int i = 0; s[i];) {
      int l = utf8_len((unsigned char)s[i]);
      char c[8] = "##";
      memcpy(c + 2, s + i, (size_t)l);
      c[2 + l] = 0;
      if (list_index(bare, nb, c + 2) < 0) bare[nb++] = strdup(c + 2);
      if (i > 0 && list_index(cont, nc, c) < 0) cont[nc++] = strdup(c);
      words[k].sym[words[k].n++] = strdup(i == 0 ? c + 2 : c);
      i += l;
    }
  }
  qsort(bare, (size_t)nb, sizeof *bare, cmp_str);
  qsort(cont, (size_t)nc, sizeof *cont, cmp_str);
  for (int i = 0; i < nb; i++) vocab[nv++] = bare[i];
  for (int i = 0; i < nc; i++) vocab[nv++] = cont[i];
  while (nv < size) {
    /* Find the best pair by recounting from scratch. */
    const char *ba = NULL, *bb = NULL;
    char *bm = NULL;
    int64_t bc = 0;
    for (int k = 0; k < nw; k++)
      for (int i = 0; i + 1 < words[k].n; i++) {
        const char *a = words[k].sym[i], *b = words[k].sym[i + 1];
        int64_t c = 0;
        for (int q = 0; q < nw; q++)
          for (int j = 0; j + 1 < words[q].n; j++)
            if (!strcmp(words[q].sym[j], a) && !strcmp(words[q].sym[j + 1], b)) c += words[q].count;
        char *m = merged(a, b);
        int better = !bm || c > bc;
        if (bm && c == bc) {
          int cm = strcmp(m, bm);
          better = cm < 0 || (cm == 0 && strcmp(a, ba) < 0);
        }
        if (better) {
          free(bm);
          bm = m, ba = a, bb = b, bc = c;
        } else {
          free(m);
        }
      }
    if (!bm || bc < minf) {
      free(bm);
      break;
    }
    char *a = strdup(ba), *b = strdup(bb);
    for (int k = 0; k < nw; k++) {
      int o = 0;
      for (int i = 0; i < words[k].n; i++) {
        if (i + 1 < words[k].n && !strcmp(words[k].sym[i], a) && !strcmp(words[k].sym[i + 1], b)) {
          free(words[k].sym[i]);
          free(words[k].sym[i + 1]);
          words[k].sym[o++] = strdup(bm);
          i++;
        } else {
          words[k].sym[o++] = words[k].sym[i];
        }
      }
      words[k].n = o;
    }
    if (list_index(vocab, nv, bm) < 0) vocab[nv++] = bm;
    else free(bm);
    free(a);
    free(b);
  }
  for (int k = 0; k < nw; k++) {
    for (int i = 0; i < words[k].n; i++) free(words[k].sym[i]);
    free(words[k].sym);
  }
  free(words);
  *nout = nv;
  return vocab;
}

/* Random words over one to four letters (one of them two bytes), so pairs
 * repeat, overlap ("aaa") and tie. */
static int random_words(Rng *r, WC *w, char buf[][16], int max_words) {
  static const char *const LETTERS[] = {"a", "b", "c", "\xC3\xA9"};
  int n = 0, tries = 0;
  int want = 2 + (int)rng_below(r, (uint32_t)max_words - 1);
  uint32_t nletters = 1 + rng_below(r, 4);
  while (n < want && tries++ < 1000) {
    int len = 1 + (int)rng_below(r, 7), o = 0;
    for (int i = 0; i < len; i++) {
      const char *l = LETTERS[rng_below(r, nletters)];
      memcpy(buf[n] + o, l, strlen(l));
      o += (int)strlen(l);
    }
    buf[n][o] = 0;
    int dup = 0;
    for (int k = 0; k < n; k++) dup |= strcmp(buf[k], buf[n]) == 0;
    if (dup) continue;
    w[n].word = buf[n];
    w[n].count = 1 + rng_below(r, 6);
    n++;
  }
  return n;
}

static void test_matches_naive_trainer(void) {
  Rng r;
  rng_init(&r, 2024, 7, 0);
  int agree = 0, trials = 300;
  for (int t = 0; t < trials; t++) {
    WC w[24];
    char buf[24][16];
    int nw = random_words(&r, w, buf, 24);
    int64_t minf = 1 + (int64_t)rng_below(&r, 3);
    WordCounts *wc = counts_of(w, nw);
    int size = vocab_train_min_size(wc) + (int)rng_below(&r, 40);
    int n1, n2;
    char **v1 = train(wc, size, minf, &n1);
    char **v2 = naive_train(w, nw, size, minf, &n2);
    if (same_list(v1, n1, v2, n2)) agree++;
    else if (agree == t) {
      fprintf(stderr, "trial %d: trained %d tokens, naive %d\n", t, n1, n2);
      for (int i = 0; i < n1 || i < n2; i++)
        fprintf(stderr, "  %3d %-10s %s\n", i, i < n1 ? v1[i] : "-", i < n2 ? v2[i] : "-");
    }
    vocab_tokens_free(v1, n1);
    vocab_tokens_free(v2, n2);
    word_counts_free(wc);
  }
  CHECK_INT(agree, trials);
}

/* ---- Determinism and coverage on a bigger random corpus ---- */

#define BIG_WORDS 3000

static char big_buf[BIG_WORDS][24];
static WC big[BIG_WORDS];

/* Zipf-like counts over words drawn from a skewed letter distribution. */
static int make_big_corpus(void) {
  static const char *const LETTERS[] = {"e", "t", "a", "o", "i", "n", "s", "h", "r", "d",
                                        "l", "u", "\xC3\xA9", "\xD0\xB6"};
  Rng r;
  rng_init(&r, 99, 1, 0);
  int n = 0;
  while (n < BIG_WORDS) {
    int len = 1 + (int)rng_below(&r, 9), o = 0;
    for (int i = 0; i < len; i++) {
      uint32_t k = rng_below(&r, 14);
      k = rng_below(&r, k + 1); /* favour the first letters */
      size_t l = strlen(LETTERS[k]);
      memcpy(big_buf[n] + o, LETTERS[k], l);
      o += (int)l;
    }
    big_buf[n][o] = 0;
    big[n].word = big_buf[n];
    big[n].count = 1 + 5000 / (n + 1);
    n++; /* duplicates just add up */
  }
  return n;
}

/* Greedy longest match, as BERT's WordPiece does; 0 if a piece is missing. */
static int splits(const Vocab *v, const char *w) {
  size_t len = strlen(w), start = 0;
  char piece[64];
  while (start < len) {
    size_t end = len;
    int found = 0;
    while (end > start) {
      size_t o = 0;
      if (start > 0) piece[o++] = '#', piece[o++] = '#';
      memcpy(piece + o, w + start, end - start);
      if (vocab_lookup(v, piece, o + end - start) >= 0) {
        found = 1;
        break;
      }
      end--;
    }
    if (!found) return 0;
    start = end;
  }
  return 1;
}

static void test_determinism_and_coverage(void) {
  int nw = make_big_corpus();
  WordCounts *a = counts_of(big, nw);
  /* The same counts in reverse order, each word's count added in two parts. */
  WordCounts *b = word_counts_new();
  for (int i = nw - 1; i >= 0; i--) {
    size_t l = strlen(big[i].word);
    word_counts_add(b, big[i].word, l, big[i].count / 2);
    word_counts_add(b, big[i].word, l, big[i].count - big[i].count / 2);
  }
  CHECK_INT(word_counts_total(a), word_counts_total(b));
  CHECK_INT(word_counts_distinct(a), word_counts_distinct(b));
  int size = 600, n1, n2, n3;
  char **v1 = train(a, size, 2, &n1);
  char **v2 = train(a, size, 2, &n2);
  char **v3 = train(b, size, 2, &n3);
  CHECK_INT(n1, size);
  CHECK(same_list(v1, n1, v2, n2));
  CHECK(same_list(v1, n1, v3, n3));
  for (int i = 0; i < VOCAB_NUM_SPECIALS; i++) CHECK_STR(v1[i], VOCAB_SPECIALS[i]);
  int unique = 1;
  Vocab *v = vocab_from_tokens(v1, n1, "trained");
  for (int i = 0; i < n1; i++) unique &= vocab_lookup(v, v1[i], strlen(v1[i])) == i;
  CHECK(unique);
  CHECK_INT(v->pad, 0);
  CHECK_INT(v->unk, 1);
  CHECK_INT(v->cls, 2);
  CHECK_INT(v->sep, 3);
  CHECK_INT(v->mask, 4);
  int all_split = 1;
  for (int i = 0; i < nw; i++) all_split &= splits(v, big[i].word);
  CHECK(all_split);
  /* The same through the project's tokenizer: no word becomes [UNK]. */
  Tokenizer *tok = tokenizer_new(v, 0, 100);
  int32_t *ids = NULL;
  size_t cap = 0;
  int unk = 0, pieces_ok = 1;
  for (int i = 0; i < nw; i++) {
    size_t m = tokenizer_encode(tok, big[i].word, strlen(big[i].word), &ids, &cap, 0);
    pieces_ok &= m >= 1;
    for (size_t k = 0; k < m; k++) unk += ids[k] == v->unk;
  }
  CHECK(pieces_ok);
  CHECK_INT(unk, 0);
  free(ids);
  tokenizer_free(tok);
  vocab_free(v);
  vocab_tokens_free(v1, n1);
  vocab_tokens_free(v2, n2);
  vocab_tokens_free(v3, n3);
  word_counts_free(a);
  word_counts_free(b);
}

int main(void) {
  test_worked_example();
  test_too_small();
  test_code_points();
  test_invalid_utf8_dies();
  test_matches_naive_trainer();
  test_determinism_and_coverage();
  return test_finish();
}
