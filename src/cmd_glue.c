/* bertrain glue: reads a GLUE task's train and dev files and prints what
 * helps set up fine-tuning: row counts, label balance, the majority-class
 * baseline and, given a vocabulary, the token lengths of the model's input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "glue.h"
#include "tokenizer.h"
#include "util.h"
#include "vocab.h"

static void print_labels(const GlueSet *s) {
  long count[2] = {0, 0};
  for (long i = 0; i < s->n; i++) count[s->label[i]]++;
  int major = count[1] > count[0];
  printf("  labels          0: %.1f%%  1: %.1f%%\n", 100.0 * count[0] / s->n,
         100.0 * count[1] / s->n);
  printf("  majority class  %d (accuracy %.4f)\n", major, (double)count[major] / s->n);
}

/* Lengths of [CLS] A [SEP] (B [SEP]), as the model will see them untruncated. */
static void print_lengths(const GlueSet *s, Tokenizer *tok) {
  int32_t *ids = NULL;
  size_t cap = 0, total = 0, longest = 0;
  long over64 = 0, over128 = 0;
  for (long i = 0; i < s->n; i++) {
    const char *a = s->text_a[i], *b = s->text_b ? s->text_b[i] : NULL;
    size_t n = tokenizer_encode(tok, a, strlen(a), &ids, &cap, 0) + 2;
    if (b) n += tokenizer_encode(tok, b, strlen(b), &ids, &cap, 0) + 1;
    total += n;
    if (n > longest) longest = n;
    over64 += n > 64;
    over128 += n > 128;
  }
  free(ids);
  printf("  tokens          %s: mean %.1f, max %zu\n",
         s->text_b ? "[CLS] A [SEP] B [SEP]" : "[CLS] A [SEP]", (double)total / s->n, longest);
  printf("  over 64 tokens  %ld (%.1f%%)\n", over64, 100.0 * over64 / s->n);
  printf("  over 128 tokens %ld (%.1f%%)\n", over128, 100.0 * over128 / s->n);
}

static int run(int argc, char **argv) {
  Config cfg;
  const char *task_name = NULL, *data = NULL, *vocab_path = NULL;
  CliOpt opts[] = {
    {"task", OPT_STRING, &task_name},
    {"data", OPT_STRING, &data},
    {"vocab", OPT_STRING, &vocab_path},
  };
  int first = cli_parse(&CMD_GLUE, argc, argv, opts, (int)ARRAY_LEN(opts), &cfg);
  if (first < argc) die("glue: unexpected argument '%s' (see 'bertrain help glue')", argv[first]);
  GlueTask task = glue_task_parse(task_name ? task_name : cfg.finetune.task);
  if (!data) data = cfg.finetune.data;
  if (!vocab_path && cfg.model.vocab[0]) vocab_path = cfg.model.vocab;

  Vocab *vocab = vocab_path ? vocab_load(vocab_path) : NULL;
  Tokenizer *tok = NULL;
  if (vocab) tok = tokenizer_new(vocab, cfg.model.lowercase, cfg.model.max_word_chars);
  const char *splits[] = {"train", "dev"};
  for (size_t k = 0; k < ARRAY_LEN(splits); k++) {
    GlueSet *s = glue_load_split(task, data, splits[k]);
    printf("%s %s: %s\n", glue_task_name(task), splits[k], s->path);
    printf("  rows            %ld\n", s->n);
    print_labels(s);
    if (tok) print_lengths(s, tok);
    glue_free(s);
  }
  if (!tok) printf("(token lengths need a vocabulary: --vocab FILE or model.vocab)\n");
  if (tok) tokenizer_free(tok);
  vocab_free(vocab);
  config_free(&cfg);
  return 0;
}

const Command CMD_GLUE = {
  "glue", "check a GLUE task's train/dev data: rows, label balance, token lengths",
  "usage: bertrain glue [--task mrpc|sst2] [--data DIR] [--vocab vocab.txt]\n\n"
  "Reads DIR/train.tsv and DIR/dev.tsv (or .tsv.xz) of a GLUE task in its TSV\n"
  "format (MRPC: sentence pairs; SST-2: single sentences) and prints for each:\n"
  "rows, the fraction of each label and the majority-class accuracy. Given a\n"
  "vocabulary, it also prints the token lengths of [CLS] A [SEP] (B [SEP]):\n"
  "mean, max and how many exceed 64 and 128 tokens, to choose a sequence length.\n\n"
  "  --task T      mrpc or sst2 (default: finetune.task)\n"
  "  --data DIR    the task's data directory (default: finetune.data)\n"
  "  --vocab FILE  vocab.txt for token lengths (default: model.vocab, if set);\n"
  "                model.lowercase and model.max_word_chars apply\n",
  run, 0,
};
