/* bertrain tokenize: BERT's tokenizer as a filter, one output line per input
 * line, for inspecting a vocabulary and comparing against other tokenizers. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "textio.h"
#include "tokenizer.h"
#include "util.h"

/* Output is gathered here and written in large blocks: a line of a few
 * dozen tokens would otherwise cost many small stdio calls. */
typedef struct Out {
  char buf[1 << 16];
  size_t len;
} Out;

static void out_flush(Out *o) {
  if (o->len && fwrite(o->buf, 1, o->len, stdout) != o->len)
    die("cannot write to standard output: %s", strerror(errno));
  o->len = 0;
}

static void out_put(Out *o, const char *s, size_t n) {
  if (o->len + n > sizeof o->buf) {
    out_flush(o);
    if (n > sizeof o->buf) {
      if (fwrite(s, 1, n, stdout) != n) die("cannot write to standard output: %s", strerror(errno));
      return;
    }
  }
  memcpy(o->buf + o->len, s, n);
  o->len += n;
}

/* Writes id in decimal at dst; returns the number of digits. */
static size_t format_id(char *dst, uint32_t id) {
  char tmp[10];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + id % 10);
    id /= 10;
  } while (id);
  for (size_t i = 0; i < n; i++) dst[i] = tmp[n - 1 - i];
  return n;
}

static void write_ids(Out *o, const int32_t *ids, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (o->len + 12 > sizeof o->buf) out_flush(o);
    if (i) o->buf[o->len++] = ' ';
    o->len += format_id(o->buf + o->len, (uint32_t)ids[i]);
  }
  out_put(o, "\n", 1);
}

static void write_tokens(Out *o, const Vocab *v, const size_t *token_len, const int32_t *ids,
                         size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (i) out_put(o, " ", 1);
    out_put(o, v->tokens[ids[i]], token_len[ids[i]]);
  }
  out_put(o, "\n", 1);
}

static int run(int argc, char **argv) {
  const char *vocab_path = NULL, *input = "-";
  int as_ids = 0, cased = 0;
  const CliOpt opts[] = {
    {"vocab", OPT_STRING, &vocab_path},
    {"ids", OPT_FLAG, &as_ids},
    {"cased", OPT_FLAG, &cased},
    {"input", OPT_STRING, &input},
  };
  Config cfg;
  int first = cli_parse(&CMD_TOKENIZE, argc, argv, opts, ARRAY_LEN(opts), &cfg);
  if (first < argc)
    die("tokenize: unexpected argument '%s' (input goes on stdin or --input FILE)", argv[first]);
  Vocab *v = vocab_load(vocab_path ? vocab_path : cfg.model.vocab);
  Tokenizer *t = tokenizer_new(v, cased ? 0 : cfg.model.lowercase, cfg.model.max_word_chars);
  size_t *token_len = xmalloc((size_t)v->size * sizeof *token_len);
  for (int i = 0; i < v->size; i++) token_len[i] = strlen(v->tokens[i]);

  LineReader *r = lines_open(input);
  const char *name = strcmp(input, "-") == 0 ? "<stdin>" : input;
  /* Someone typing lines wants each answer at once, not at the end. */
  int interactive = strcmp(input, "-") == 0 && isatty(STDIN_FILENO);
  Out *o = xmalloc(sizeof *o);
  o->len = 0;
  int32_t *ids = NULL;
  size_t cap = 0, len;
  char *line;
  while ((line = lines_next(r, &len))) {
    if (!utf8_valid(line, len)) die("%s:%ld: invalid UTF-8", name, lines_number(r));
    size_t n = tokenizer_encode(t, line, len, &ids, &cap, 0);
    if (as_ids) write_ids(o, ids, n);
    else write_tokens(o, v, token_len, ids, n);
    if (interactive) {
      out_flush(o);
      fflush(stdout);
    }
  }
  out_flush(o);
  if (fflush(stdout) != 0 || ferror(stdout))
    die("cannot write to standard output: %s", strerror(errno));
  lines_close(r);
  free(o);
  free(ids);
  free(token_len);
  tokenizer_free(t);
  vocab_free(v);
  config_free(&cfg);
  return 0;
}

const Command CMD_TOKENIZE = {
  "tokenize", "split text into WordPiece tokens (or ids) with BERT's tokenizer",
  "usage: bertrain tokenize [--vocab FILE] [--ids] [--cased] [--input FILE]\n\n"
  "Reads lines of UTF-8 text from standard input (or --input FILE, which may be\n"
  "xz-compressed: FILE.xz) and writes, for each input line, one line with its\n"
  "WordPiece tokens separated by spaces (an empty line for an empty one).\n"
  "The tokenizer is BERT's: text cleaning, CJK ideographs split apart,\n"
  "whitespace and punctuation splitting, lower-casing with accent stripping\n"
  "unless cased, then greedy longest-match WordPiece; a word that cannot be\n"
  "split, or is longer than model.max_word_chars characters, becomes [UNK].\n\n"
  "options:\n"
  "  --vocab FILE   the vocabulary (vocab.txt; default: model.vocab)\n"
  "  --ids          write token ids instead of tokens\n"
  "  --cased        keep case and accents (default: model.lowercase)\n"
  "  --input FILE   read FILE instead of standard input\n"
  "  --config FILE, --set section.key=value   as for every command\n\n"
  "Invalid UTF-8 in the input is an error naming the line; the vocabulary must\n"
  "contain [UNK].\n",
  run, 0,
};
