/* Pre-training checkpoints: a weights file (weights_h5.h: parameters under
 * their Hugging Face names, vocabulary, resolved configuration, shape
 * attributes) plus what continuing the run exactly needs:
 *   /optimizer/m/<hf name>, /optimizer/v/<hf name>   Adam/LAMB moments
 *   /train/<name>   one-element datasets, see TrainState (format_version,
 *                   step, opt_step, skipped_steps, epoch, steps_per_epoch,
 *                   total_steps, warmup_steps, batch_size, data_pass,
 *                   data_position, data_samples, seed, world_size,
 *                   wall_seconds)
 * Every dataset is chunked with a fletcher32 checksum; attributes and the
 * rest of the metadata are covered by the checksums of HDF5's 1.10 object
 * headers. Files are written as NAME.tmp, fsynced and renamed, so a file
 * under its final name is complete. Fine-tuning reads a checkpoint as a
 * weights file (the groups are skipped).
 *
 * In RUN_DIR/checkpoints: epoch-NNNN.h5 at milestone epochs (kept),
 * latest.h5 (rolling) and final.h5 (the end of the run). */
#ifndef BERTRAIN_CHECKPOINT_H
#define BERTRAIN_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "params.h"
#include "vocab.h"

#define CKPT_FORMAT_VERSION 1

typedef struct TrainState {
  int64_t step;            /* optimizer steps done; the LR schedule's position */
  int64_t opt_step;        /* updates applied (Adam bias correction): step - skipped */
  int64_t skipped;         /* steps skipped for a non-finite loss or gradient */
  int64_t epoch;           /* epochs completed: step / steps_per_epoch */
  int64_t steps_per_epoch; /* resolved (pretrain.steps_per_epoch 0 = one pass) */
  int64_t total_steps;     /* epochs x steps_per_epoch */
  int64_t warmup_steps;
  int64_t batch_size;      /* global */
  uint64_t data_pass;      /* the next sample is position data_position of */
  uint64_t data_position;  /*   the permutation of pass data_pass */
  uint64_t data_samples;   /* samples in the shards */
  uint64_t seed;           /* run.seed: data order and dropout masks */
  int64_t world_size;      /* ranks that wrote it */
  double wall_seconds;     /* pre-training time so far, over all restarts */
} TrainState;

/* Writes path (rank 0; params, m and v on the host). Dies naming the file
 * and dataset on errors; the previous file under that name stays intact. */
void ckpt_write(const char *path, const ParamTable *t, const float *params, const float *m,
                const float *v, const Config *cfg, const Vocab *vocab, const TrainState *st);

/* What a checkpoint must match to continue this run. */
typedef struct CkptExpect {
  const ParamTable *t;
  const Config *cfg;
  const Vocab *vocab;
  uint64_t samples; /* in the shards now */
} CkptExpect;

/* Reads path into params, m, v (params_size floats each) and st after
 * validating everything: format versions, every dataset's presence, shape
 * and checksum. Returns 0, or -1 with the reason (naming the file and
 * dataset) in why when the file is damaged or incomplete. Dies when an
 * intact file does not belong to this run: another architecture or
 * vocabulary, settings that change the run (pretrain.batch_size, epochs,
 * lr, ...; listed), or data with another number of samples. */
int ckpt_read(const char *path, const CkptExpect *e, float *params, float *m, float *v,
              TrainState *st, char *why, size_t n);

/* The step a checkpoint holds, or -1 with why set when it is unreadable. */
int64_t ckpt_peek_step(const char *path, char *why, size_t n);

/* Deletes dir's leftover *.tmp files (checkpoint writes cut short). */
void ckpt_remove_partial(const char *dir);

/* The checkpoints in dir (latest.h5, final.h5, epoch-NNNN.h5), newest step
 * first; unreadable ones are reported (warn) and left out. Returns the
 * count; *paths (free each and the array) gets them. *found gets how many
 * checkpoint files there were, readable or not. */
int ckpt_list(const char *dir, char ***paths, int *found);

#endif
