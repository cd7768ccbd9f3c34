/* bertrain prep: pre-training shards from a text corpus, in parallel under
 * MPI with the same output whatever the number of ranks.
 *
 * Work is cut into units, one per (pass, document), each drawing from its own
 * random streams (prep.h). The units are put in one seeded order; a counting
 * pass tells how many instances each unit makes, and shard s gets a
 * contiguous run of units holding about total/shards instances. Rank r then
 * writes the shards s with s % size == r, one at a time in memory, its rows
 * shuffled by a stream keyed by s. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <mpi.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "prep.h"
#include "rng.h"
#include "shard.h"
#include "textio.h"
#include "tokenizer.h"
#include "util.h"
#include "vocab.h"

static void check_mpi(int rc, const char *what) {
  if (rc != MPI_SUCCESS) die("%s failed (MPI error %d)", what, rc);
}

static void barrier(void) {
  if (mpi_active() && g_size > 1) check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
}

/* For errors every rank detects alike: rank 0 says it once and aborts the
 * job; the other ranks wait to be ended with it. */
NORETURN PRINTF_LIKE(1, 2) static void die_all(const char *fmt, ...) {
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (g_rank == 0 || !mpi_active()) die("%s", msg);
  MPI_Barrier(MPI_COMM_WORLD); /* never completes: rank 0 aborts */
  exit(1);
}

/* The shard being written, for the SIGTERM handler: when another rank
 * fails, MPI ends this one with SIGTERM and die()'s clean-up never runs. */
static char g_writing[PATH_MAX];

static void on_term(int sig) {
  (void)sig;
  if (g_writing[0]) unlink(g_writing);
  _exit(1);
}

/* ---- shard files in the output directory ---- */

/* Index of a "shard-NNNNN.h5" name, or -1. */
static long shard_index_of(const char *name) {
  if (strncmp(name, "shard-", 6) != 0) return -1;
  const char *p = name + 6;
  long v = 0;
  int digits = 0;
  for (; *p >= '0' && *p <= '9' && digits < 9; p++, digits++) v = v * 10 + (*p - '0');
  return digits > 0 && strcmp(p, ".h5") == 0 ? v : -1;
}

static void shard_path(char *buf, size_t n, const char *dir, long index) {
  if (snprintf(buf, n, "%s/shard-%05ld.h5", dir, index) >= (int)n) die("path too long: %s", dir);
}

/* Calls fn on each existing shard file of dir with index >= from. Returns how many. */
static int each_old_shard(const char *dir, long from, void (*fn)(const char *path)) {
  DIR *d = opendir(dir);
  if (!d) die("cannot read directory %s: %s", dir, strerror(errno));
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    long i = shard_index_of(e->d_name);
    if (i < from) continue;
    n++;
    if (fn) {
      char path[PATH_MAX];
      if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
        die("path too long: %s", dir);
      fn(path);
    }
  }
  closedir(d);
  return n;
}

static void remove_shard(const char *path) {
  if (unlink(path) != 0) die("cannot remove old shard %s: %s", path, strerror(errno));
}

/* ---- the plan: units, their instance counts, shard boundaries ---- */

typedef struct Plan {
  size_t n_units;
  uint32_t *units;   /* unit = pass * n_docs + doc, in the seeded order */
  uint32_t *counts;  /* instances of units[i] */
  size_t *bound;     /* shard s holds units[bound[s] .. bound[s + 1]) */
  uint64_t *shard_n; /* instances of shard s */
  uint64_t total;
} Plan;

static void count_units(Plan *pl, const Corpus *c, const PrepParams *p) {
  PrepScratch *w = prep_scratch_new();
  pl->counts = xcalloc(pl->n_units, sizeof *pl->counts);
  for (size_t i = (size_t)g_rank; i < pl->n_units; i += (size_t)g_size) {
    uint32_t u = pl->units[i];
    size_t n = prep_document(c, p, u / (uint32_t)c->n_docs, u % c->n_docs, w, NULL);
    if (n > UINT32_MAX) die("document %zu makes too many instances", (size_t)(u % c->n_docs));
    pl->counts[i] = (uint32_t)n;
  }
  prep_scratch_free(w);
  if (!mpi_active() || g_size == 1) return;
  size_t step = (size_t)1 << 26;
  for (size_t off = 0; off < pl->n_units; off += step) {
    int n = (int)(pl->n_units - off < step ? pl->n_units - off : step);
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, pl->counts + off, n, MPI_UINT32_T, MPI_SUM,
                            MPI_COMM_WORLD), "MPI_Allreduce of the instance counts");
  }
}

