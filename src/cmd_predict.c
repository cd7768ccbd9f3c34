/* bertrain predict: classify a GLUE TSV file with fine-tuned weights. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "glue.h"
#include "model.h"
#include "classify.h"
#include "params.h"
#include "tokenizer.h"
#include "train_util.h"
#include "util.h"
#include "weights_h5.h"

static void write_predictions(const char *path, const GlueSet *set, const int *pred) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) die("path too long: %s", path);
  tmpfile_register(tmp);
  FILE *f = fopen(tmp, "w");
  if (!f) die("cannot create %s: %s", tmp, strerror(errno));
  if (set->index) fprintf(f, "index\tprediction\n");
  for (long i = 0; i < set->n; i++) {
    if (set->index) fprintf(f, "%ld\t%d\n", set->index[i], pred[i]);
    else fprintf(f, "%d\n", pred[i]);
  }
  if (fflush(f) != 0 || ferror(f) || fclose(f) != 0) die("cannot write %s: %s", tmp, strerror(errno));
  commit_file(tmp, path);
}

static int run(int argc, char **argv) {
  Config cfg;
  CheckpointArgs ca;
  train_checkpoint_args(&CMD_PREDICT, "bertrain finetune", argc, argv, &ca, &cfg);
  const char *ckpt = ca.ckpt, *task = ca.task, *data = ca.data, *out = ca.out;
  if (!data) die("predict: no input: pass --data FILE.tsv");
  GlueTask gt = glue_task_parse(task ? task : cfg.finetune.task);
  const Ops *ops = train_ops(&cfg);
  ModelShape file_shape;
  weights_read_shape(ckpt, &file_shape);
  if (file_shape.num_labels < 1)
    die("%s: the checkpoint has no classifier (num_labels 0): fine-tune it first with "
        "'bertrain finetune'", ckpt);

  Vocab *v = train_vocab_for_checkpoint(ckpt, &cfg);
  GlueSet *set = glue_load(gt, data);
  if (set->num_labels != file_shape.num_labels)
    die("%s: the checkpoint's classifier has %d labels but task %s has %d", ckpt,
        file_shape.num_labels, glue_task_name(gt), set->num_labels);
  if (!set->labelled && !out)
    die("predict: %s has no labels (a test file): pass --out FILE for the predictions", data);
  Tokenizer *tok = tokenizer_new(v, cfg.model.lowercase, cfg.model.max_word_chars);
  Encoded *e = classify_encode(set, tok, cfg.finetune.seq_length);
  tokenizer_free(tok);

  ModelShape shape = model_shape(&cfg, v->size, set->num_labels, 0);
  ParamTable *t = params_build(&shape);
  float *host = params_alloc_host(t);
  if (weights_load(ckpt, t, host, &cfg, v) != 0)
    die("%s: the checkpoint lacks classifier tensors", ckpt);
  ModelOpts mo = {MODEL_CLASSIFY, CLASSIFY_EVAL_BATCH, cfg.finetune.seq_length, 0, 0.0f, 0.0f, 0,
                  v->pad};
  Model *m = model_new(ops, t, &mo);
  model_params_from_host(m, host);

  int *pred = xmalloc((size_t)(set->n ? set->n : 1) * sizeof *pred);
  ClassifyEval ev;
  double t0 = now_seconds();
  classify_evaluate(m, e, pred, &ev);
  double secs = now_seconds() - t0;
  info("predict: %ld examples of %s in %.1f s (%.1f/s); %ld cut to %d tokens", set->n, data, secs,
       (double)set->n / (secs > 0 ? secs : 1e-9), e->truncated, cfg.finetune.seq_length);
  if (set->labelled) {
    printf("accuracy %.10g (%ld/%ld)\n", eval_accuracy(&ev), ev.correct, ev.n);
    if (gt == GLUE_MRPC) printf("f1 %.10g\n", eval_f1(&ev));
    printf("loss %.6f\n", ev.loss);
  }
  if (out) {
    write_predictions(out, set, pred);
    info("predict: predictions written to %s", out);
  }

  free(pred);
  model_free(m);
  free(host);
  params_free(t);
  encoded_free(e);
  glue_free(set);
  vocab_free(v);
  config_free(&cfg);
  return 0;
}

const Command CMD_PREDICT = {
  "predict", "classify a GLUE TSV file with fine-tuned weights (accuracy, F1)",
  "usage: bertrain predict --checkpoint FILE.h5 --data FILE.tsv [--task mrpc|sst2]\n"
  "                        [--out PREDICTIONS.tsv] [--config FILE] [--set KEY=VALUE]...\n\n"
  "Runs the fine-tuned model (from 'bertrain finetune') on a GLUE train, dev or\n"
  "test file (plain or .xz), in eval mode, encoding as finetune did (the\n"
  "checkpoint's settings, e.g. finetune.seq_length, are the defaults). For a\n"
  "file with labels it prints the accuracy (and F1 for MRPC) and the mean loss;\n"
  "evaluating finetune's dev file gives exactly its last validation figures.\n\n"
  "options:\n"
  "  --checkpoint FILE  fine-tuned weights (model.h5 of finetune)\n"
  "  --data FILE        the TSV file to classify\n"
  "  --task NAME        mrpc or sst2 (default: the checkpoint's finetune.task)\n"
  "  --out FILE         write the predicted labels, one per line (for a test file:\n"
  "                     'index<TAB>prediction' lines under a header); needed for\n"
  "                     files without labels\n"
  "  --config FILE      read settings from an INI file\n"
  "  --set KEY=VALUE    set one setting\n",
  run, 0,
};
