#define _POSIX_C_SOURCE 200809L
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef enum { K_INT, K_LONG, K_FLOAT, K_BOOL, K_STRING } KeyType;

typedef struct Key {
  const char *section, *name;
  KeyType type;
  size_t offset;
  const char *def;
  double min, max;      /* numeric range, inclusive */
  const char *choices;  /* "a|b|c" for strings with fixed values, else NULL */
  const char *help;
} Key;

#define OFF(field) offsetof(Config, field)
#define NOLIM -1e300, 1e300

static const Key KEYS[] = {
  {"model", "vocab", K_STRING, OFF(model.vocab), "", NOLIM, NULL,
   "WordPiece vocabulary file (BERT vocab.txt, one token per line)"},
  {"model", "lowercase", K_BOOL, OFF(model.lowercase), "true", NOLIM, NULL,
   "lower-case and strip accents before WordPiece (uncased BERT)"},
  {"model", "max_word_chars", K_INT, OFF(model.max_word_chars), "100", 1, 100000, NULL,
   "words longer than this many characters become [UNK]"},
  {"model", "layers", K_INT, OFF(model.layers), "4", 1, 1000, NULL,
   "number of transformer layers (num_hidden_layers)"},
  {"model", "hidden", K_INT, OFF(model.hidden), "256", 1, 65536, NULL,
   "hidden size (hidden_size); must be a multiple of model.heads"},
  {"model", "heads", K_INT, OFF(model.heads), "4", 1, 4096, NULL,
   "attention heads per layer (num_attention_heads)"},
  {"model", "intermediate", K_INT, OFF(model.intermediate), "1024", 1, 1048576, NULL,
   "feed-forward inner size (intermediate_size)"},
  {"model", "max_position", K_INT, OFF(model.max_position), "512", 1, 1048576, NULL,
   "longest sequence the position embeddings allow (max_position_embeddings)"},
  {"model", "type_vocab", K_INT, OFF(model.type_vocab), "2", 1, 1024, NULL,
   "number of segment (token type) embeddings (type_vocab_size)"},
  {"model", "dropout", K_FLOAT, OFF(model.dropout), "0.1", 0, 0.99, NULL,
   "dropout probability of embeddings and hidden layers (hidden_dropout_prob)"},
  {"model", "attention_dropout", K_FLOAT, OFF(model.attention_dropout), "0.1", 0, 0.99, NULL,
   "dropout probability of attention weights (attention_probs_dropout_prob)"},
  {"model", "initializer_range", K_FLOAT, OFF(model.initializer_range), "0.02", 1e-6, 1, NULL,
   "std of the normal initialisation of weights, truncated at 2 std"},

  {"data", "corpus", K_STRING, OFF(data.corpus), "", NOLIM, NULL,
   "pre-training corpus files, comma-separated (one sentence per line, blank line between documents; .xz allowed)"},
  {"data", "dir", K_STRING, OFF(data.dir), "data/prepared", NOLIM, NULL,
   "directory of the HDF5 pre-training shards (prep writes it)"},
  {"data", "shards", K_INT, OFF(data.shards), "4", 1, 1000000, NULL,
   "number of HDF5 shard files prep writes"},
  {"data", "seq_length", K_INT, OFF(data.seq_length), "128", 8, 65536, NULL,
   "maximum sequence length of a pre-training instance, in tokens"},
  {"data", "max_predictions", K_INT, OFF(data.max_predictions), "20", 1, 65536, NULL,
   "maximum number of masked positions per instance"},
  {"data", "masked_lm_prob", K_FLOAT, OFF(data.masked_lm_prob), "0.15", 0, 1, NULL,
   "fraction of tokens masked"},
  {"data", "short_seq_prob", K_FLOAT, OFF(data.short_seq_prob), "0.1", 0, 1, NULL,
   "probability of a shorter target length for an instance"},
  {"data", "dupe_factor", K_INT, OFF(data.dupe_factor), "5", 1, 1000, NULL,
   "passes over the corpus, each with different masks"},
  {"data", "whole_word_mask", K_BOOL, OFF(data.whole_word_mask), "false", NOLIM, NULL,
   "mask all pieces of a word together"},
  {"data", "seed", K_LONG, OFF(data.seed), "12345", 0, 9.2e18, NULL,
   "random seed of prep (instances, next-sentence choice, masks)"},
  {"data", "vocab_size", K_INT, OFF(data.vocab_size), "8192", 16, 10000000, NULL,
   "vocabulary size trained by 'bertrain vocab' unless --size is given"},
  {"data", "vocab_min_frequency", K_INT, OFF(data.vocab_min_frequency), "2", 1, 1000000000, NULL,
   "vocab training ignores pairs seen fewer times than this"},
  {"data", "cache_mb", K_INT, OFF(data.cache_mb), "1024", 0, 1048576, NULL,
   "MB of decompressed shard chunks training keeps in memory (random rows otherwise decompress a whole chunk each)"},

  {"pretrain", "epochs", K_INT, OFF(pretrain.epochs), "200", 1, 100000000, NULL,
   "epochs of pre-training; the run is epochs x steps_per_epoch optimizer steps"},
  {"pretrain", "steps_per_epoch", K_INT, OFF(pretrain.steps_per_epoch), "10000", 0, 2000000000, NULL,
   "optimizer steps per epoch; 0 = one pass over the data (samples / batch_size)"},
  {"pretrain", "milestone_epochs", K_INT, OFF(pretrain.milestone_epochs), "20", 1, 100000000, NULL,
   "write checkpoints/epoch-NNNN.h5 (kept) at the end of every this many epochs"},
  {"pretrain", "skip_nonfinite", K_BOOL, OFF(pretrain.skip_nonfinite), "false", NOLIM, NULL,
   "skip a step whose loss or gradient norm is not finite (counted in the log) instead of stopping"},
  {"pretrain", "batch_size", K_INT, OFF(pretrain.batch_size), "256", 1, 100000000, NULL,
   "sequences per optimizer step over all ranks (the global batch)"},
  {"pretrain", "micro_batch", K_INT, OFF(pretrain.micro_batch), "32", 1, 100000000, NULL,
   "sequences per forward/backward pass on each rank; batch_size / (micro_batch x ranks) passes accumulate gradients"},
  {"pretrain", "lr", K_FLOAT, OFF(pretrain.lr), "1e-4", 0, 100, NULL,
   "peak learning rate (after warm-up; then linear decay to zero at the last step)"},
  {"pretrain", "warmup_proportion", K_FLOAT, OFF(pretrain.warmup_proportion), "0.01", 0, 1, NULL,
   "fraction of the steps with a linear warm-up from zero (BERT: 10,000 of 1,000,000)"},
  {"pretrain", "optimizer", K_STRING, OFF(pretrain.optimizer), "adamw", NOLIM, "adamw|lamb",
   "optimizer, with bias correction"},
  {"pretrain", "weight_decay", K_FLOAT, OFF(pretrain.weight_decay), "0.01", 0, 10, NULL,
   "decoupled weight decay of matrices (not biases or LayerNorm)"},
  {"pretrain", "adam_beta1", K_FLOAT, OFF(pretrain.adam_beta1), "0.9", 0, 0.999999, NULL,
   "decay of the optimizer's first moment (the mean gradient)"},
  {"pretrain", "adam_beta2", K_FLOAT, OFF(pretrain.adam_beta2), "0.999", 0, 0.999999, NULL,
   "decay of its second moment (RoBERTa: 0.98 for large batches)"},
  {"pretrain", "adam_epsilon", K_FLOAT, OFF(pretrain.adam_epsilon), "1e-6", 0, 1, NULL,
   "added to the root of the second moment"},
  {"pretrain", "allreduce_bucket_mb", K_FLOAT, OFF(pretrain.bucket_mb), "0", 0, 1e6, NULL,
   "0: all-reduce the gradients in one call after the backward; > 0: in buckets of at least this many MB, each started as soon as the backward has finished it, so that the transfer overlaps the rest of the backward (e.g. 25 on GPUs)"},
  {"pretrain", "max_grad_norm", K_FLOAT, OFF(pretrain.max_grad_norm), "1.0", 0, 1e30, NULL,
   "clip gradients to this global norm; 0 = no clipping"},
  {"pretrain", "log_every", K_INT, OFF(pretrain.log_every), "10", 1, 2000000000, NULL,
   "steps between progress lines (metrics.csv gets every step)"},
  {"pretrain", "init_checkpoint", K_STRING, OFF(pretrain.init_checkpoint), "", NOLIM, NULL,
   "bertrain weights a new run starts from instead of a random initialisation (e.g. a published BERT from 'bertrain import', to pre-train it further on this corpus); same shape, vocabulary and lower-casing as the run; \"\" = random; a resumed run continues from its checkpoint"},

  {"checkpoint", "every_steps", K_INT, OFF(checkpoint.every_steps), "1000", 0, 2000000000, NULL,
   "write checkpoints/latest.h5 every this many steps; 0 = not by steps"},
  {"checkpoint", "every_minutes", K_FLOAT, OFF(checkpoint.every_minutes), "30", 0, 1e9, NULL,
   "write checkpoints/latest.h5 when this many minutes passed since the last checkpoint; 0 = not by time"},

  {"finetune", "task", K_STRING, OFF(finetune.task), "mrpc", NOLIM, "mrpc|sst2",
   "GLUE task of the fine-tuning data"},
  {"finetune", "data", K_STRING, OFF(finetune.data), "data/sample/MRPC", NOLIM, NULL,
   "directory holding the task's train.tsv and dev.tsv (.xz allowed)"},
  {"finetune", "epochs", K_INT, OFF(finetune.epochs), "3", 1, 100000, NULL,
   "passes over the training set"},
  {"finetune", "lr", K_FLOAT, OFF(finetune.lr), "2e-5", 0, 100, NULL,
   "peak learning rate of AdamW (linear warm-up, then linear decay to zero)"},
  {"finetune", "batch_size", K_INT, OFF(finetune.batch_size), "32", 1, 1000000, NULL,
   "sequences per optimizer step"},
  {"finetune", "warmup_proportion", K_FLOAT, OFF(finetune.warmup_proportion), "0.1", 0, 1, NULL,
   "fraction of the steps with a linear warm-up from zero"},
  {"finetune", "seq_length", K_INT, OFF(finetune.seq_length), "128", 3, 65536, NULL,
   "[CLS] A [SEP] B [SEP] is cut to this many tokens, the longer text first"},
  {"finetune", "weight_decay", K_FLOAT, OFF(finetune.weight_decay), "0.01", 0, 10, NULL,
   "decoupled weight decay of matrices (not biases or LayerNorm)"},
  {"finetune", "adam_beta1", K_FLOAT, OFF(finetune.adam_beta1), "0.9", 0, 0.999999, NULL,
   "decay of AdamW's first moment"},
  {"finetune", "adam_beta2", K_FLOAT, OFF(finetune.adam_beta2), "0.999", 0, 0.999999, NULL,
   "decay of AdamW's second moment"},
  {"finetune", "adam_epsilon", K_FLOAT, OFF(finetune.adam_epsilon), "1e-6", 0, 1, NULL,
   "added to the root of the second moment"},
  {"finetune", "max_grad_norm", K_FLOAT, OFF(finetune.max_grad_norm), "1.0", 0, 1e30, NULL,
   "clip gradients to this global norm; 0 = no clipping"},
  {"finetune", "launcher", K_STRING, OFF(finetune.launcher), "inline", NOLIM, "none|inline|process|slurm",
   "how pretrain fine-tunes each milestone checkpoint: not at all, in the training processes, as a separate process (finetune.command), or as a Slurm job (finetune.sbatch)"},
  {"finetune", "tasks", K_STRING, OFF(finetune.tasks), "", NOLIM, NULL,
   "tasks fine-tuned at each milestone, comma-separated, each TASK or TASK:DIR (DIR defaults to finetune.data); \"\" = finetune.task"},
  {"finetune", "command", K_STRING, OFF(finetune.command), "{bertrain} finetune --checkpoint {checkpoint} --task {task} --data {data} --out {out} --set run.seed={seed}", NOLIM, NULL,
   "process launcher's shell command; {bertrain} {checkpoint} {task} {data} {out} {seed} {epoch} {run_dir} are replaced by shell-quoted values; every job's seed is run.seed + its pre-trained epoch"},
  {"finetune", "max_parallel", K_INT, OFF(finetune.max_parallel), "1", 1, 10000, NULL,
   "process launcher: fine-tuning jobs running at once (more wait their turn)"},
  {"finetune", "baseline", K_BOOL, OFF(finetune.baseline), "true", NOLIM, NULL,
   "also fine-tune the initial, untrained weights (pre-trained epoch 0) for comparison"},
  {"finetune", "sbatch", K_STRING, OFF(finetune.sbatch), "slurm/finetune.sbatch", NOLIM, NULL,
   "slurm launcher's job script, submitted with sbatch (arguments: checkpoint, task, data, output directory)"},

  {"run", "seed", K_LONG, OFF(run.seed), "42", 0, 9.2e18, NULL,
   "seed of initialisation, data order and dropout masks"},
  {"run", "dir", K_STRING, OFF(run.dir), "", NOLIM, NULL,
   "run directory for outputs; \"\" = runs/NAME, NAME the last --config file's base name (runs/default without one)"},
  {"run", "threads", K_INT, OFF(run.threads), "0", 0, 4096, NULL,
   "CPU threads; 0 = all cores"},
  {"run", "device", K_STRING, OFF(run.device), "cpu", NOLIM, "cpu|cuda|auto",
   "where training runs: cpu, cuda (each rank on GPU local_rank % GPUs, NCCL between them) or auto (cuda when a GPU is usable)"},
  {"run", "tf32", K_BOOL, OFF(run.tf32), "false", NOLIM, NULL,
   "on GPUs, let matrix products use TF32 tensor cores (about 1e-3 relative error instead of 1e-6, several times faster); no effect on the CPU"},
  {"run", "precision", K_STRING, OFF(run.precision), "fp32", NOLIM, "fp32|bf16",
   "fp32, or bf16: activations stored as bf16, matrix products on bf16 with fp32 accumulation, elementwise math in fp32; weights, their gradients and the optimizer state fp32; bf16 needs run.device = cuda"},
};