static void make_plan(Plan *pl, const Corpus *c, const PrepParams *p, int dupe, int shards) {
  uint64_t n = (uint64_t)c->n_docs * (uint64_t)dupe;
  if (c->n_docs > UINT32_MAX || n > UINT32_MAX)
    die_all("%zu documents x dupe_factor %d is too many work units (at most 2^32)", c->n_docs, dupe);
  pl->n_units = (size_t)n;
  pl->units = xmalloc(pl->n_units * sizeof *pl->units);
  for (size_t i = 0; i < pl->n_units; i++) pl->units[i] = (uint32_t)i;
  Rng r;
  rng_init(&r, p->seed, PREP_STREAM_UNITS, 0);
  rng_shuffle(&r, pl->units, pl->n_units, sizeof *pl->units);
  count_units(pl, c, p);

  pl->total = 0;
  for (size_t i = 0; i < pl->n_units; i++) pl->total += pl->counts[i];
  if (pl->total < (uint64_t)shards)
    die_all("the corpus makes only %llu instances, fewer than data.shards = %d; use fewer shards",
            (unsigned long long)pl->total, shards);
  pl->bound = xmalloc(((size_t)shards + 1) * sizeof *pl->bound);
  pl->shard_n = xcalloc((size_t)shards, sizeof *pl->shard_n);
  uint64_t cum = 0, prev = 0;
  size_t i = 0;
  pl->bound[0] = 0;
  for (int s = 0; s < shards; s++) {
    int last = s == shards - 1;
    uint64_t target = pl->total * (uint64_t)(s + 1) / (uint64_t)shards;
    while (i < pl->n_units && (cum < target || last)) cum += pl->counts[i++];
    pl->bound[s + 1] = i;
    pl->shard_n[s] = cum - prev;
    prev = cum;
    if (pl->shard_n[s] > UINT32_MAX)
      die_all("shard %d would hold %llu instances, more than 2^32; use more shards", s,
              (unsigned long long)pl->shard_n[s]);
    if (pl->shard_n[s] == 0)
      die_all("cannot split %llu instances from %zu documents into %d non-empty shards "
              "(a few documents make most instances); use fewer shards",
              (unsigned long long)pl->total, c->n_docs, shards);
  }
}

static void free_plan(Plan *pl) {
  free(pl->units);
  free(pl->counts);
  free(pl->bound);
  free(pl->shard_n);
}

/* ---- writing ---- */

typedef struct Job {
  const Corpus *corpus;
  const PrepParams *params;
  const Plan *plan;
  ShardAttrs attrs;
  const char *dir;
  int shards;
} Job;

static void write_shard(const Job *j, int s, PrepScratch *w) {
  const Plan *pl = j->plan;
  size_t n = (size_t)pl->shard_n[s];
  Instances in;
  instances_alloc(&in, n, j->params->seq_length, j->params->max_predictions);
  /* Instance k of the shard (in unit order) goes to row rows[k]. */
  uint32_t *rows = xmalloc(n * sizeof *rows);
  for (size_t k = 0; k < n; k++) rows[k] = (uint32_t)k;
  Rng r;
  rng_init(&r, j->params->seed, PREP_STREAM_SHARD, (uint32_t)s);
  rng_shuffle(&r, rows, n, sizeof *rows);
  size_t k = 0;
  for (size_t i = pl->bound[s]; i < pl->bound[s + 1]; i++) {
    uint32_t u = pl->units[i];
    PrepOut out = {&in, rows + k, 0, pl->counts[i]};
    size_t made = prep_document(j->corpus, j->params, u / (uint32_t)j->corpus->n_docs,
                                u % j->corpus->n_docs, w, &out);
    if (made != pl->counts[i])
      die("internal error: unit %u made %zu instances, counted %u", u, made, pl->counts[i]);
    k += made;
  }
  char path[PATH_MAX];
  shard_path(path, sizeof path, j->dir, s);
  ShardAttrs a = j->attrs;
  a.shard_index = s;
  if (snprintf(g_writing, sizeof g_writing, "%s.tmp", path) >= (int)sizeof g_writing)
    die("path too long: %s", path);
  shard_write(path, &in, &a);
  g_writing[0] = '\0';
  free(rows);
  instances_free(&in);
}

static uint64_t write_shards(const Job *j, double start) {
  PrepScratch *w = prep_scratch_new();
  uint64_t mine = 0;
  double last = now_seconds();
  for (int s = g_rank; s < j->shards; s += g_size) {
    write_shard(j, s, w);
    mine += j->plan->shard_n[s];
    double t = now_seconds();
    if (t - last >= 5.0) {
      last = t;
      /* Rank 0's share, scaled: the ranks write at about the same rate. */
      info("prep: shard %d of %d written; about %.0f instances/s over %d rank(s)", s + 1,
           j->shards, (double)mine * g_size / (t - start), g_size);
    }
  }
  prep_scratch_free(w);
  return mine;
}

