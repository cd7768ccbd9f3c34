#define _POSIX_C_SOURCE 200809L
#include "glue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "textio.h"
#include "util.h"

#define MAX_COLS 5

/* Where a file's fields are, told by its header; -1 = absent. */
typedef struct Layout {
  GlueTask task;
  const char *header;
  int ncols, label_col, index_col, a_col, b_col;
} Layout;

static const Layout LAYOUTS[] = {
  {GLUE_MRPC, "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", 5, 0, -1, 3, 4},
  {GLUE_MRPC, "index\t#1 ID\t#2 ID\t#1 String\t#2 String", 5, -1, 0, 3, 4},
  {GLUE_SST2, "sentence\tlabel", 2, 1, -1, 0, -1},
  {GLUE_SST2, "index\tsentence", 2, -1, 0, 1, -1},
};

/* Header starts of the GLUE tasks not read here, only to name a wrong file. */
static const struct { const char *prefix, *name; } OTHER_TASKS[] = {
  {"index\tpromptID\tpairID\t", "MNLI"},
  {"id\tqid1\tqid2\t", "QQP"},
  {"id\tquestion1\tquestion2", "QQP"},
  {"index\tquestion\tsentence", "QNLI"},
  {"index\tgenre\tfilename\t", "STS-B"},
  {"index\tsentence1\tsentence2", "RTE or WNLI"},
};

int glue_task_lookup(const char *name, GlueTask *task) {
  if (strcasecmp(name, "mrpc") == 0) *task = GLUE_MRPC;
  else if (strcasecmp(name, "sst2") == 0 || strcasecmp(name, "sst-2") == 0) *task = GLUE_SST2;
  else return -1;
  return 0;
}

GlueTask glue_task_parse(const char *name) {
  GlueTask t;
  if (glue_task_lookup(name, &t) != 0)
    die("unknown GLUE task '%s': valid tasks are mrpc, sst2", name);
  return t;
}

const char *glue_task_name(GlueTask task) { return task == GLUE_MRPC ? "MRPC" : "SST-2"; }

int glue_task_is_pair(GlueTask task) { return task == GLUE_MRPC; }

/* s with tabs shown as \t, cut to about max bytes on a character boundary. */
static const char *shown(const char *s, char *buf, size_t size) {
  size_t j = 0;
  for (; *s && j + 6 < size; s++) {
    if (*s == '\t') { buf[j++] = '\\'; buf[j++] = 't'; continue; }
    if (j + 12 >= size && ((unsigned char)*s & 0xC0) != 0x80) {
      memcpy(buf + j, "...", 3);
      j += 3;
      break;
    }
    buf[j++] = *s;
  }
  buf[j] = '\0';
  return buf;
}

static const Layout *find_layout(GlueTask task, const char *header, const char *path) {
  for (size_t i = 0; i < ARRAY_LEN(LAYOUTS); i++)
    if (strcmp(header, LAYOUTS[i].header) == 0) {
      if (LAYOUTS[i].task == task) return &LAYOUTS[i];
      die("%s:1: the header is that of an %s file, not %s (wrong task or data directory?)", path,
          glue_task_name(LAYOUTS[i].task), glue_task_name(task));
    }
  for (size_t i = 0; i < ARRAY_LEN(OTHER_TASKS); i++)
    if (strncmp(header, OTHER_TASKS[i].prefix, strlen(OTHER_TASKS[i].prefix)) == 0)
      die("%s:1: the header is that of a GLUE %s file, not %s (bertrain reads mrpc, sst2)", path,
          OTHER_TASKS[i].name, glue_task_name(task));
  const Layout *train = NULL, *test = NULL;
  for (size_t i = 0; i < ARRAY_LEN(LAYOUTS); i++)
    if (LAYOUTS[i].task == task) *(LAYOUTS[i].label_col >= 0 ? &train : &test) = &LAYOUTS[i];
  char b1[128], b2[128], b3[128];
  die("%s:1: not an %s header: expected \"%s\" (or \"%s\" in a test set), found \"%s\"", path,
      glue_task_name(task), shown(train->header, b1, sizeof b1), shown(test->header, b2, sizeof b2),
      shown(header, b3, sizeof b3));
}

