/* BERT's basic tokenizer and WordPiece. ASCII bytes go through small tables;
 * only tokens holding a non-ASCII character are decoded and handed to
 * utf8proc, so plain English text never touches the Unicode tables. */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "util.h"

/* ---------------------------------------------------------------- ASCII */

enum { C_WORD, C_SPACE, C_DROP, C_PUNCT };

/* Google's cleaning drops control characters (0x0B and 0x0C included: they
 * are Cc and not among its whitespace) and treats ASCII 33-47, 58-64, 91-96
 * and 123-126 as punctuation although some of them are symbols. */
#define ACLASS(c)                                                                  \
  ((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\r' ? C_SPACE               \
   : (c) < 32 || (c) == 127                                  ? C_DROP                \
   : ((c) >= 33 && (c) <= 47) || ((c) >= 58 && (c) <= 64) ||                        \
           ((c) >= 91 && (c) <= 96) || ((c) >= 123 && (c) <= 126)                    \
       ? C_PUNCT                                                                   \
       : C_WORD)
#define R4(c) ACLASS(c), ACLASS((c) + 1), ACLASS((c) + 2), ACLASS((c) + 3)
#define R16(c) R4(c), R4((c) + 4), R4((c) + 8), R4((c) + 12)
static const unsigned char ASCII_CLASS[128] = {
  R16(0), R16(16), R16(32), R16(48), R16(64), R16(80), R16(96), R16(112),
};

/* Bytes copied into a token unchanged apart from case: ASCII letters, digits
 * and punctuation map to themselves (lower-cased in KEEP_LOWER), everything
 * else (whitespace, controls, NUL, non-ASCII) to 0, which sends the copy loop
 * to its slow path. */
#define LOWER(c) ((c) >= 'A' && (c) <= 'Z' ? (c) + 32 : (c))
#define KEPT(c) ((c) < 128 && (ACLASS(c) == C_WORD || ACLASS(c) == C_PUNCT))
#define KEEPL(c) (KEPT(c) ? LOWER(c) : 0)
#define KEEPC(c) (KEPT(c) ? (c) : 0)
#define L4(c) KEEPL(c), KEEPL((c) + 1), KEEPL((c) + 2), KEEPL((c) + 3)
#define L16(c) L4(c), L4((c) + 4), L4((c) + 8), L4((c) + 12)
#define C4(c) KEEPC(c), KEEPC((c) + 1), KEEPC((c) + 2), KEEPC((c) + 3)
#define C16(c) C4(c), C4((c) + 4), C4((c) + 8), C4((c) + 12)
static const unsigned char KEEP_LOWER[256] = {
  L16(0),   L16(16),  L16(32),  L16(48),  L16(64),  L16(80),  L16(96),  L16(112),
  L16(128), L16(144), L16(160), L16(176), L16(192), L16(208), L16(224), L16(240),
};
static const unsigned char KEEP_CASED[256] = {
  C16(0),   C16(16),  C16(32),  C16(48),  C16(64),  C16(80),  C16(96),  C16(112),
  C16(128), C16(144), C16(160), C16(176), C16(192), C16(208), C16(224), C16(240),
};

/* -------------------------------------------------------------- Unicode */

enum { K_OTHER, K_SPACE, K_DROP, K_CJK };

/* The CJK Unified Ideographs blocks of Google's _is_chinese_char (Hangul,
 * kana and CJK punctuation are deliberately not among them). */
static int is_cjk(int32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

static int classify(int32_t cp) {
  if (cp == 0xFFFD) return K_DROP;
  utf8proc_category_t cat = utf8proc_category(cp);
  if (cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF) return K_DROP;
  /* U+2028 and U+2029 survive cleaning (Zl, Zp) but Python's str.split(),
   * which Google's whitespace_tokenize uses, splits on them. */
  if (cat == UTF8PROC_CATEGORY_ZS || cp == 0x2028 || cp == 0x2029) return K_SPACE;
  if (is_cjk(cp)) return K_CJK;
  return K_OTHER;
}

static int is_punct(int32_t cp) {
  if (cp < 128) return ASCII_CLASS[cp] == C_PUNCT;
  utf8proc_category_t cat = utf8proc_category(cp);
  return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

/* Python's str.lower() maps a capital sigma to the final form when it ends
 * a word (Unicode's Final_Sigma context, judged within the token). utf8proc
 * has neither the Cased nor the Case_Ignorable property, so they are derived
 * from categories and case mappings; the few Case_Ignorable characters that
 * come from word-break classes are listed. */
static int is_cased(int32_t cp) {
  utf8proc_category_t cat = utf8proc_category(cp);
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL ||
         cat == UTF8PROC_CATEGORY_LT || utf8proc_islower(cp) || utf8proc_isupper(cp);
}

static int is_case_ignorable(int32_t cp) {
  static const int32_t WORD_BREAK_MID[] = {
    0x27, 0x2E, 0x3A, 0xB7, 0x387, 0x55F, 0x5F4, 0x2018, 0x2019,
    0x2024, 0x2027, 0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A,
  };
  utf8proc_category_t cat = utf8proc_category(cp);
  if (cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME || cat == UTF8PROC_CATEGORY_CF ||
      cat == UTF8PROC_CATEGORY_LM || cat == UTF8PROC_CATEGORY_SK)
    return 1;
  for (size_t i = 0; i < ARRAY_LEN(WORD_BREAK_MID); i++)
    if (cp == WORD_BREAK_MID[i]) return 1;
  return 0;
}

static int32_t lower_sigma(const int32_t *cps, size_t n, size_t i) {
  size_t j = i;
  while (j > 0 && is_case_ignorable(cps[j - 1])) j--;
  if (j == 0 || !is_cased(cps[j - 1])) return 0x3C3;
  j = i + 1;
  while (j < n && is_case_ignorable(cps[j])) j++;
  return j < n && is_cased(cps[j]) ? 0x3C3 : 0x3C2;
}

/* --------------------------------------------------------- scratch space */

typedef struct Scratch {
  char *tok;          /* the current token, cleaned; ASCII lower-cased if lower-casing */
  size_t tok_cap;
  int32_t *cps, *nfd; /* its code points, and them lower-cased and decomposed */
  size_t cps_cap, nfd_cap;
  char *word;         /* one word of a non-ASCII token, re-encoded */
  size_t word_cap;
} Scratch;

static void scratch_free(Scratch *s) {
  free(s->tok);
  free(s->cps);
  free(s->nfd);
  free(s->word);
}

/* Receives each word of the basic tokenizer with its length in code points. */
typedef void (*SinkFn)(void *ctx, const char *word, size_t len, size_t nchars);

/* ------------------------------------------------------- basic tokenizer */

/* A token of ASCII bytes, already lower-cased when lower-casing: only the
 * punctuation split is left. */
static void ascii_token(const char *tok, size_t n, SinkFn sink, void *ctx) {
  size_t start = 0;
  for (size_t j = 0; j < n; j++) {
    if (ASCII_CLASS[(unsigned char)tok[j]] == C_PUNCT) {
      if (j > start) sink(ctx, tok + start, j - start, j - start);
      sink(ctx, tok + j, 1, 1);
      start = j + 1;
    }
  }
  if (n > start) sink(ctx, tok + start, n - start, n - start);
}

/* Sorts each run of non-starters by combining class, stably: the canonical
 * ordering step of NFD, which utf8proc_decompose_char leaves to its caller. */
static void canonical_order(int32_t *cps, size_t n) {
  for (size_t i = 1; i < n; i++) {
    int32_t c = cps[i];
    int cc = utf8proc_get_property(c)->combining_class;
    if (cc == 0) continue;
    size_t j = i;
    while (j > 0) {
      int prev = utf8proc_get_property(cps[j - 1])->combining_class;
      if (prev <= cc) break;
      cps[j] = cps[j - 1];
      j--;
    }
    cps[j] = c;
  }
}

/* Google's do_lower_case path: str.lower(), NFD, then drop category Mn.
 * Reads s->cps[0..n), writes s->nfd; returns the new length. */
static size_t lower_strip(Scratch *s, size_t n) {
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    int32_t cp = s->cps[i];
    cp = cp == 0x3A3 ? lower_sigma(s->cps, n, i) : utf8proc_tolower(cp);
    for (;;) {
      utf8proc_ssize_t room = (utf8proc_ssize_t)(s->nfd_cap - m);
      utf8proc_ssize_t k = utf8proc_decompose_char(cp, s->nfd + m, room, UTF8PROC_DECOMPOSE, NULL);
      if (k < 0) die("utf8proc cannot decompose U+%04X: %s", (unsigned)cp, utf8proc_errmsg(k));
      if (k <= room) { m += (size_t)k; break; }
      grow((void **)&s->nfd, &s->nfd_cap, m + (size_t)k + 16, sizeof *s->nfd);
    }
  }
  canonical_order(s->nfd, m);
  size_t out = 0;
  for (size_t i = 0; i < m; i++)
    if (utf8proc_category(s->nfd[i]) != UTF8PROC_CATEGORY_MN) s->nfd[out++] = s->nfd[i];
  return out;
}

static void unicode_token(Scratch *s, size_t n, int lowercase, SinkFn sink, void *ctx) {
  grow((void **)&s->cps, &s->cps_cap, n, sizeof *s->cps);
  size_t m = 0;
  for (size_t i = 0; i < n;) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s->tok + i,
                                          (utf8proc_ssize_t)(n - i), &cp);
    if (k <= 0) die("tokenizer: invalid UTF-8 (callers must validate their input)");
    s->cps[m++] = cp;
    i += (size_t)k;
  }
  const int32_t *cps = s->cps;
  if (lowercase) {
    grow((void **)&s->nfd, &s->nfd_cap, m * 2 + 16, sizeof *s->nfd);
    m = lower_strip(s, m);
    cps = s->nfd;
  }
  grow((void **)&s->word, &s->word_cap, 4 * m + 4, 1);
  size_t len = 0, nchars = 0;
  for (size_t i = 0; i < m; i++) {
    if (is_punct(cps[i])) {
      if (nchars) sink(ctx, s->word, len, nchars);
      len = (size_t)utf8proc_encode_char(cps[i], (utf8proc_uint8_t *)s->word);
      sink(ctx, s->word, len, 1);
      len = nchars = 0;
    } else {
      len += (size_t)utf8proc_encode_char(cps[i], (utf8proc_uint8_t *)s->word + len);
      nchars++;
    }
  }
  if (nchars) sink(ctx, s->word, len, nchars);
}

/* Splits text into whitespace-separated tokens (a CJK ideograph is a token
 * by itself), dropping what cleaning drops, and passes each token on. */
static void basic_run(Scratch *s, const char *text, size_t len, int lowercase, SinkFn sink,
                      void *ctx) {
  if (s->tok_cap < len + 1) grow((void **)&s->tok, &s->tok_cap, len + 1, 1);
  const unsigned char *p = (const unsigned char *)text;
  /* ASCII is lower-cased while copied; the Unicode path lower-cases again,
   * which changes nothing for ASCII, and case does not affect its context. */
  const unsigned char *keep = lowercase ? KEEP_LOWER : KEEP_CASED;
  size_t i = 0;
  while (i < len) {
    size_t n = 0;
    int unicode = 0;
    for (;;) {
      unsigned char kept;
      while (i < len && (kept = keep[p[i]]) != 0) {
        s->tok[n++] = (char)kept;
        i++;
      }
      if (i >= len) break;
      unsigned char b = p[i];
      if (b < 0x80) {
        i++;
        if (ASCII_CLASS[b] == C_SPACE && n) break;
        continue; /* more space, or a dropped control character */
      }
      utf8proc_int32_t cp;
      utf8proc_ssize_t k = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i), &cp);
      if (k <= 0) die("tokenizer: invalid UTF-8 (callers must validate their input)");
      int kind = classify(cp);
      if (kind == K_CJK && n) break; /* ends this token; the next one is the ideograph */
      i += (size_t)k;
      if (kind == K_DROP) continue;
      if (kind == K_SPACE) {
        if (n) break;
        continue;
      }
      memcpy(s->tok + n, p + i - k, (size_t)k);
      n += (size_t)k;
      unicode = 1;
      if (kind == K_CJK) break;
    }
    if (!n) continue;
    if (unicode) unicode_token(s, n, lowercase, sink, ctx);
    else ascii_token(s->tok, n, sink, ctx);
  }
}