/* ---- setup ---- */

static uint8_t *piece_flags(const Vocab *v) {
  uint8_t *f = xcalloc((size_t)v->size, 1);
  for (int i = 0; i < v->size; i++) f[i] = strncmp(v->tokens[i], "##", 2) == 0;
  return f;
}

static void write_vocab_copy(const Vocab *v, const char *dir) {
  size_t len = 0;
  for (int i = 0; i < v->size; i++) len += strlen(v->tokens[i]) + 1;
  char *text = xmalloc(len + 1), *p = text;
  for (int i = 0; i < v->size; i++) {
    size_t n = strlen(v->tokens[i]);
    memcpy(p, v->tokens[i], n);
    p[n] = '\n';
    p += n + 1;
  }
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/vocab.txt", dir) >= (int)sizeof path) die("path too long: %s", dir);
  write_file_atomic(path, text, len);
  free(text);
}

static Vocab *load_vocab(const char *path) {
  Vocab *v = vocab_load(path);
  const char *need[] = {"[CLS]", "[SEP]", "[MASK]", "[UNK]"};
  for (size_t i = 0; i < ARRAY_LEN(need); i++) vocab_require(v, need[i], "prep");
  return v;
}

/* Rank 0 checks the inputs first, so a mistake is reported once. */
static void check_inputs(const Config *cfg, char **files, int n_files, int force) {
  for (int i = 0; i < n_files; i++) {
    FILE *f = fopen(files[i], "rb");
    if (!f) die("cannot open corpus file %s: %s", files[i], strerror(errno));
    fclose(f);
  }
  vocab_free(load_vocab(cfg->model.vocab));
  make_dirs(cfg->data.dir);
  int old = each_old_shard(cfg->data.dir, 0, NULL);
  if (old && !force)
    die("%s already holds %d shard file(s) (shard-*.h5); pass --force to replace them",
        cfg->data.dir, old);
}

static void check_params(const Config *cfg) {
  if (cfg->data.seq_length < 5)
    die("data.seq_length = %d is too small: an instance needs [CLS] A [SEP] B [SEP] with "
        "at least 2 tokens of text", cfg->data.seq_length);
  if (cfg->data.max_predictions > cfg->data.seq_length)
    die("data.max_predictions = %d exceeds data.seq_length = %d", cfg->data.max_predictions,
        cfg->data.seq_length);
}

static char *join(const StrList *l) {
  size_t n = 1;
  for (int i = 0; i < l->count; i++) n += strlen(l->items[i]) + 1;
  char *s = xcalloc(n, 1);
  for (int i = 0; i < l->count; i++) {
    if (i) strcat(s, ",");
    strcat(s, l->items[i]);
  }
  return s;
}

static void override(Config *cfg, const char *key, const char *value) {
  size_t n = strlen(key) + strlen(value) + 2;
  char *a = xmalloc(n);
  snprintf(a, n, "%s=%s", key, value);
  config_set(cfg, a);
  free(a);
}