/* Rows as they are read: strings appended to one arena, kept as offsets
 * because the arena moves while it grows. */
typedef struct Builder {
  char *arena;
  size_t arena_len, arena_cap;
  size_t *off_a, *off_b;
  int *label;
  long *index;
  long n, cap;
} Builder;

static size_t add_string(Builder *b, const char *s) {
  size_t len = strlen(s), at = b->arena_len;
  grow((void **)&b->arena, &b->arena_cap, at + len + 1, 1);
  memcpy(b->arena + at, s, len + 1);
  b->arena_len += len + 1;
  return at;
}

static void add_row_slot(Builder *b) {
  if (b->n < b->cap) return;
  b->cap = b->cap ? 2 * b->cap : 1024;
  size_t c = (size_t)b->cap;
  b->off_a = xrealloc(b->off_a, c * sizeof *b->off_a);
  b->off_b = xrealloc(b->off_b, c * sizeof *b->off_b);
  b->label = xrealloc(b->label, c * sizeof *b->label);
  b->index = xrealloc(b->index, c * sizeof *b->index);
}

/* Splits line in place on tabs; returns the column count (fields[] holds
 * at most MAX_COLS of them). */
static int split_tabs(char *line, char **fields) {
  int n = 0;
  for (char *p = line;; p++) {
    if (n < MAX_COLS) fields[n] = p;
    n++;
    p = strchr(p, '\t');
    if (!p) return n;
    *p = '\0';
  }
}

static int parse_label(const char *s, const char *path, long lineno) {
  if (!*s) die("%s:%ld: missing label", path, lineno);
  if (strcmp(s, "0") == 0) return 0;
  if (strcmp(s, "1") == 0) return 1;
  char buf[64];
  die("%s:%ld: label \"%s\" is not 0 or 1", path, lineno, shown(s, buf, sizeof buf));
}

static long parse_index(const char *s, const char *path, long lineno) {
  long v;
  if (parse_long(s, &v) != 0 || v < 0) {
    char buf[64];
    die("%s:%ld: index \"%s\" is not a non-negative integer", path, lineno,
        shown(s, buf, sizeof buf));
  }
  return v;
}

static void add_row(Builder *b, const Layout *lay, char *line, const char *path, long lineno) {
  char *f[MAX_COLS];
  int ncols = split_tabs(line, f);
  if (ncols != lay->ncols)
    die("%s:%ld: expected %d tab-separated columns, found %d", path, lineno, lay->ncols, ncols);
  add_row_slot(b);
  long i = b->n;
  b->label[i] = lay->label_col >= 0 ? parse_label(f[lay->label_col], path, lineno) : -1;
  b->index[i] = lay->index_col >= 0 ? parse_index(f[lay->index_col], path, lineno) : -1;
  if (!*f[lay->a_col] || (lay->b_col >= 0 && !*f[lay->b_col]))
    die("%s:%ld: empty sentence", path, lineno);
  b->off_a[i] = add_string(b, f[lay->a_col]);
  b->off_b[i] = lay->b_col >= 0 ? add_string(b, f[lay->b_col]) : 0;
  b->n++;
}

static GlueSet *finish(Builder *b, GlueTask task, const Layout *lay, const char *path) {
  GlueSet *s = xcalloc(1, sizeof *s);
  s->task = task;
  s->n = b->n;
  s->num_labels = 2;
  s->labelled = lay->label_col >= 0;
  s->path = xstrdup(path);
  s->arena = xrealloc(b->arena, b->arena_len);
  size_t n = (size_t)b->n;
  s->text_a = xmalloc(n * sizeof *s->text_a);
  for (size_t i = 0; i < n; i++) s->text_a[i] = s->arena + b->off_a[i];
  if (lay->b_col >= 0) {
    s->text_b = xmalloc(n * sizeof *s->text_b);
    for (size_t i = 0; i < n; i++) s->text_b[i] = s->arena + b->off_b[i];
  }
  s->label = xrealloc(b->label, n * sizeof *s->label);
  if (s->labelled) {
    free(b->index);
  } else {
    s->index = xrealloc(b->index, n * sizeof *s->index);
  }
  free(b->off_a);
  free(b->off_b);
  return s;
}

