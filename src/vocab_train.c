/* WordPiece training by pair merges (see vocab_train.h).
 *
 * Each distinct word is kept as a sequence of token ids with its count.
 * Pair counts are updated incrementally: a merge visits only the words that
 * hold the merged pair (each pair keeps a list of such words, which may hold
 * stale entries, skipped cheaply) and adjusts the counts of the pairs around
 * each occurrence. Pairs seen at least min_frequency times sit in an indexed
 * binary heap ordered by count, then by merged string, so the next merge is
 * always at the top; a pair moves in the heap whenever its count changes. */
#define _POSIX_C_SOURCE 200809L
#include "vocab_train.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "util.h"

const char *const VOCAB_SPECIALS[VOCAB_NUM_SPECIALS] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                                        "[MASK]"};

#define PREFIX "##"
#define PREFIX_LEN 2
/* How many merges pass between progress calls. */
#define PROGRESS_EVERY 64

/* ---- Interned strings: ids in insertion order, each with a value. ---- */

typedef struct StrEntry {
  size_t off;  /* into bytes; every string is NUL-terminated there */
  uint32_t len;
  int64_t val;
} StrEntry;

typedef struct StrTable {
  char *bytes;
  size_t nbytes, capbytes;
  StrEntry *e;
  size_t n, cap;
  int32_t *slots; /* open addressing, -1 = empty */
  size_t nslots;  /* power of two */
} StrTable;

static uint64_t str_hash(const char *s, size_t len) { return fnv1a64(s, len, FNV1A64_INIT); }

static const char *st_str(const StrTable *t, int32_t id) { return t->bytes + t->e[id].off; }

static void st_rehash(StrTable *t) {
  size_t nslots = t->nslots ? t->nslots * 2 : 1024;
  free(t->slots);
  t->slots = xmalloc(nslots * sizeof *t->slots);
  for (size_t i = 0; i < nslots; i++) t->slots[i] = -1;
  t->nslots = nslots;
  for (size_t id = 0; id < t->n; id++) {
    size_t i = str_hash(st_str(t, (int32_t)id), t->e[id].len) & (nslots - 1);
    while (t->slots[i] >= 0) i = (i + 1) & (nslots - 1);
    t->slots[i] = (int32_t)id;
  }
}

/* Slot where s[0..len) is or would go. */
static size_t st_slot(const StrTable *t, const char *s, size_t len) {
  size_t mask = t->nslots - 1;
  for (size_t i = str_hash(s, len) & mask;; i = (i + 1) & mask) {
    int32_t id = t->slots[i];
    if (id < 0 || (t->e[id].len == len && memcmp(st_str(t, id), s, len) == 0)) return i;
  }
}

static int32_t st_find(const StrTable *t, const char *s, size_t len) {
  return t->nslots ? t->slots[st_slot(t, s, len)] : -1;
}

/* Id of s[0..len), added with value 0 when new (*added says which). */
static int32_t st_intern(StrTable *t, const char *s, size_t len, int *added) {
  if ((t->n + 1) * 2 > t->nslots) st_rehash(t);
  size_t slot = st_slot(t, s, len);
  if (added) *added = t->slots[slot] < 0;
  if (t->slots[slot] >= 0) return t->slots[slot];
  if (t->n >= INT32_MAX || len >= UINT32_MAX) die("vocab: too many or too long words");
  grow((void **)&t->bytes, &t->capbytes, t->nbytes + len + 1, 1);
  memcpy(t->bytes + t->nbytes, s, len);
  t->bytes[t->nbytes + len] = '\0';
  grow((void **)&t->e, &t->cap, t->n + 1, sizeof *t->e);
  t->e[t->n] = (StrEntry){t->nbytes, (uint32_t)len, 0};
  t->nbytes += len + 1;
  t->slots[slot] = (int32_t)t->n;
  return (int32_t)t->n++;
}

static void st_free(StrTable *t) {
  free(t->bytes);
  free(t->e);
  free(t->slots);
  memset(t, 0, sizeof *t);
}

/* ---- Word counts ---- */