typedef struct WordFnCtx {
  WordFn fn;
  void *user;
} WordFnCtx;

static void call_word_fn(void *ctx, const char *word, size_t len, size_t nchars) {
  (void)nchars;
  WordFnCtx *c = ctx;
  c->fn(word, len, c->user);
}

void basic_tokenize(const char *text, size_t len, int lowercase, WordFn fn, void *user) {
  Scratch s = {0};
  WordFnCtx c = {fn, user};
  basic_run(&s, text, len, lowercase, call_word_fn, &c);
  scratch_free(&s);
}

/* ------------------------------------------------------------- WordPiece */

/* The tokenizer keeps its own table of the vocabulary keyed by FNV-1a, so
 * that the hashes of all prefixes of a word come from one pass over it and
 * the longest-match search probes the table without rehashing. */
typedef struct Entry {
  uint64_t hash;
  const char *token;
  uint32_t len;
  int32_t id; /* -1: empty slot */
} Entry;

struct Tokenizer {
  const Vocab *v;
  int lowercase;
  size_t max_chars;
  Entry *table;
  size_t mask;
  size_t max_first, max_cont; /* longest token, longest "##" piece (bytes, without "##") */
  uint64_t cont_hash;         /* FNV-1a of "##" */
  uint64_t *prefix;           /* prefix[k]: hash up to byte k of the word */
  size_t prefix_cap;
  int32_t unk;
  /* Output of the encode call in progress. */
  int32_t **ids;
  size_t *cap, n;
  Scratch s;
};