static void *field(Config *c, const Key *k) { return (char *)c + k->offset; }
static const void *cfield(const Config *c, const Key *k) { return (const char *)c + k->offset; }

static const Key *find_key(const char *section, const char *name) {
  for (size_t i = 0; i < ARRAY_LEN(KEYS); i++)
    if (strcmp(KEYS[i].section, section) == 0 && strcmp(KEYS[i].name, name) == 0)
      return &KEYS[i];
  return NULL;
}

static int section_exists(const char *section) {
  for (size_t i = 0; i < ARRAY_LEN(KEYS); i++)
    if (strcmp(KEYS[i].section, section) == 0) return 1;
  return 0;
}

static void where(const ConfigSource *src, char *buf, size_t n) {
  if (src->file)
    snprintf(buf, n, "%s:%d", src->file, src->line);
  else
    snprintf(buf, n, "--set %s", src->set);
}

static void list_sections(char *buf, size_t n) {
  buf[0] = '\0';
  const char *last = "";
  for (size_t i = 0; i < ARRAY_LEN(KEYS); i++) {
    if (strcmp(KEYS[i].section, last) == 0) continue;
    last = KEYS[i].section;
    size_t used = strlen(buf);
    snprintf(buf + used, n - used, "%s[%s]", used ? ", " : "", last);
  }
}