struct WordCounts {
  StrTable words; /* val = count */
  int64_t total;
};

WordCounts *word_counts_new(void) { return xcalloc(1, sizeof(WordCounts)); }

void word_counts_free(WordCounts *wc) {
  if (!wc) return;
  st_free(&wc->words);
  free(wc);
}

void word_counts_add(WordCounts *wc, const char *word, size_t len, int64_t count) {
  if (len == 0 || count <= 0) return;
  int32_t id = st_intern(&wc->words, word, len, NULL);
  wc->words.e[id].val += count;
  wc->total += count;
}

size_t word_counts_distinct(const WordCounts *wc) { return wc->words.n; }
int64_t word_counts_total(const WordCounts *wc) { return wc->total; }

/* Byte length of the code point at s[0..len); dies on invalid UTF-8 or NUL,
 * which a vocab.txt line could not hold. */
static size_t char_len(const char *s, size_t len) {
  utf8proc_int32_t cp;
  utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &cp);
  if (n <= 0 || cp == 0) die("vocab: word '%.*s' is not valid UTF-8", (int)len, s);
  return (size_t)n;
}

/* ---- The alphabet ---- */

static int cmp_cstr(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends the strings of t to tokens in byte-wise order. */
static void add_sorted(StrTable *tokens, const StrTable *t) {
  const char **order = xmalloc((t->n ? t->n : 1) * sizeof *order);
  for (size_t i = 0; i < t->n; i++) order[i] = st_str(t, (int32_t)i);
  qsort(order, t->n, sizeof *order, cmp_cstr);
  for (size_t i = 0; i < t->n; i++) st_intern(tokens, order[i], strlen(order[i]), NULL);
  free(order);
}

/* Fills tokens with the specials, every character (bare), then "##c" for
 * every character seen after a word's first; returns how many tokens. */
static int build_alphabet(const WordCounts *wc, StrTable *tokens) {
  StrTable bare = {0}, cont = {0};
  char buf[PREFIX_LEN + 4] = PREFIX;
  for (size_t w = 0; w < wc->words.n; w++) {
    const char *s = st_str(&wc->words, (int32_t)w);
    size_t len = wc->words.e[w].len;
    for (size_t i = 0; i < len;) {
      size_t n = char_len(s + i, len - i);
      if (i == 0) {
        st_intern(&bare, s, n, NULL);
      } else {
        st_intern(&bare, s + i, n, NULL);
        memcpy(buf + PREFIX_LEN, s + i, n);
        st_intern(&cont, buf, PREFIX_LEN + n, NULL);
      }
      i += n;
    }
  }
  for (int i = 0; i < VOCAB_NUM_SPECIALS; i++)
    st_intern(tokens, VOCAB_SPECIALS[i], strlen(VOCAB_SPECIALS[i]), NULL);
  add_sorted(tokens, &bare);
  add_sorted(tokens, &cont);
  st_free(&bare);
  st_free(&cont);
  return (int)tokens->n;
}

int vocab_train_min_size(const WordCounts *wc) {
  StrTable tokens = {0};
  int n = build_alphabet(wc, &tokens);
  st_free(&tokens);
  return n;
}

/* ---- Training state ---- */

typedef struct Pair {
  int32_t left, right;
  int64_t count;    /* occurrences weighted by word count */
  int32_t heap_pos; /* -1 when not in the heap */
  int32_t *words;   /* words that held the pair when it appeared there */
  size_t nwords, capwords;
} Pair;

typedef struct Trainer {
  StrTable tokens;
  int64_t min_frequency;
  /* Words: symbols syms[start[w] .. start[w]+len[w]), count[w]. */
  size_t nwords;
  int32_t *syms;
  size_t *start;
  int32_t *len;
  int64_t *count;
  int32_t *stamp; /* last merge that visited the word */
  /* Pairs, found by (left, right) through an open-addressing table. */
  Pair *pairs;
  size_t npairs, cappairs;
  int32_t *slots;
  size_t nslots;
  int32_t *heap;
  size_t nheap, capheap;
} Trainer;

static size_t pair_hash(int32_t left, int32_t right) {
  uint64_t x = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
  x ^= x >> 31;
  x *= 0x9e3779b97f4a7c15ULL;
  x ^= x >> 29;
  return (size_t)x;
}

static void pairs_rehash(Trainer *t) {
  size_t nslots = t->nslots ? t->nslots * 2 : 4096;
  free(t->slots);
  t->slots = xmalloc(nslots * sizeof *t->slots);
  for (size_t i = 0; i < nslots; i++) t->slots[i] = -1;
  t->nslots = nslots;
  for (size_t p = 0; p < t->npairs; p++) {
    size_t i = pair_hash(t->pairs[p].left, t->pairs[p].right) & (nslots - 1);
    while (t->slots[i] >= 0) i = (i + 1) & (nslots - 1);
    t->slots[i] = (int32_t)p;
  }
}

/* Index of pair (left, right), created with count 0 when new. */
static int32_t pair_get(Trainer *t, int32_t left, int32_t right) {
  if ((t->npairs + 1) * 2 > t->nslots) pairs_rehash(t);
  size_t mask = t->nslots - 1, i = pair_hash(left, right) & mask;
  for (;; i = (i + 1) & mask) {
    int32_t p = t->slots[i];
    if (p < 0) break;
    if (t->pairs[p].left == left && t->pairs[p].right == right) return p;
  }
  if (t->npairs >= INT32_MAX) die("vocab: too many symbol pairs");
  grow((void **)&t->pairs, &t->cappairs, t->npairs + 1, sizeof *t->pairs);
  t->pairs[t->npairs] = (Pair){left, right, 0, -1, NULL, 0, 0};
  t->slots[i] = (int32_t)t->npairs;
  return (int32_t)t->npairs++;
}

/* ---- Heap order: count descending, then merged string, then left token ---- */

/* The merged string is left followed by right without its "##". */
static void merged_parts(const Trainer *t, const Pair *p, const char **a, size_t *na,
                         const char **b, size_t *nb) {
  *a = st_str(&t->tokens, p->left);
  *na = t->tokens.e[p->left].len;
  *b = st_str(&t->tokens, p->right);
  *nb = t->tokens.e[p->right].len;
  if (*nb >= PREFIX_LEN && memcmp(*b, PREFIX, PREFIX_LEN) == 0) {
    *b += PREFIX_LEN;
    *nb -= PREFIX_LEN;
  }
}

static int cmp_bytes(const char *a, size_t na, const char *b, size_t nb) {
  int c = memcmp(a, b, na < nb ? na : nb);
  if (c) return c;
  return na < nb ? -1 : na > nb;
}

/* Compares the concatenations a1 a2 and b1 b2 byte-wise. */
static int cmp_concat(const char *a1, size_t n1, const char *a2, size_t n2, const char *b1,
                      size_t m1, const char *b2, size_t m2) {
  size_t na = n1 + n2, nb = m1 + m2, n = na < nb ? na : nb;
  for (size_t i = 0; i < n; i++) {
    unsigned char x = (unsigned char)(i < n1 ? a1[i] : a2[i - n1]);
    unsigned char y = (unsigned char)(i < m1 ? b1[i] : b2[i - m1]);
    if (x != y) return x < y ? -1 : 1;
  }
  return na < nb ? -1 : na > nb;
}

/* 1 when pair p is to be merged before pair q. */
static int pair_before(const Trainer *t, int32_t p, int32_t q) {
  const Pair *pp = &t->pairs[p], *qq = &t->pairs[q];
  if (pp->count != qq->count) return pp->count > qq->count;
  const char *a1, *a2, *b1, *b2;
  size_t n1, n2, m1, m2;
  merged_parts(t, pp, &a1, &n1, &a2, &n2);
  merged_parts(t, qq, &b1, &m1, &b2, &m2);
  int c = cmp_concat(a1, n1, a2, n2, b1, m1, b2, m2);
  if (c == 0) c = cmp_bytes(a1, n1, b1, m1); /* "ab"+"##c" and "a"+"##bc" */
  return c < 0;
}

static void heap_set(Trainer *t, size_t i, int32_t p) {
  t->heap[i] = p;
  t->pairs[p].heap_pos = (int32_t)i;
}

static void sift_up(Trainer *t, size_t i) {
  int32_t p = t->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!pair_before(t, p, t->heap[parent])) break;
    heap_set(t, i, t->heap[parent]);
    i = parent;
  }
  heap_set(t, i, p);
}