/* A load in progress, holding everything it has allocated, so that a load
 * stopped by die() under die_catch can be freed (glue_try_load_split). */
typedef struct Load {
  GlueTask task;
  const char *dir, *split, *path;
  char *name, *found; /* SPLIT.tsv, and the file found for it */
  LineReader *r;
  Builder b;
  GlueSet *set;
} Load;

static void builder_free(Builder *b) {
  free(b->arena);
  free(b->off_a);
  free(b->off_b);
  free(b->label);
  free(b->index);
  memset(b, 0, sizeof *b);
}

static void load_free(Load *ld) {
  lines_close(ld->r);
  builder_free(&ld->b);
  glue_free(ld->set);
  free(ld->name);
  free(ld->found);
  ld->r = NULL;
  ld->set = NULL;
  ld->name = ld->found = NULL;
}

/* Reads ld->path into ld->set. */
static void load_file(Load *ld) {
  GlueTask task = ld->task;
  const char *path = ld->path;
  ld->r = lines_open(path);
  size_t len;
  char *line = lines_next(ld->r, &len);
  if (!line) die("%s: empty file, expected a %s header", path, glue_task_name(task));
  require_utf8(ld->r, line, len);
  if (len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) line += 3;
  const Layout *lay = find_layout(task, line, path);

  long blank = 0; /* first of a run of empty lines, allowed only at the end */
  while ((line = lines_next(ld->r, &len))) {
    long lineno = lines_number(ld->r);
    if (len == 0) {
      if (!blank) blank = lineno;
      continue;
    }
    if (blank) die("%s:%ld: empty line before the end of the file", path, blank);
    require_utf8(ld->r, line, len);
    add_row(&ld->b, lay, line, path, lineno);
  }
  lines_close(ld->r);
  ld->r = NULL;
  if (ld->b.n == 0) die("%s: no rows after the header", path);
  ld->set = finish(&ld->b, task, lay, path);
  memset(&ld->b, 0, sizeof ld->b); /* finish took its arrays */
}

GlueSet *glue_load(GlueTask task, const char *path) {
  Load ld = {.task = task, .path = path};
  load_file(&ld);
  return ld.set;
}

/* ld->dir/ld->split.tsv(.xz) into ld->set. */
static void load_split(void *arg) {
  Load *ld = arg;
  size_t n = strlen(ld->split) + 5;
  ld->name = xmalloc(n);
  snprintf(ld->name, n, "%s.tsv", ld->split);
  ld->found = find_data_file(ld->dir, ld->name);
  if (!ld->found)
    die("no %s or %s.xz in %s (the %s data directory)", ld->name, ld->name, ld->dir,
        glue_task_name(ld->task));
  ld->path = ld->found;
  load_file(ld);
  if (!ld->set->labelled && strcmp(ld->split, "test") != 0)
    die("%s: has no labels (a GLUE test file), but the %s split needs them", ld->found, ld->split);
}

GlueSet *glue_load_split(GlueTask task, const char *dir, const char *split) {
  Load ld = {.task = task, .dir = dir, .split = split};
  load_split(&ld);
  GlueSet *s = ld.set;
  ld.set = NULL;
  load_free(&ld);
  return s;
}

GlueSet *glue_try_load_split(GlueTask task, const char *dir, const char *split, char *err,
                             size_t n) {
  Load ld = {.task = task, .dir = dir, .split = split};
  int rc = die_catch(load_split, &ld, err, n);
  GlueSet *s = rc == 0 ? ld.set : NULL;
  if (rc == 0) ld.set = NULL;
  load_free(&ld);
  return s;
}

void glue_free(GlueSet *s) {
  if (!s) return;
  free(s->text_a);
  free(s->text_b);
  free(s->label);
  free(s->index);
  free(s->arena);
  free(s->path);
  free(s);
}