static void list_keys(const char *section, char *buf, size_t n) {
  buf[0] = '\0';
  for (size_t i = 0; i < ARRAY_LEN(KEYS); i++) {
    if (strcmp(KEYS[i].section, section) != 0) continue;
    size_t used = strlen(buf);
    snprintf(buf + used, n - used, "%s%s", used ? ", " : "", KEYS[i].name);
  }
}

static int choice_ok(const char *choices, const char *v) {
  size_t n = strlen(v);
  for (const char *p = choices; *p;) {
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    if (len == n && strncmp(p, v, n) == 0) return 1;
    p += len + (bar ? 1 : 0);
  }
  return 0;
}

/* Parses value into the key's field; returns NULL or a description of what is wrong. */
static const char *assign(Config *c, const Key *k, const char *value, char *why, size_t n) {
  long lv;
  double dv;
  int bv;
  switch (k->type) {
  case K_INT:
  case K_LONG:
    if (parse_long(value, &lv) != 0) return "expected an integer";
    if ((double)lv < k->min || (double)lv > k->max ||
        (k->type == K_INT && (lv < INT_MIN || lv > INT_MAX))) {
      snprintf(why, n, "out of range [%.17g, %.17g]", k->min, k->max);
      return why;
    }
    if (k->type == K_INT) *(int *)field(c, k) = (int)lv;
    else *(long *)field(c, k) = lv;
    return NULL;
  case K_FLOAT:
    if (parse_double(value, &dv) != 0) return "expected a number";
    if (dv < k->min || dv > k->max) {
      snprintf(why, n, "out of range [%g, %g]", k->min, k->max);
      return why;
    }
    *(double *)field(c, k) = dv;
    return NULL;
  case K_BOOL:
    if (parse_bool(value, &bv) != 0) return "expected true or false";
    *(int *)field(c, k) = bv;
    return NULL;
  case K_STRING:
    if (k->choices && !choice_ok(k->choices, value)) {
      snprintf(why, n, "expected one of %s", k->choices);
      return why;
    }
    free(*(char **)field(c, k));
    *(char **)field(c, k) = xstrdup(value);
    return NULL;
  }
  return "unknown key type";
}

