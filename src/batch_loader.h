/* Pre-training batches from a directory of HDF5 shards (shard.h), read row
 * by row as needed, never whole shards.
 *
 * The samples of all shards (in file name order) are numbered 0..N-1 and
 * read as an endless stream: stream position p is sample perm_k[p mod N] of
 * pass k = p / N, perm_k being a Philox permutation named by (seed, k). A
 * global batch of step s covers positions [s*batch, (s+1)*batch); a rank in
 * a distributed run reads its own part of that range by position, so every
 * rank count sees the same samples in the same global order. */
#ifndef BERTRAIN_BATCH_LOADER_H
#define BERTRAIN_BATCH_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "shard.h"
#include "vocab.h"

/* The "a" word of the data-order stream (rng.h); b = pass. */
#define LOADER_STREAM_ORDER 0x6f726472u /* "ordr" */

typedef struct BatchLoader BatchLoader;

/* One micro-batch in the model's layout (int32 everywhere). */
typedef struct LoadedBatch {
  int n, S, P;
  int32_t *input_ids, *segment_ids, *input_mask; /* [n*S] */
  int32_t *mlm_positions, *mlm_ids;              /* [n*P] */
  int32_t *nsp_labels;                           /* [n] */
} LoadedBatch;

/* Opens every shard-*.h5 of dir (sorted by name), with HDF5 chunk caches of
 * about cache_bytes in all. Dies naming the file when there is none, when
 * shards disagree on seq length or max predictions, or when a shard's
 * vocab_size / vocab_hash attribute (if present) differs from vocab's
 * (vocab NULL: not checked). */
BatchLoader *loader_open(const char *dir, const Vocab *vocab, uint64_t seed, size_t cache_bytes);
void loader_close(BatchLoader *l);

size_t loader_samples(const BatchLoader *l);  /* N, over all shards */
int loader_seq_length(const BatchLoader *l);
int loader_max_predictions(const BatchLoader *l);
int loader_num_shards(const BatchLoader *l);
const Shard *loader_shard(const BatchLoader *l, int i);

/* Buffers for up to max_n samples. */
void loaded_batch_alloc(LoadedBatch *b, int max_n, int S, int P);
void loaded_batch_free(LoadedBatch *b);

/* Fills b with the samples at stream positions [first, first + n). The
 * permutation of the last pass used is kept; reaching another pass
 * recomputes it (O(N)), so read positions in increasing order. */
void loader_read(BatchLoader *l, uint64_t first, int n, LoadedBatch *b);

/* The sample at stream position p (for tests and logs). */
size_t loader_sample_at(BatchLoader *l, uint64_t p);

/* Reads the given global sample numbers (any order, repeats allowed) into b,
 * one HDF5 read per dataset and shard. */
void loader_read_samples(BatchLoader *l, const size_t *samples, int n, LoadedBatch *b);

#endif
