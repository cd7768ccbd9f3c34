/* bertrain import: a Hugging Face BERT directory as a bertrain weights file. */
#include "commands.h"
#include "hf_model.h"
#include "util.h"

static int run(int argc, char **argv) {
  const char *from = NULL, *out = NULL;
  CliOpt opts[] = {{"from", OPT_STRING, &from}, {"out", OPT_STRING, &out}};
  Config cfg;
  int first = cli_parse(&CMD_IMPORT, argc, argv, opts, (int)ARRAY_LEN(opts), &cfg);
  if (first < argc)
    die("import: unexpected argument '%s' (usage: bertrain import --from DIR --out FILE.h5)",
        argv[first]);
  if (!from) die("import: no model: pass --from DIR (a Hugging Face BERT model directory)");
  if (!out) die("import: no output file: pass --out FILE.h5");
  hf_import(from, &cfg, out);
  config_free(&cfg);
  return 0;
}

const Command CMD_IMPORT = {
  "import", "read a Hugging Face BERT model directory into a bertrain weights file",
  "usage: bertrain import --from DIR --out FILE.h5 [--config FILE]\n"
  "                       [--set KEY=VALUE]...\n\n"
  "Reads a BERT in a Hugging Face model directory (as save_pretrained writes it,\n"
  "or a downloaded snapshot of a published BERT) and writes it as a bertrain\n"
  "weights file, for 'bertrain finetune --checkpoint FILE.h5', predict, forward\n"
  "or export. DIR must hold:\n"
  "  config.json            a BERT: model_type bert, hidden_act gelu, absolute\n"
  "                         positions, layer_norm_eps 1e-12; it gives the [model]\n"
  "                         section (shape, dropout, initialiser range)\n"
  "  model.safetensors      one file (not sharded; pytorch_model.bin is not read)\n"
  "  vocab.txt              the WordPiece vocabulary, vocab_size tokens (or\n"
  "                         tokenizer.json, as transformers 5 saves it; its\n"
  "                         vocabulary is then written to FILE.h5.vocab.txt, for\n"
  "                         'bertrain prep')\n"
  "and may hold tokenizer_config.json (do_lower_case; without it, lower-case as\n"
  "BertTokenizer does by default).\n\n"
  "Tensors keep their state_dict names; BertModel's names without 'bert.' and\n"
  "Google's LayerNorm gamma/beta are accepted, F16 and BF16 are widened to\n"
  "float32, position_ids is skipped. The pre-training heads (cls.*) are kept when\n"
  "all are present; a classifier (classifier.*) is kept with its labels. The\n"
  "tied MLM decoder tensors must equal what they are tied to (a warning says\n"
  "when not; the word embeddings and MLM bias are used, as in transformers).\n"
  "A tensor the model lacks, a missing tensor or a wrong shape is an error that\n"
  "names it. Settings given with --config and --set other than [model] are\n"
  "stored in FILE.h5 as the defaults of the commands that start from it.\n\n"
  "options:\n"
  "  --from DIR         the Hugging Face model directory\n"
  "  --out FILE         the weights file to write (via FILE.tmp)\n"
  "  --config FILE      read settings from an INI file\n"
  "  --set KEY=VALUE    set one setting\n",
  run, 0,
};
