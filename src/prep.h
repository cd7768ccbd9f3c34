/* Pre-training instances as google-research/bert create_pretraining_data.py
 * makes them (sentence pairs for next-sentence prediction, masked tokens),
 * computed from a tokenized corpus held in memory.
 *
 * Random streams: every (pass, document) unit draws from its own Philox
 * streams, so the instances of a unit do not depend on which rank makes them
 * or in which order. A unit has two streams: the "layout" stream (target
 * length, split point, random next, random document and start) and the
 * "content" stream (truncation and masking). Keeping them apart lets the
 * counting pass of prep skip the content draws and still agree exactly with
 * the writing pass. */
#ifndef BERTRAIN_PREP_H
#define BERTRAIN_PREP_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* Stream names (the "a" word of rng_init) besides the layout stream, whose
 * "a" is the pass number (< PREP_STREAM_CONTENT). */
#define PREP_STREAM_CONTENT 0x40000000u /* + pass; b = document */
#define PREP_STREAM_UNITS 0x7fffffffu   /* b = 0: the order of the units */
#define PREP_STREAM_SHARD 0x7ffffffeu   /* b = shard: order inside a shard */

/* The tokenized corpus: documents of sentences of token ids. Ids are kept
 * as uint16 when the vocabulary allows (ids16), else as int32 (ids32). */
typedef struct Corpus {
  size_t n_docs, n_sents, n_tokens;
  uint64_t *doc_sent;  /* n_docs + 1: sentences of doc d are [doc_sent[d], doc_sent[d+1]) */
  uint64_t *sent_tok;  /* n_sents + 1: tokens of sentence s are [sent_tok[s], sent_tok[s+1]) */
  uint16_t *ids16;
  int32_t *ids32;
} Corpus;

static inline int32_t corpus_id(const Corpus *c, uint64_t t) {
  return c->ids16 ? (int32_t)c->ids16[t] : c->ids32[t];
}

void corpus_free(Corpus *c);

/* Reads the corpus files (blank line between documents, one sentence per
 * line; a file's end also ends a document), strips each line and tokenizes
 * it; lines without tokens are skipped and documents without sentences
 * dropped. Collective under MPI: every rank reads the files, rank r
 * tokenizes the documents d (counted from 0 over all files) with
 * d % size == r, and every rank ends with the same whole corpus. Dies
 * naming FILE:LINE on invalid UTF-8. Returns the bytes read. */
uint64_t corpus_load(Corpus *c, char *const *files, int n_files, Tokenizer *t, int vocab_size);

/* Collective: every rank's mine[0..n) concatenated in rank order (rank 0's
 * first), at most chunk bytes per rank per MPI call, so that sizes beyond
 * MPI's int counts work. counts[size] gets each rank's n. Without MPI it
 * returns a copy. Caller frees. */
unsigned char *allgather_bytes(const void *mine, uint64_t n, uint64_t *counts, size_t chunk);

/* Python's str.strip() on UTF-8 text: the [*start, *end) left after
 * removing leading and trailing Unicode whitespace. */
void py_strip(const char *s, size_t len, size_t *start, size_t *end);

typedef struct PrepParams {
  int seq_length, max_predictions;
  double masked_lm_prob, short_seq_prob;
  int whole_word_mask;
  uint64_t seed;
  int vocab_size;
  int cls, sep, mask;
  const uint8_t *is_piece; /* is_piece[id]: the token starts with "##" */
} PrepParams;

/* Rows of instances in the shard layout, zero padded: row i of input_ids is
 * input_ids[i * seq_length ...], of masked_lm_* is [i * max_predictions ...]. */
typedef struct Instances {
  size_t n;
  int seq_length, max_predictions;
  int32_t *input_ids;
  int8_t *input_mask, *segment_ids;
  int32_t *masked_lm_positions, *masked_lm_ids;
  int8_t *next_sentence_labels; /* 1 = B is a random next segment */
} Instances;

void instances_alloc(Instances *in, size_t n, int seq_length, int max_predictions);
void instances_free(Instances *in);

/* Reusable buffers for prep_document (one per thread of work). */
typedef struct PrepScratch PrepScratch;
PrepScratch *prep_scratch_new(void);
void prep_scratch_free(PrepScratch *w);

/* Where prep_document puts the instances it makes. */
typedef struct PrepOut {
  Instances *in;
  const uint32_t *rows; /* row of the unit's k-th instance; NULL: first_row + k */
  size_t first_row;
  size_t limit;         /* the unit may make at most this many (else die) */
} PrepOut;

/* Makes the instances of document doc in pass pass. With out == NULL only
 * counts them (cheap: no tokens are touched). Returns their number. */
size_t prep_document(const Corpus *c, const PrepParams *p, uint32_t pass, size_t doc,
                     PrepScratch *w, const PrepOut *out);

/* Python's round() of n * prob (half to even), as Google's tool computes
 * the number of masked positions, before the bounds. */
long prep_round_half_even(double x);
/* min(max_predictions, max(1, round(len * masked_lm_prob))) */
int prep_num_to_predict(int len, double masked_lm_prob, int max_predictions);

#endif
