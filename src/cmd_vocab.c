/* bertrain vocab: trains a WordPiece vocabulary (vocab.txt) on corpus files:
 * counts the words of BERT's basic tokenizer, then merges pieces as in
 * vocab_train.h. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "textio.h"
#include "tokenizer.h"
#include "util.h"
#include "vocab.h"
#include "vocab_train.h"

/* Seconds between progress lines on long inputs. */
#define PROGRESS_SECONDS 2.0

typedef struct Progress {
  double start, last;
} Progress;

static void add_word(const char *word, size_t len, void *user) {
  word_counts_add(user, word, len, 1);
}

/* Counts the words of one file; returns its number of lines. */
static long count_file(const char *path, int lowercase, WordCounts *wc, Progress *p) {
  LineReader *r = lines_open(path);
  double start = now_seconds();
  char *line;
  size_t len;
  long lines = 0;
  while ((line = lines_next(r, &len))) {
    require_utf8(r, line, len);
    basic_tokenize(line, len, lowercase, add_word, wc);
    if (++lines % 4096 != 0) continue;
    double now = now_seconds();
    if (now - p->last < PROGRESS_SECONDS) continue;
    p->last = now;
    info("vocab: %s: %ld lines (%.0f lines/s), %zu distinct words so far", path, lines,
         lines / (now - start), word_counts_distinct(wc));
  }
  lines_close(r);
  return lines;
}

static void train_progress(int size, int target, int merges, void *user) {
  Progress *p = user;
  double now = now_seconds();
  if (now - p->last < PROGRESS_SECONDS) return;
  p->last = now;
  info("vocab: %d of %d tokens (%d merges)", size, target, merges);
}

/* Fails before the long work when the output cannot be written. */
static void check_writable(const char *out) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", out);
  char *slash = strrchr(dir, '/');
  if (!slash) strcpy(dir, ".");
  else if (slash == dir) dir[1] = '\0';
  else *slash = '\0';
  if (access(dir, W_OK) != 0) die("vocab: cannot write %s: %s: %s", out, dir, strerror(errno));
}

static void write_vocab(const char *out, char **tokens, int n) {
  size_t len;
  char *buf = vocab_join(tokens, n, &len);
  write_file_atomic(out, buf, len);
  free(buf);
}

static int run(int argc, char **argv) {
  Config cfg;
  StrList corpus = {0};
  int size = INT_MIN, min_frequency = INT_MIN, cased = 0;
  const char *out = NULL;
  CliOpt opts[] = {
    {"corpus", OPT_LIST, &corpus},       {"size", OPT_INT, &size},
    {"out", OPT_STRING, &out},           {"cased", OPT_FLAG, &cased},
    {"min-frequency", OPT_INT, &min_frequency},
  };
  int first = cli_parse(&CMD_VOCAB, argc, argv, opts, (int)ARRAY_LEN(opts), &cfg);
  if (first < argc) die("vocab: unexpected argument '%s' (see 'bertrain help vocab')", argv[first]);
  if (size == INT_MIN) size = cfg.data.vocab_size;
  if (size < 1) die("vocab: --size must be positive (got %d)", size);
  if (min_frequency == INT_MIN) min_frequency = cfg.data.vocab_min_frequency;
  if (min_frequency < 1) die("vocab: --min-frequency must be at least 1 (got %d)", min_frequency);
  int lowercase = cased ? 0 : cfg.model.lowercase;
  if (!out && cfg.model.vocab[0]) out = cfg.model.vocab;
  if (!out) die("vocab: no output file: pass --out FILE (or set model.vocab)");

  int nfiles = corpus.count;
  char **from_config = NULL;
  const char **files = corpus.items;
  if (nfiles == 0) {
    from_config = split_list(cfg.data.corpus, &nfiles);
    files = (const char **)from_config;
  }
  if (nfiles == 0) die("vocab: no corpus: pass --corpus FILE... (or set data.corpus)");
  /* Open every file first, so that a wrong name fails before any counting. */
  for (int i = 0; i < nfiles; i++)
    if (strcmp(files[i], "-") != 0) lines_close(lines_open(files[i]));
  check_writable(out);

  Progress p = {now_seconds(), now_seconds()};
  WordCounts *wc = word_counts_new();
  long lines = 0;
  for (int i = 0; i < nfiles; i++) lines += count_file(files[i], lowercase, wc, &p);
  if (word_counts_total(wc) == 0)
    die("vocab: the corpus (%s%s) has no words", files[0], nfiles > 1 ? ", ..." : "");
  info("vocab: %ld lines, %lld words, %zu distinct, counted in %.1f s", lines,
       (long long)word_counts_total(wc), word_counts_distinct(wc), now_seconds() - p.start);

  int min_size = vocab_train_min_size(wc);
  if (size < min_size)
    die("vocab: a vocabulary of %d tokens is too small for this corpus: its %d special tokens "
        "and %d-token alphabet need at least %d (use --size %d or more)",
        size, VOCAB_NUM_SPECIALS, min_size - VOCAB_NUM_SPECIALS, min_size, min_size);
  double train_start = now_seconds();
  VocabTrainOptions o = {size, min_frequency, train_progress, &p};
  int n;
  char **tokens = vocab_train(wc, &o, &n);
  if (n < size)
    warn("vocab: stopped at %d of %d tokens: no pair of pieces is left that was seen at least "
         "%d times (--min-frequency)", n, size, min_frequency);
  write_vocab(out, tokens, n);
  info("vocab: wrote %s: %d tokens (%d alphabet, %d merged) in %.1f s (training %.1f s)", out, n,
       min_size - VOCAB_NUM_SPECIALS, n - min_size, now_seconds() - p.start,
       now_seconds() - train_start);

  vocab_tokens_free(tokens, n);
  word_counts_free(wc);
  free_list(from_config);
  strlist_free(&corpus);
  config_free(&cfg);
  return 0;
}

const Command CMD_VOCAB = {
  "vocab", "train a WordPiece vocabulary (vocab.txt) on corpus files",
  "usage: bertrain vocab [--corpus FILE...] [--size N] [--out FILE] [--cased]\n"
  "                      [--min-frequency N]\n\n"
  "Trains a WordPiece vocabulary on the corpus and writes it one token per line,\n"
  "as BERT's vocab.txt: [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0-4), then every\n"
  "character of the corpus, then every character seen inside a word with the\n"
  "\"##\" continuation prefix, then merged pieces in the order they were learned.\n"
  "The words are those of BERT's basic tokenizer; training repeatedly merges the\n"
  "most frequent pair of adjacent pieces (as Hugging Face's WordPieceTrainer does),\n"
  "ties going to the byte-wise smallest merged piece, so the same corpus always\n"
  "gives the same file. Every corpus word then splits into pieces without [UNK].\n\n"
  "options:\n"
  "  --corpus FILE...    corpus text files, plain or .xz, \"-\" for standard input\n"
  "                      (default: data.corpus)\n"
  "  --size N            vocabulary size, special tokens included (default:\n"
  "                      data.vocab_size); fewer tokens are written, with a\n"
  "                      warning, when no pair is left to merge\n"
  "  --out FILE          the vocabulary file to write (default: model.vocab)\n"
  "  --cased             keep case and accents (default: as model.lowercase,\n"
  "                      which lower-cases and strips accents unless false)\n"
  "  --min-frequency N   never merge a pair seen fewer than N times (default:\n"
  "                      data.vocab_min_frequency)\n\n"
  "Progress goes to standard error. The file is written whole or not at all.\n",
  run, 0,
};