#define FNV_PRIME 0x100000001b3ULL

static inline uint64_t fnv_step(uint64_t h, unsigned char b) { return (h ^ b) * FNV_PRIME; }
static inline size_t slot_of(uint64_t h, size_t mask) { return (size_t)(h ^ (h >> 29)) & mask; }

static uint64_t fnv_bytes(const char *s, size_t len, uint64_t h) {
  for (size_t i = 0; i < len; i++) h = fnv_step(h, (unsigned char)s[i]);
  return h;
}

static void table_put(Tokenizer *t, int32_t id) {
  const char *tok = t->v->tokens[id];
  size_t len = strlen(tok);
  uint64_t h = fnv_bytes(tok, len, FNV1A64_INIT);
  for (size_t i = slot_of(h, t->mask);; i = (i + 1) & t->mask) {
    Entry *e = &t->table[i];
    /* A repeated token keeps its last id, as in Google's load_vocab. */
    if (e->id < 0 || (e->hash == h && e->len == len && memcmp(e->token, tok, len) == 0)) {
      *e = (Entry){h, tok, (uint32_t)len, id};
      return;
    }
  }
}

/* Pieces are short: an inline loop beats a call to memcmp. */
static inline int same_bytes(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (a[i] != b[i]) return 0;
  return 1;
}