static void sift_down(Trainer *t, size_t i) {
  int32_t p = t->heap[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= t->nheap) break;
    if (c + 1 < t->nheap && pair_before(t, t->heap[c + 1], t->heap[c])) c++;
    if (!pair_before(t, t->heap[c], p)) break;
    heap_set(t, i, t->heap[c]);
    i = c;
  }
  heap_set(t, i, p);
}

/* Puts a changed pair where it belongs: in the heap at its place when it
 * was seen often enough, out of the heap otherwise. */
static void heap_update(Trainer *t, int32_t p) {
  int32_t pos = t->pairs[p].heap_pos;
  int keep = t->pairs[p].count >= t->min_frequency && t->pairs[p].count > 0;
  if (pos < 0) {
    if (!keep) return;
    grow((void **)&t->heap, &t->capheap, t->nheap + 1, sizeof *t->heap);
    heap_set(t, t->nheap++, p);
    sift_up(t, t->nheap - 1);
    return;
  }
  if (!keep) {
    t->pairs[p].heap_pos = -1;
    int32_t last = t->heap[--t->nheap];
    if ((size_t)pos == t->nheap) return;
    heap_set(t, (size_t)pos, last);
    p = last;
  }
  sift_up(t, (size_t)pos);
  sift_down(t, (size_t)t->pairs[p].heap_pos);
}

