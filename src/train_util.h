/* Pieces the training commands share: the run directory, the learning-rate
 * schedule, gradient clipping, metrics files, and the configuration of a
 * command that starts from a checkpoint. */
#ifndef BERTRAIN_TRAIN_UTIL_H
#define BERTRAIN_TRAIN_UTIL_H

#include <stdio.h>

#include "cli.h"
#include "config.h"
#include "ops.h"
#include "params.h"
#include "vocab.h"

/* run.dir, or runs/NAME with NAME the base name (path_stem) of the last
 * --config in argv, or runs/default without one. Writes it to buf. */
const char *train_run_dir(const Config *c, int argc, char **argv, char *buf, size_t n);

/* The backend device names: cpu (threads > 0: that many OpenMP threads, 0 =
 * all cores), cuda (this rank's GPU, local rank % devices, with NCCL for the
 * gradient all-reduce; dies when there is none or CUDA is not built in) or
 * auto (cuda when every rank has a usable GPU, else cpu on every rank).
 * Collective under MPI: every rank calls it at the same point. */
const Ops *select_ops(const char *device, int threads);
/* select_ops(run.device, run.threads), with run.tf32 and run.precision
 * applied (the CPU backend refuses bf16). */
const Ops *train_ops(const Config *c);

/* Optimizer steps of linear warm-up: round(proportion * total). */
int warmup_steps(double proportion, int total);
/* Learning rate of optimizer step s (1-based) of total: peak * s / warmup
 * during the warm-up, then falling linearly so that step total still
 * trains (peak / (total - warmup)) and the next one would have 0. */
double lr_at(int s, int total, int warmup, double peak);

/* Creates path (truncating it) and writes the header line; dies naming it. */
FILE *metrics_open(const char *path, const char *header);
/* Flushes and closes; dies naming path on a write error. */
void metrics_close(FILE *f, const char *path);

/* The configuration of a command starting from weights file ckpt: defaults,
 * then the configuration stored in the file, then the user's --config files
 * and --set assignments from argv (as cli_parse applies them). Dies, listing
 * them, when the user's settings change the architecture the file holds
 * (model.layers, hidden, heads, intermediate, max_position, type_vocab,
 * lowercase). cfg must be freed with config_free. */
void train_config_from_checkpoint(const char *ckpt, int argc, char **argv, Config *cfg);

/* The options of the commands that start from a weights file (finetune,
 * predict): --checkpoint FILE (required; without it, die saying where such
 * a file comes from: from_hint), --task, --data and --out (NULL when not
 * given); cfg as train_config_from_checkpoint makes it. */
typedef struct CheckpointArgs {
  const char *ckpt, *task, *data, *out;
} CheckpointArgs;
void train_checkpoint_args(const Command *cmd, const char *from_hint, int argc, char **argv,
                           CheckpointArgs *a, Config *cfg);

/* The vocabulary for weights file ckpt: the one embedded in it, or the file
 * model.vocab names when the user set it (different from the one in the
 * file's configuration), which must then match the file's. */
Vocab *train_vocab_for_checkpoint(const char *ckpt, const Config *cfg);

/* Sets section.key = value, dying as --set would on a bad value. */
void train_override(Config *c, const char *key, const char *value);

#endif
