/* bertrain finetune: the command-line face of finetune_run (finetune.h):
 * the settings from the checkpoint and the user, the output directory. */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <stdio.h>

#include "commands.h"
#include "finetune.h"
#include "glue.h"
#include "train_util.h"
#include "util.h"

static int run(int argc, char **argv) {
  Config cfg;
  CheckpointArgs ca;
  train_checkpoint_args(&CMD_FINETUNE, "bertrain pretrain", argc, argv, &ca, &cfg);
  const char *ckpt = ca.ckpt, *task = ca.task, *data = ca.data, *out = ca.out;
  if (task) train_override(&cfg, "finetune.task", glue_task_parse(task) == GLUE_MRPC ? "mrpc" : "sst2");
  if (data) train_override(&cfg, "finetune.data", data);
  char dir[PATH_MAX];
  if (out) snprintf(dir, sizeof dir, "%s", out);
  else {
    char run_dir[PATH_MAX - 64];
    train_run_dir(&cfg, argc, argv, run_dir, sizeof run_dir);
    snprintf(dir, sizeof dir, "%s/finetune-%s", run_dir, cfg.finetune.task);
  }
  FinetuneArgs a = {.checkpoint = ckpt, .out = dir, .seed = -1};
  int rc = finetune_run(&cfg, &a);
  config_free(&cfg);
  return rc;
}

const Command CMD_FINETUNE = {
  "finetune", "fine-tune pre-trained weights on a GLUE task (MRPC, SST-2)",
  "usage: bertrain finetune --checkpoint FILE.h5 [--task mrpc|sst2] [--data DIR]\n"
  "                         [--out DIR] [--config FILE] [--set KEY=VALUE]...\n\n"
  "Adds a classifier (initialised from run.seed) to the pre-trained weights and\n"
  "trains everything on DIR/train.tsv for finetune.epochs epochs with AdamW\n"
  "(finetune.lr, linear warm-up over finetune.warmup_proportion of the steps,\n"
  "then linear decay to zero), finetune.batch_size examples per step, the\n"
  "training set shuffled each epoch. Examples are encoded as [CLS] A [SEP] B [SEP]\n"
  "and cut to finetune.seq_length tokens, the longer text first. After each epoch\n"
  "it evaluates on DIR/dev.tsv (accuracy; F1 for MRPC).\n\n"
  "The model's shape, lower-casing and vocabulary come from the checkpoint, and\n"
  "its stored settings are the defaults; settings that change the shape are\n"
  "refused. A vocabulary given with model.vocab must equal the checkpoint's.\n\n"
  "Writes to DIR (--out; default RUN_DIR/finetune-TASK):\n"
  "  metrics.csv   phase,step,epoch,metric,value: train rows every step\n"
  "                (batch_accuracy, loss), validation rows every epoch\n"
  "                (epoch_accuracy, and f1 for MRPC)\n"
  "  config.ini    the resolved settings\n"
  "  model.h5      the fine-tuned weights with the classifier (for predict)\n\n"
  "options:\n"
  "  --checkpoint FILE  weights from pretrain (or another bertrain weights file)\n"
  "  --task NAME        mrpc or sst2 (overrides finetune.task)\n"
  "  --data DIR         directory of train.tsv and dev.tsv, .xz allowed\n"
  "                     (overrides finetune.data)\n"
  "  --out DIR          output directory\n"
  "  --config FILE      read settings from an INI file\n"
  "  --set KEY=VALUE    set one setting, e.g. --set finetune.epochs=2\n\n"
  "Data-parallel under MPI: 'mpirun -np N bertrain finetune ...' splits each\n"
  "batch of finetune.batch_size examples among the N ranks (every rank reads\n"
  "the data and holds the whole model) and sums their gradients; the results\n"
  "equal one process's up to float rounding. Only rank 0 writes DIR. An input\n"
  "that is missing or malformed ends the run with exit status 1 and a message.\n",
  run, 1,
};