/* Id of prefix (plen bytes, "" or "##") followed by s[0..len), whose hash is h. */
static inline int32_t table_get(const Tokenizer *t, uint64_t h, size_t plen, const char *s,
                                size_t len) {
  for (size_t i = slot_of(h, t->mask);; i = (i + 1) & t->mask) {
    const Entry *e = &t->table[i];
    if (e->id < 0) return -1;
    if (e->hash == h && e->len == plen + len && same_bytes(e->token + plen, s, len) &&
        (plen == 0 || (e->token[0] == '#' && e->token[1] == '#')))
      return e->id;
  }
}

Tokenizer *tokenizer_new(const Vocab *v, int lowercase, int max_word_chars) {
  vocab_require(v, "[UNK]", "the tokenizer");
  if (max_word_chars < 1)
    die("tokenizer: max_word_chars must be at least 1 (got %d)", max_word_chars);
  Tokenizer *t = xcalloc(1, sizeof *t);
  t->v = v;
  t->lowercase = lowercase;
  t->max_chars = (size_t)max_word_chars;
  t->unk = v->unk;
  size_t size = 16;
  while (size < (size_t)v->size * 2) size *= 2;
  t->table = xmalloc(size * sizeof *t->table);
  t->mask = size - 1;
  for (size_t i = 0; i < size; i++) t->table[i].id = -1;
  for (int32_t id = 0; id < v->size; id++) {
    table_put(t, id);
    size_t len = strlen(v->tokens[id]);
    if (len > t->max_first) t->max_first = len;
    if (len > 2 && v->tokens[id][0] == '#' && v->tokens[id][1] == '#' && len - 2 > t->max_cont)
      t->max_cont = len - 2;
  }
  t->cont_hash = fnv_bytes("##", 2, FNV1A64_INIT);
  return t;
}