/* Adds delta to the pair's count and moves it in the heap to match;
 * word w (>= 0) now holds the pair. */
static void pair_add(Trainer *t, int32_t left, int32_t right, int64_t delta, int32_t w) {
  int32_t p = pair_get(t, left, right);
  Pair *pr = &t->pairs[p];
  pr->count += delta;
  if (w >= 0 && (pr->nwords == 0 || pr->words[pr->nwords - 1] != w)) {
    grow((void **)&pr->words, &pr->capwords, pr->nwords + 1, sizeof *pr->words);
    pr->words[pr->nwords++] = w;
  }
  heap_update(t, p);
}

/* ---- Setup and merging ---- */

static void load_words(Trainer *t, const WordCounts *wc) {
  const StrTable *ws = &wc->words;
  t->nwords = ws->n;
  t->start = xmalloc((ws->n + 1) * sizeof *t->start);
  t->len = xmalloc((ws->n + 1) * sizeof *t->len);
  t->count = xmalloc((ws->n + 1) * sizeof *t->count);
  t->stamp = xcalloc(ws->n + 1, sizeof *t->stamp);
  t->syms = xmalloc((ws->nbytes + 1) * sizeof *t->syms); /* chars <= bytes */
  char buf[PREFIX_LEN + 4] = PREFIX;
  size_t nsyms = 0;
  for (size_t w = 0; w < ws->n; w++) {
    const char *s = st_str(ws, (int32_t)w);
    size_t len = ws->e[w].len;
    t->start[w] = nsyms;
    t->count[w] = ws->e[w].val;
    for (size_t i = 0; i < len;) {
      size_t n = char_len(s + i, len - i);
      memcpy(buf + PREFIX_LEN, s + i, n);
      int32_t id = i == 0 ? st_find(&t->tokens, s, n) : st_find(&t->tokens, buf, PREFIX_LEN + n);
      t->syms[nsyms++] = id;
      i += n;
    }
    t->len[w] = (int32_t)(nsyms - t->start[w]);
    for (size_t i = t->start[w]; i + 1 < nsyms; i++)
      pair_add(t, t->syms[i], t->syms[i + 1], t->count[w], (int32_t)w);
  }
}

