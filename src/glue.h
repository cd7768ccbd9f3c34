/* GLUE fine-tuning data: the TSV files of MRPC (sentence pairs) and SST-2
 * (single sentences), read whole into memory. Fields are split on tabs only,
 * with no quote handling, as BERT's own reader does: a string may start with
 * a double quote and is kept verbatim. */
#ifndef BERTRAIN_GLUE_H
#define BERTRAIN_GLUE_H

#include <stddef.h>

typedef enum { GLUE_MRPC, GLUE_SST2 } GlueTask;

typedef struct GlueSet {
  GlueTask task;
  long n;                 /* rows */
  const char **text_a;    /* text_a[i], NUL-terminated, in the arena */
  const char **text_b;    /* NULL for single-sentence tasks */
  int *label;             /* 0..num_labels-1, or -1 in a test set without labels */
  long *index;            /* the test set's index column; NULL in labelled sets */
  int num_labels;
  int labelled;           /* 0 for a GLUE test.tsv (no label column) */
  char *path;
  char *arena;            /* every string, one allocation */
} GlueSet;

/* "mrpc" or "sst2" (any case; "sst-2" too). Dies listing the valid tasks. */
GlueTask glue_task_parse(const char *name);
/* The same without dying: 0, or -1 for an unknown name. */
int glue_task_lookup(const char *name, GlueTask *task);
/* "MRPC" or "SST-2", as GLUE spells them. */
const char *glue_task_name(GlueTask task);
/* 1 when the task classifies sentence pairs. */
int glue_task_is_pair(GlueTask task);

/* Reads a task's train/dev TSV (with labels) or test TSV (index column, no
 * labels; labels become -1), plain or .xz, told apart by the header. Dies
 * with FILE:LINE on any malformed row, a header of another task, or invalid
 * UTF-8. */
GlueSet *glue_load(GlueTask task, const char *path);
/* DIR/SPLIT.tsv or DIR/SPLIT.tsv.xz; "train" and "dev" must have labels. */
GlueSet *glue_load_split(GlueTask task, const char *dir, const char *split);
/* As glue_load_split, but a missing, unreadable or malformed file returns
 * NULL with die()'s message in err (n bytes), everything freed, instead of
 * ending the job (fine-tuning inside a pre-training run). */
GlueSet *glue_try_load_split(GlueTask task, const char *dir, const char *split, char *err,
                             size_t n);
void glue_free(GlueSet *s);

#endif
