/* Pre-training shards in NVIDIA DeepLearningExamples' HDF5 layout: six
 * datasets of N rows (input_ids [N,S] int32, input_mask [N,S] int8,
 * segment_ids [N,S] int8, masked_lm_positions [N,P] int32, masked_lm_ids
 * [N,P] int32, next_sentence_labels [N] int8), zero padded, plus file
 * attributes saying how bertrain made them. The reader also takes shards made
 * by NVIDIA's scripts (no attributes, any integer types). */
#ifndef BERTRAIN_SHARD_H
#define BERTRAIN_SHARD_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "prep.h"

#define SHARD_FORMAT_VERSION 1
#define SHARD_NUM_DATASETS 6
extern const char *const SHARD_DATASETS[SHARD_NUM_DATASETS];

typedef struct ShardAttrs {
  int present; /* reader: 1 when the file has bertrain's attributes */
  int64_t format_version, vocab_size, seq_length, max_predictions, seed, dupe_factor;
  int64_t whole_word_mask, shard_index, num_shards;
  uint64_t vocab_hash;
  double masked_lm_prob, short_seq_prob;
} ShardAttrs;

/* Writes the instances to path (via path.tmp, renamed into place only when
 * complete, removed if the process dies). Dies naming the file and dataset
 * on any HDF5 error. */
void shard_write(const char *path, const Instances *in, const ShardAttrs *a);

typedef struct Shard {
  char *path;
  hid_t file;
  hid_t ds[SHARD_NUM_DATASETS]; /* in SHARD_DATASETS order */
  size_t n;                     /* rows */
  int seq_length, max_predictions;
  ShardAttrs attrs;
} Shard;

/* Opens a shard and checks that the six datasets exist, are integers and
 * have consistent shapes; dies naming the file and dataset otherwise. */
Shard *shard_open(const char *path);
/* Reads rows [start, start + count) of every dataset into rows 0..count-1
 * of out (allocated with instances_alloc for at least count rows and the
 * shard's seq_length and max_predictions). */
void shard_read(const Shard *s, size_t start, size_t count, Instances *out);
void shard_close(Shard *s);

#endif
