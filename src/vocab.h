/* A WordPiece vocabulary as in BERT's vocab.txt: one token per line, the id
 * being the 0-based line number. */
#ifndef BERTRAIN_VOCAB_H
#define BERTRAIN_VOCAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct Vocab {
  int size;
  char **tokens;      /* tokens[id] */
  int *table;         /* open-addressing hash table of ids, -1 = empty */
  size_t table_size;  /* power of two */
  int pad, unk, cls, sep, mask; /* ids of the special tokens, -1 if absent */
  uint64_t hash;      /* fingerprint of the token list, stored in shards */
  char *path;
} Vocab;

/* Loads vocab.txt; dies naming the file on errors (missing, empty, invalid UTF-8). */
Vocab *vocab_load(const char *path);
/* Builds a vocabulary from a token list (copied). */
Vocab *vocab_from_tokens(char *const *tokens, int n, const char *name);
void vocab_free(Vocab *v);
/* The tokens as vocab.txt holds them, each followed by '\n' (*len bytes,
 * NUL-terminated); free() it. */
char *vocab_join(char *const *tokens, int n, size_t *len);
/* Id of token s[0..len), or -1. */
int vocab_lookup(const Vocab *v, const char *s, size_t len);
/* Dies unless the vocab has token, saying which command needs it. */
void vocab_require(const Vocab *v, const char *token, const char *needed_by);

#endif
