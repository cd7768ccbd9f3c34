/* Fine-tuning on a GLUE task (MRPC, SST-2) from pre-trained weights, as a
 * library call: 'bertrain finetune' is a thin command over it, and
 * pre-training calls it between epochs for the coordinator's inline
 * launcher (coordinator.h), in the same processes.
 *
 * Data-parallel over the ranks of the job (comm.h): every rank reads the
 * (small) GLUE data and holds the whole model. Each global batch of
 * finetune.batch_size examples is split into contiguous blocks, rank r of N
 * taking examples [r*B/N, (r+1)*B/N) of it, padded to the longest example of
 * the whole batch; a rank's loss is weighted by its share of the batch and
 * the gradients summed over the ranks, so that the update is that of the
 * single-process mean loss; dropout masks are keyed by the global example
 * index, so N ranks drop what one process drops. The logged batch loss and
 * accuracy are global. Evaluation shares out the dev set's chunks
 * (classify_evaluate_part) and sums the counts, so that its figures equal
 * 'bertrain predict''s on the saved model. With N ranks the results equal
 * one process's up to float rounding (the gradient sums run in another
 * order).
 *
 * Only rank 0 writes files (metrics.csv, config.ini, model.h5, as 'bertrain
 * help finetune' describes) and prints. */
#ifndef BERTRAIN_FINETUNE_H
#define BERTRAIN_FINETUNE_H

#include "config.h"

typedef struct FinetuneArgs {
  const char *checkpoint; /* weights file from pretrain (or any bertrain weights file) */
  const char *task;       /* "mrpc" or "sst2"; NULL = cfg's finetune.task */
  const char *data;       /* directory of train.tsv and dev.tsv (.xz allowed); NULL =
                             cfg's finetune.data */
  const char *out;        /* output directory (created) */
  long seed;              /* run.seed of the job: classifier initialisation, data order,
                             dropout; < 0 = cfg's run.seed */
  const char *log;        /* rank 0's progress and messages go to this file (created or
                             truncated) instead of stdout and stderr; NULL = stdout/stderr */
} FinetuneArgs;

/* Fine-tunes, evaluates after every epoch, and writes a->out. Every rank
 * calls it with the same arguments. cfg gives the settings ([finetune],
 * run.threads, model.dropout, ...); the model's shape comes from the
 * checkpoint. Returns 0, or 1 on every rank when the job's inputs are bad,
 * with the reason written by rank 0 as "bertrain: error: ..." to the log
 * (or stderr): an unknown task, an unreadable checkpoint, a missing data
 * directory or TSV file, a malformed TSV, data that differ between ranks,
 * finetune.seq_length beyond the model's max_position, a vocabulary without
 * [CLS] or [SEP], an output directory that cannot be created, or a loss or
 * gradient that is not finite. Other errors (a damaged weights file, failed
 * writes, MPI failures) end the job through die() as usual. Frees all it
 * allocates, so that pre-training can go on in the same process. */
int finetune_run(const Config *cfg, const FinetuneArgs *a);

#endif
