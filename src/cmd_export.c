/* bertrain export: a weights file as a Hugging Face model directory. */
#include <stdlib.h>

#include "commands.h"
#include "hf_model.h"
#include "train_util.h"
#include "util.h"

static int run(int argc, char **argv) {
  const char *ckpt = NULL, *out = NULL;
  CliOpt opts[] = {{"checkpoint", OPT_STRING, &ckpt}, {"out", OPT_STRING, &out}};
  Config cfg;
  int first = cli_parse(&CMD_EXPORT, argc, argv, opts, (int)ARRAY_LEN(opts), &cfg);
  config_free(&cfg);
  if (first < argc)
    die("export: unexpected argument '%s' (usage: bertrain export --checkpoint FILE.h5 --out "
        "DIR)", argv[first]);
  if (!ckpt) die("export: no weights: pass --checkpoint FILE.h5 (from pretrain or finetune)");
  if (!out) die("export: no output directory: pass --out DIR");
  train_config_from_checkpoint(ckpt, argc, argv, &cfg);
  hf_export(ckpt, &cfg, out);
  config_free(&cfg);
  return 0;
}

const Command CMD_EXPORT = {
  "export", "write weights as a Hugging Face model directory (safetensors, config.json, vocab)",
  "usage: bertrain export --checkpoint FILE.h5 --out DIR\n\n"
  "Writes a bertrain weights file (a checkpoint of pretrain, its final.h5, or the\n"
  "model.h5 of finetune) as a Hugging Face model directory, as transformers'\n"
  "save_pretrained does:\n"
  "  config.json            BertConfig (the model's shape, dropout, initialiser\n"
  "                         range; for a fine-tuned model its labels and task)\n"
  "  model.safetensors      every tensor in float32 under its state_dict name\n"
  "                         (the tied MLM decoder tensors as copies)\n"
  "  vocab.txt              the vocabulary stored in the file\n"
  "  tokenizer_config.json  BertTokenizer, lower-casing as model.lowercase says\n\n"
  "so that, in Python:\n"
  "  BertForPreTraining.from_pretrained(DIR)             (pre-training checkpoints)\n"
  "  BertForSequenceClassification.from_pretrained(DIR)  (finetune's model.h5)\n"
  "  BertTokenizer.from_pretrained(DIR)\n"
  "load it; the optimizer state of a checkpoint is not exported. The files are\n"
  "written under temporary names and renamed into place; existing files of\n"
  "those names in DIR are replaced. 'bertrain import' reads such a directory back.\n\n"
  "options:\n"
  "  --checkpoint FILE  a bertrain weights file\n"
  "  --out DIR          the directory to write (created if needed)\n",
  run, 0,
};
