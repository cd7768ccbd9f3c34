/* WordPiece vocabulary training the way Hugging Face's WordPieceTrainer does
 * it: byte-pair-encoding merges over characters, where a character inside a
 * word carries the continuation prefix "##". The vocabulary is the special
 * tokens, then the alphabet (every character seen, bare, followed by "##c"
 * for every character seen after a word's first), then one token per merge
 * in merge order. Ties between equally frequent pairs go to the byte-wise
 * smallest merged string, so the result depends on the word counts only,
 * never on the order they were added in. */
#ifndef BERTRAIN_VOCAB_TRAIN_H
#define BERTRAIN_VOCAB_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#define VOCAB_NUM_SPECIALS 5
/* [PAD] [UNK] [CLS] [SEP] [MASK], ids 0..4 of every trained vocabulary. */
extern const char *const VOCAB_SPECIALS[VOCAB_NUM_SPECIALS];

/* Distinct words (UTF-8) and how often each was seen. */
typedef struct WordCounts WordCounts;

WordCounts *word_counts_new(void);
void word_counts_free(WordCounts *wc);
/* Adds count occurrences of word[0..len). */
void word_counts_add(WordCounts *wc, const char *word, size_t len, int64_t count);
size_t word_counts_distinct(const WordCounts *wc);
int64_t word_counts_total(const WordCounts *wc);

/* Called every few merges with the vocabulary size reached so far. */
typedef void (*VocabTrainProgress)(int size, int target, int merges, void *user);

typedef struct VocabTrainOptions {
  int size;              /* target vocabulary size, specials included */
  int64_t min_frequency; /* pairs seen fewer times than this are never merged */
  VocabTrainProgress progress; /* may be NULL */
  void *user;
} VocabTrainOptions;

/* The smallest size training accepts: the specials plus the alphabet.
 * Dies if a word is not valid UTF-8. */
int vocab_train_min_size(const WordCounts *wc);

/* Trains a vocabulary of exactly o->size tokens, or fewer when no pair is
 * left that was seen at least o->min_frequency times. Returns the tokens
 * (free with vocab_tokens_free) and their number in *n. Dies when o->size is
 * below vocab_train_min_size() or a word is not valid UTF-8. */
char **vocab_train(const WordCounts *wc, const VocabTrainOptions *o, int *n);
void vocab_tokens_free(char **tokens, int n);

#endif