static int run(int argc, char **argv) {
  double t0 = now_seconds();
  Config cfg;
  StrList corpus = {0};
  const char *vocab_path = NULL, *out_dir = NULL;
  int force = 0;
  CliOpt opts[] = {
    {"corpus", OPT_LIST, &corpus}, {"vocab", OPT_STRING, &vocab_path},
    {"out", OPT_STRING, &out_dir}, {"force", OPT_FLAG, &force},
  };
  int first = cli_parse(&CMD_PREP, argc, argv, opts, (int)ARRAY_LEN(opts), &cfg);
  if (first < argc) die("prep: unexpected argument '%s' (see 'bertrain help prep')", argv[first]);
  if (corpus.count) {
    char *s = join(&corpus);
    override(&cfg, "data.corpus", s);
    free(s);
  }
  if (vocab_path) override(&cfg, "model.vocab", vocab_path);
  if (out_dir) override(&cfg, "data.dir", out_dir);
  int n_files = 0;
  char **files = split_list(cfg.data.corpus, &n_files);
  if (n_files == 0) die("prep: no corpus given (pass --corpus FILE... or set data.corpus)");
  if (!cfg.model.vocab[0]) die("prep: no vocabulary given (pass --vocab FILE or set model.vocab)");
  if (!cfg.data.dir[0]) die("prep: no output directory given (pass --out DIR or set data.dir)");
  check_params(&cfg);
  signal(SIGTERM, on_term);

  if (g_rank == 0) check_inputs(&cfg, files, n_files, force);
  barrier();
  Vocab *v = load_vocab(cfg.model.vocab);
  Tokenizer *tok = tokenizer_new(v, cfg.model.lowercase, cfg.model.max_word_chars);
  Corpus c;
  uint64_t bytes = corpus_load(&c, files, n_files, tok, v->size);
  tokenizer_free(tok);
  double t_read = now_seconds() - t0;
  if (c.n_docs == 0)
    die_all("the corpus (%s) has no documents with tokens", cfg.data.corpus);
  info("prep: %zu documents, %zu sentences, %zu tokens from %.1f MB in %.1f s (%.1f MB/s)",
       c.n_docs, c.n_sents, c.n_tokens, (double)bytes / 1e6, t_read,
       (double)bytes / 1e6 / (t_read > 0 ? t_read : 1e-9));

  uint8_t *pieces = piece_flags(v);
  PrepParams p = {
    cfg.data.seq_length, cfg.data.max_predictions, cfg.data.masked_lm_prob,
    cfg.data.short_seq_prob, cfg.data.whole_word_mask, (uint64_t)cfg.data.seed,
    v->size, v->cls, v->sep, v->mask, pieces,
  };
  Plan plan = {0};
  make_plan(&plan, &c, &p, cfg.data.dupe_factor, cfg.data.shards);
  double t_gen = now_seconds();
  Job job = {&c, &p, &plan, {0}, cfg.data.dir, cfg.data.shards};
  ShardAttrs *a = &job.attrs;
  a->format_version = SHARD_FORMAT_VERSION;
  a->vocab_size = v->size;
  a->vocab_hash = v->hash;
  a->seq_length = cfg.data.seq_length;
  a->max_predictions = cfg.data.max_predictions;
  a->seed = cfg.data.seed;
  a->dupe_factor = cfg.data.dupe_factor;
  a->masked_lm_prob = cfg.data.masked_lm_prob;
  a->short_seq_prob = cfg.data.short_seq_prob;
  a->whole_word_mask = cfg.data.whole_word_mask;
  a->num_shards = cfg.data.shards;
  write_shards(&job, t_gen);
  barrier();

  if (g_rank == 0) {
    config_write_to_dir(&cfg, cfg.data.dir);
    write_vocab_copy(v, cfg.data.dir);
    if (force) each_old_shard(cfg.data.dir, cfg.data.shards, remove_shard);
    double t = now_seconds();
    info("prep: %zu documents, %llu instances, %d shards in %s in %.1f s "
         "(writing %.0f instances/s on %d rank(s))",
         c.n_docs, (unsigned long long)plan.total, cfg.data.shards, cfg.data.dir, t - t0,
         (double)plan.total / (t - t_gen > 0 ? t - t_gen : 1e-9), g_size);
  }
  free_plan(&plan);
  free(pieces);
  corpus_free(&c);
  vocab_free(v);
  free_list(files);
  strlist_free(&corpus);
  config_free(&cfg);
  return 0;
}

const Command CMD_PREP = {
  "prep", "make HDF5 pre-training shards (masked LM + next sentence) from a text corpus",
  "usage: bertrain prep --corpus FILE... --vocab vocab.txt --out DIR [--force]\n"
  "       mpirun -np N bertrain prep ...\n\n"
  "Makes BERT pre-training instances as Google's create_pretraining_data.py does\n"
  "(sentence pairs, half of them with a random next segment; masked tokens) and\n"
  "writes them as HDF5 shards in NVIDIA DeepLearningExamples' layout:\n"
  "DIR/shard-00000.h5 ... with input_ids, input_mask, segment_ids,\n"
  "masked_lm_positions, masked_lm_ids and next_sentence_labels. DIR also gets\n"
  "config.ini (the settings used) and vocab.txt (a copy of the vocabulary).\n\n"
  "Input: plain text or .xz, one sentence per line, a blank line between\n"
  "documents; the end of a file also ends a document. The output is the same\n"
  "for any number of MPI ranks.\n\n"
  "options:\n"
  "  --corpus FILE...  corpus files (overrides data.corpus)\n"
  "  --vocab FILE      WordPiece vocabulary; needs [CLS] [SEP] [MASK] [UNK]\n"
  "                    (overrides model.vocab)\n"
  "  --out DIR         output directory (overrides data.dir)\n"
  "  --force           replace the shards DIR already holds (otherwise prep refuses)\n"
  "  --config FILE     read settings from an INI file\n"
  "  --set KEY=VALUE   set one setting, e.g. --set data.seq_length=512\n\n"
  "settings used: data.seq_length, data.max_predictions, data.masked_lm_prob,\n"
  "data.short_seq_prob, data.dupe_factor, data.whole_word_mask, data.seed,\n"
  "data.shards, model.lowercase, model.max_word_chars ('bertrain help config').\n",
  run, 1,
};
