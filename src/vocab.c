#define _POSIX_C_SOURCE 200809L
#include "vocab.h"

#include <stdlib.h>
#include <string.h>

#include "textio.h"
#include "util.h"

static uint64_t token_hash(const char *s, size_t len) { return fnv1a64(s, len, FNV1A64_INIT); }

static void table_insert(Vocab *v, int id) {
  const char *s = v->tokens[id];
  size_t len = strlen(s), mask = v->table_size - 1;
  for (size_t i = token_hash(s, len) & mask;; i = (i + 1) & mask) {
    int other = v->table[i];
    if (other < 0) { v->table[i] = id; return; }
    /* A duplicated token maps to its last line, as in BERT's load_vocab. */
    if (strcmp(v->tokens[other], s) == 0) { v->table[i] = id; return; }
  }
}

int vocab_lookup(const Vocab *v, const char *s, size_t len) {
  size_t mask = v->table_size - 1;
  for (size_t i = token_hash(s, len) & mask;; i = (i + 1) & mask) {
    int id = v->table[i];
    if (id < 0) return -1;
    const char *t = v->tokens[id];
    if (strncmp(t, s, len) == 0 && t[len] == '\0') return id;
  }
}

static void finish(Vocab *v) {
  v->table_size = 16;
  while (v->table_size < (size_t)v->size * 2) v->table_size *= 2;
  v->table = xmalloc(v->table_size * sizeof *v->table);
  for (size_t i = 0; i < v->table_size; i++) v->table[i] = -1;
  uint64_t h = FNV1A64_INIT;
  for (int id = 0; id < v->size; id++) {
    table_insert(v, id);
    h = fnv1a64(v->tokens[id], strlen(v->tokens[id]) + 1, h);
  }
  v->hash = h;
  v->pad = vocab_lookup(v, "[PAD]", 5);
  v->unk = vocab_lookup(v, "[UNK]", 5);
  v->cls = vocab_lookup(v, "[CLS]", 5);
  v->sep = vocab_lookup(v, "[SEP]", 5);
  v->mask = vocab_lookup(v, "[MASK]", 6);
}

/* BERT's load_vocab strips surrounding whitespace from each line. */
static char *strip(char *s, size_t *len) {
  while (*len && (s[*len - 1] == ' ' || s[*len - 1] == '\t')) s[--*len] = '\0';
  while (*s == ' ' || *s == '\t') { s++; (*len)--; }
  return s;
}

Vocab *vocab_load(const char *path) {
  if (!path || !path[0]) die("no vocabulary given (set model.vocab or pass --vocab)");
  LineReader *r = lines_open(path);
  Vocab *v = xcalloc(1, sizeof *v);
  size_t cap = 0, len;
  char *line;
  while ((line = lines_next(r, &len))) {
    require_utf8(r, line, len);
    line = strip(line, &len);
    grow((void **)&v->tokens, &cap, (size_t)v->size + 1, sizeof *v->tokens);
    v->tokens[v->size++] = xstrdup(line);
  }
  lines_close(r);
  if (v->size == 0) die("%s: empty vocabulary", path);
  v->path = xstrdup(path);
  finish(v);
  return v;
}

char *vocab_join(char *const *tokens, int n, size_t *len) {
  size_t total = 0;
  for (int i = 0; i < n; i++) total += strlen(tokens[i]) + 1;
  char *buf = xmalloc(total + 1), *p = buf;
  for (int i = 0; i < n; i++) {
    size_t l = strlen(tokens[i]);
    memcpy(p, tokens[i], l);
    p[l] = '\n';
    p += l + 1;
  }
  *p = '\0';
  *len = total;
  return buf;
}

Vocab *vocab_from_tokens(char *const *tokens, int n, const char *name) {
  if (n <= 0) die("%s: empty vocabulary", name);
  Vocab *v = xcalloc(1, sizeof *v);
  v->size = n;
  v->tokens = xmalloc((size_t)n * sizeof *v->tokens);
  for (int i = 0; i < n; i++) v->tokens[i] = xstrdup(tokens[i]);
  v->path = xstrdup(name);
  finish(v);
  return v;
}

void vocab_free(Vocab *v) {
  if (!v) return;
  for (int i = 0; i < v->size; i++) free(v->tokens[i]);
  free(v->tokens);
  free(v->table);
  free(v->path);
  free(v);
}

void vocab_require(const Vocab *v, const char *token, const char *needed_by) {
  if (vocab_lookup(v, token, strlen(token)) < 0)
    die("%s: vocabulary has no %s token (needed by %s)", v->path, token, needed_by);
}
