/* Sweep files (configs/sweeps/NAME.ini): one base config and a list of named
 * override sets, one full run (pre-training with its milestone fine-tuning)
 * per set, each in its own directory under the sweep directory:
 *
 *   [sweep]
 *   base = configs/bert-mini-mrpc.ini   ; the config every run starts from
 *   dir = runs/sweeps/depth             ; default runs/sweeps/<file's base name>
 *
 *   [L3-b128]                           ; a run: its name, then overrides
 *   model.layers = 3
 *   pretrain.batch_size = 128
 *
 * Runs are numbered from 0 in file order (the Slurm array index); run NAME
 * gets run.dir = DIR/NAME. Every override must be a valid config key and
 * value on top of the base (checked when the file is read); run.dir is the
 * sweep's to set. */
#ifndef BERTRAIN_SWEEP_H
#define BERTRAIN_SWEEP_H

#include <limits.h>

typedef struct SweepRun {
  char name[64];
  char **sets;   /* "section.key=value" */
  int *lines;    /* where each is in the file */
  int nsets;
  char dir[PATH_MAX];
} SweepRun;

typedef struct Sweep {
  char path[PATH_MAX];
  char base[PATH_MAX];
  char dir[PATH_MAX];
  SweepRun *runs;
  int nruns;
} Sweep;

/* Reads and checks path; dies with FILE:LINE on any error. */
Sweep *sweep_load(const char *path);
void sweep_free(Sweep *s);

#endif
