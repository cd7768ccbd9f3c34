/* BERT's tokenizer, exactly as google-research/bert tokenization.py: a basic
 * tokenizer (cleaning, CJK spacing, whitespace and punctuation splitting,
 * optional lower-casing with accent stripping) followed by greedy
 * longest-match WordPiece. Input must be valid UTF-8 (see textio.h). */
#ifndef BERTRAIN_TOKENIZER_H
#define BERTRAIN_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "vocab.h"

typedef struct Tokenizer Tokenizer;

/* Called for each word of the basic tokenizer (UTF-8, not NUL-terminated). */
typedef void (*WordFn)(const char *word, size_t len, void *user);

/* Basic tokenization only (what vocab training counts): calls fn per word. */
void basic_tokenize(const char *text, size_t len, int lowercase, WordFn fn, void *user);

/* Dies unless the vocab has [UNK]. The vocab must outlive the tokenizer. A
 * tokenizer keeps scratch buffers, so each thread needs its own. */
Tokenizer *tokenizer_new(const Vocab *v, int lowercase, int max_word_chars);
void tokenizer_free(Tokenizer *t);

/* Tokenizes text[0..len) and appends the WordPiece ids to *ids (a growable
 * array of *cap elements, see grow() in util.h) starting at index n.
 * Returns the new count. Words that cannot be split become [UNK]. */
size_t tokenizer_encode(Tokenizer *t, const char *text, size_t len,
                        int32_t **ids, size_t *cap, size_t n);

/* Whole-word masking tells word starts from the "##" prefix of the vocab
 * token, as Google's tool does, so the tokenizer needs no extra output. */
const Vocab *tokenizer_vocab(const Tokenizer *t);

#endif