static void set_value(Config *c, const ConfigSource *src, const char *section,
                      const char *name, const char *value) {
  char at[1024], list[2048], why[256];
  where(src, at, sizeof at);
  if (!section_exists(section)) {
    list_sections(list, sizeof list);
    die("%s: unknown section [%s]; valid sections: %s", at, section, list);
  }
  const Key *k = find_key(section, name);
  if (!k) {
    list_keys(section, list, sizeof list);
    die("%s: unknown key '%s' in [%s]; valid keys: %s", at, name, section, list);
  }
  const char *err = assign(c, k, value, why, sizeof why);
  if (err) die("%s: bad value '%s' for %s.%s: %s", at, value, section, name, err);
}

void config_defaults(Config *c) {
  memset(c, 0, sizeof *c);
  ConfigSource src = {"(built-in defaults)", 0, NULL};
  for (size_t i = 0; i < ARRAY_LEN(KEYS); i++) {
    src.line = (int)i + 1;
    set_value(c, &src, KEYS[i].section, KEYS[i].name, KEYS[i].def);
  }
}

void config_free(Config *c) {
  for (size_t i = 0; i < ARRAY_LEN(KEYS); i++) {
    if (KEYS[i].type != K_STRING) continue;
    free(*(char **)field(c, &KEYS[i]));
    *(char **)field(c, &KEYS[i]) = NULL;
  }
}