void tokenizer_free(Tokenizer *t) {
  if (!t) return;
  free(t->table);
  free(t->prefix);
  scratch_free(&t->s);
  free(t);
}

const Vocab *tokenizer_vocab(const Tokenizer *t) { return t->v; }

static inline void push_id(Tokenizer *t, int32_t id) {
  if (t->n >= *t->cap) grow((void **)t->ids, t->cap, t->n + 1, sizeof **t->ids);
  (*t->ids)[t->n++] = id;
}

static inline int utf8_continuation(char c) { return ((unsigned char)c & 0xC0) == 0x80; }

/* Greedy longest-match-first over one word; the word becomes [UNK] when
 * some position has no matching piece or it is too long. */
static void wordpiece(void *ctx, const char *w, size_t len, size_t nchars) {
  Tokenizer *t = ctx;
  if (nchars > t->max_chars) {
    push_id(t, t->unk);
    return;
  }
  if (t->prefix_cap < len + 1)
    grow((void **)&t->prefix, &t->prefix_cap, len + 1, sizeof *t->prefix);
  uint64_t *pre = t->prefix;
  size_t first = t->n, start = 0;
  while (start < len) {
    size_t plen = start ? 2 : 0, limit = start ? t->max_cont : t->max_first;
    size_t end = len - start > limit ? start + limit : len;
    uint64_t h = start ? t->cont_hash : FNV1A64_INIT;
    for (size_t k = start; k < end; k++) pre[k + 1] = h = fnv_step(h, (unsigned char)w[k]);
    int32_t id = -1;
    for (; end > start; end--) {
      if (end < len && utf8_continuation(w[end])) continue;
      id = table_get(t, pre[end], plen, w + start, end - start);
      if (id >= 0) break;
    }
    if (id < 0) {
      t->n = first;
      push_id(t, t->unk);
      return;
    }
    push_id(t, id);
    start = end;
  }
}

size_t tokenizer_encode(Tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *cap,
                        size_t n) {
  t->ids = ids;
  t->cap = cap;
  t->n = n;
  basic_run(&t->s, text, len, t->lowercase, wordpiece, t);
  t->ids = NULL;
  t->cap = NULL;
  return t->n;
}