/* Replaces every occurrence of pair p = (a, b) in word w by token nt,
 * left to right, adjusting the counts of the neighbouring pairs. */
static void merge_word(Trainer *t, int32_t w, int32_t p, int32_t nt) {
  int32_t a = t->pairs[p].left, b = t->pairs[p].right;
  int32_t *s = t->syms + t->start[w];
  int32_t len = t->len[w];
  int64_t c = t->count[w];
  for (int32_t i = 0; i + 1 < len; i++) {
    if (s[i] != a || s[i + 1] != b) continue;
    if (i > 0) {
      pair_add(t, s[i - 1], a, -c, -1);
      pair_add(t, s[i - 1], nt, c, w);
    }
    if (i + 2 < len) {
      pair_add(t, b, s[i + 2], -c, -1);
      pair_add(t, nt, s[i + 2], c, w);
    }
    pair_add(t, a, b, -c, -1);
    s[i] = nt;
    memmove(s + i + 1, s + i + 2, (size_t)(len - i - 2) * sizeof *s);
    len--;
  }
  t->len[w] = len;
}

/* Merges the top pair. Its string may already be a token (another pair
 * spelling it), in which case the vocabulary does not grow. */
static void merge_top(Trainer *t, int32_t merge_no) {
  int32_t p = t->heap[0];
  const char *a, *b;
  size_t na, nb;
  merged_parts(t, &t->pairs[p], &a, &na, &b, &nb);
  char *s = xmalloc(na + nb + 1);
  memcpy(s, a, na);
  memcpy(s + na, b, nb);
  int32_t nt = st_intern(&t->tokens, s, na + nb, NULL);
  free(s);
  /* The list may grow while we walk it, so index it afresh each time. */
  for (size_t k = 0; k < t->pairs[p].nwords; k++) {
    int32_t w = t->pairs[p].words[k];
    if (t->stamp[w] == merge_no) continue;
    t->stamp[w] = merge_no;
    merge_word(t, w, p, nt);
  }
  t->pairs[p].nwords = 0;
  /* Every occurrence is gone; were one missed, the pair would stay on top for ever. */
  if (t->pairs[p].count != 0)
    die("vocab: internal error: pair '%s' '%s' still counted %lld times after its merge",
        st_str(&t->tokens, t->pairs[p].left), st_str(&t->tokens, t->pairs[p].right),
        (long long)t->pairs[p].count);
}

static void trainer_free(Trainer *t) {
  st_free(&t->tokens);
  for (size_t p = 0; p < t->npairs; p++) free(t->pairs[p].words);
  free(t->pairs);
  free(t->slots);
  free(t->heap);
  free(t->syms);
  free(t->start);
  free(t->len);
  free(t->count);
  free(t->stamp);
}

char **vocab_train(const WordCounts *wc, const VocabTrainOptions *o, int *n) {
  Trainer t = {0};
  t.min_frequency = o->min_frequency;
  int min_size = build_alphabet(wc, &t.tokens);
  if (o->size < min_size)
    die("vocab: a vocabulary of %d tokens is too small: the %d special tokens and the "
        "%d-token alphabet need at least %d",
        o->size, VOCAB_NUM_SPECIALS, min_size - VOCAB_NUM_SPECIALS, min_size);
  load_words(&t, wc);
  int32_t merges = 0;
  while ((int)t.tokens.n < o->size && t.nheap > 0) {
    merge_top(&t, ++merges);
    if (o->progress && merges % PROGRESS_EVERY == 0)
      o->progress((int)t.tokens.n, o->size, merges, o->user);
  }
  if (o->progress) o->progress((int)t.tokens.n, o->size, merges, o->user);
  *n = (int)t.tokens.n;
  char **tokens = xmalloc((size_t)*n * sizeof *tokens);
  for (int i = 0; i < *n; i++) tokens[i] = xstrdup(st_str(&t.tokens, i));
  trainer_free(&t);
  return tokens;
}

void vocab_tokens_free(char **tokens, int n) {
  if (!tokens) return;
  for (int i = 0; i < n; i++) free(tokens[i]);
  free(tokens);
}