void config_copy(Config *dst, const Config *src) {
  *dst = *src;
  for (size_t i = 0; i < ARRAY_LEN(KEYS); i++)
    if (KEYS[i].type == K_STRING)
      *(char **)field(dst, &KEYS[i]) = xstrdup(*(char *const *)cfield(src, &KEYS[i]));
}

/* libinih as packaged calls handlers without a line number, so the reader
 * callback counts lines: the handler runs right after its line is read. */
typedef struct IniStream {
  FILE *f;
  int line;
  Config *c;
  const char *path;
} IniStream;

static char *ini_read_line(char *str, int num, void *stream) {
  IniStream *s = stream;
  char *r = fgets(str, num, s->f);
  if (r) s->line++;
  return r;
}

static int ini_on_value(void *user, const char *section, const char *name, const char *value) {
  IniStream *s = user;
  ConfigSource src = {s->path, s->line, NULL};
  if (section[0] == '\0') {
    char list[2048];
    list_sections(list, sizeof list);
    die("%s:%d: key '%s' outside any section; valid sections: %s", s->path, s->line, name, list);
  }
  set_value(s->c, &src, section, name, value);
  return 1;
}

void config_load_file(Config *c, const char *path) {
  IniStream s = {fopen(path, "r"), 0, c, path};
  if (!s.f) die("cannot open config %s: %s", path, strerror(errno));
  int err = ini_parse_stream(ini_read_line, &s, ini_on_value, &s);
  fclose(s.f);
  if (err > 0) die("%s:%d: syntax error (expected [section] or key = value)", path, err);
  if (err < 0) die("cannot read config %s", path);
}

void config_set_at(Config *c, const char *file, int line, const char *section, const char *name,
                   const char *value) {
  ConfigSource src = {file, line, NULL};
  set_value(c, &src, section, name, value);
}

void config_set(Config *c, const char *assignment) {
  ConfigSource src = {NULL, 0, assignment};
  const char *dot = strchr(assignment, '.');
  const char *eq = strchr(assignment, '=');
  if (!dot || !eq || dot > eq)
    die("--set %s: expected section.key=value", assignment);
  char section[128], name[128];
  size_t ns = (size_t)(dot - assignment), nk = (size_t)(eq - dot - 1);
  if (ns == 0 || nk == 0 || ns >= sizeof section || nk >= sizeof name)
    die("--set %s: expected section.key=value", assignment);
  memcpy(section, assignment, ns);
  section[ns] = '\0';
  memcpy(name, dot + 1, nk);
  name[nk] = '\0';
  set_value(c, &src, section, name, eq + 1);
}

static void write_value(const Config *c, const Key *k, FILE *f) {
  switch (k->type) {
  case K_INT: fprintf(f, "%d", *(const int *)cfield(c, k)); break;
  case K_LONG: fprintf(f, "%ld", *(const long *)cfield(c, k)); break;
  case K_FLOAT: fprintf(f, "%.17g", *(const double *)cfield(c, k)); break;
  case K_BOOL: fputs(*(const int *)cfield(c, k) ? "true" : "false", f); break;
  case K_STRING: fputs(*(char *const *)cfield(c, k), f); break;
  }
}

void config_write(const Config *c, FILE *f) {
  const char *last = "";
  for (size_t i = 0; i < ARRAY_LEN(KEYS); i++) {
    const Key *k = &KEYS[i];
    if (strcmp(k->section, last) != 0) {
      fprintf(f, "%s[%s]\n", i ? "\n" : "", k->section);
      last = k->section;
    }
    fprintf(f, "%s = ", k->name);
    write_value(c, k, f);
    fputc('\n', f);
  }
}

void config_write_to_dir(const Config *c, const char *dir) {
  char *text = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&text, &len);
  if (!m) die("out of memory writing the config");
  fputs("; resolved configuration (defaults, config file, then --set overrides)\n", m);
  config_write(c, m);
  fclose(m);
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/config.ini", dir);
  write_file_atomic(path, text, len);
  free(text);
}

void config_print_help(FILE *f) {
  fputs("Config keys (INI file given with --config, or --set section.key=value):\n", f);
  const char *last = "";
  for (size_t i = 0; i < ARRAY_LEN(KEYS); i++) {
    const Key *k = &KEYS[i];
    if (strcmp(k->section, last) != 0) {
      fprintf(f, "\n[%s]\n", k->section);
      last = k->section;
    }
    char def[256];
    snprintf(def, sizeof def, "%s = %s", k->name, k->def[0] ? k->def : "\"\"");
    fprintf(f, "  %-32s %s", def, k->help);
    if (k->choices) fprintf(f, " (%s)", k->choices);
    fputc('\n', f);
  }
}

char **split_list(const char *s, int *count) {
  int n = 0;
  char **items = xcalloc(strlen(s) + 2, sizeof *items);
  const char *p = s;
  while (*p) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    while (len && (*p == ' ' || *p == '\t')) { p++; len--; }
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
    if (len) {
      items[n] = xmalloc(len + 1);
      memcpy(items[n], p, len);
      items[n][len] = '\0';
      n++;
    }
    if (!comma) break;
    p = comma + 1;
  }
  if (count) *count = n;
  return items;
}

void free_list(char **items) {
  if (!items) return;
  for (char **p = items; *p; p++) free(*p);
  free(items);
}
