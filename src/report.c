/* report_build and the findings the report states, computed from the
 * final validation accuracies of the finished fine-tuning jobs. */
#define _POSIX_C_SOURCE 200809L
#include "report.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "glue.h"
#include "textio.h"
#include "util.h"

int report_build(const char *run_dir, const ReportOpts *o) {
  struct stat st;
  if (stat(run_dir, &st) != 0 || !S_ISDIR(st.st_mode))
    die("%s: no such run directory", run_dir);
  RunData *d = run_data_load(run_dir);
  if (d->pre.n == 0 && d->njobs == 0)
    die("%s: neither pre-training metrics (pretrain/metrics.csv) nor fine-tuning jobs "
        "(finetune/epoch-NNNN/): not a run directory of 'bertrain pretrain'", run_dir);
  metrics_store_write(d);
  report_tensorboard(d);
  char dir[PATH_MAX];
  path_fmt(dir, sizeof dir, "%s/report", run_dir);
  make_dirs(dir);
  int made[REPORT_FIGURES];
  int failed = report_figures(d, dir, o, made);
  report_markdown(d, dir, made);
  run_data_free(d);
  return failed;
}

typedef struct Point2 {
  double x, y;
} Point2;

/* Ranks of v (1-based, ties averaged). */
static void ranks(const double *v, int n, double *r) {
  for (int i = 0; i < n; i++) {
    int less = 0, equal = 0;
    for (int k = 0; k < n; k++) {
      less += v[k] < v[i];
      equal += v[k] == v[i];
    }
    r[i] = less + (equal + 1) / 2.0;
  }
}

static double pearson(const double *a, const double *b, int n) {
  double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
  for (int i = 0; i < n; i++) {
    ma += a[i] / n;
    mb += b[i] / n;
  }
  for (int i = 0; i < n; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
}

static double spearman(const Point2 *p, int n) {
  if (n < 3) return NAN;
  double *x = xmalloc((size_t)n * sizeof *x), *y = xmalloc((size_t)n * sizeof *y);
  double *rx = xmalloc((size_t)n * sizeof *rx), *ry = xmalloc((size_t)n * sizeof *ry);
  for (int i = 0; i < n; i++) {
    x[i] = p[i].x;
    y[i] = p[i].y;
  }
  ranks(x, n, rx);
  ranks(y, n, ry);
  double r = pearson(rx, ry, n);
  free(x);
  free(y);
  free(rx);
  free(ry);
  return r;
}

void report_findings(const RunData *d, const char *task, Findings *f) {
  memset(f, 0, sizeof *f);
  f->spearman = NAN;
  Point2 *m = xmalloc((size_t)(d->njobs + 1) * sizeof *m);
  for (int i = 0; i < d->njobs; i++) {
    const Job *j = &d->jobs[i];
    if (strcmp(j->task, task) != 0 || strcmp(j->status.state, "done") != 0 || isnan(j->final_acc))
      continue;
    if (j->epoch == 0) {
      f->have_baseline = 1;
      f->baseline = j->final_acc;
    } else {
      /* Jobs are sorted by epoch, so m is too. */
      m[f->n++] = (Point2){j->epoch, j->final_acc};
    }
  }
  if (f->n) {
    f->first = m[0].y;
    f->first_epoch = (int)m[0].x;
    f->last = m[f->n - 1].y;
    f->last_epoch = (int)m[f->n - 1].x;
    f->best = m[0].y;
    f->best_epoch = (int)m[0].x;
    for (int i = 0; i < f->n; i++) {
      if (m[i].y > f->best) {
        f->best = m[i].y;
        f->best_epoch = (int)m[i].x;
      }
      if (i > 0 && m[i].y > m[i - 1].y) f->rises++;
      if (f->have_baseline && m[i].y > f->baseline) f->above_baseline++;
    }
    f->half = f->n / 2;
    for (int i = 0; i < f->half; i++) {
      f->early_mean += m[i].y / f->half;
      f->late_mean += m[f->n - f->half + i].y / f->half;
    }
    if (f->half) {
      f->early_lo = (int)m[0].x;
      f->early_hi = (int)m[f->half - 1].x;
      f->late_lo = (int)m[f->n - f->half].x;
      f->late_hi = (int)m[f->n - 1].x;
    }
    f->spearman = spearman(m, f->n);
  }
  free(m);
}

static int known_task(const char *task) {
  return strcmp(task, "mrpc") == 0 || strcmp(task, "sst2") == 0;
}

/* The majority-class rate of a dev set (DIR/dev.tsv or .xz), or NaN. */
static double majority_rate(const char *task, const char *dir) {
  char *path = find_data_file(dir, "dev.tsv");
  if (!path) return NAN;
  GlueSet *s = glue_load(glue_task_parse(task), path);
  free(path);
  long count[2] = {0, 0};
  for (long i = 0; i < s->n; i++)
    if (s->label[i] == 0 || s->label[i] == 1) count[s->label[i]]++;
  double r = s->n ? (double)(count[0] > count[1] ? count[0] : count[1]) / (double)s->n : NAN;
  glue_free(s);
  return r;
}

double task_majority_rate(const RunData *d, const char *task) {
  if (!known_task(task)) return NAN;
  for (int i = 0; i < d->njobs; i++) {
    const Job *j = &d->jobs[i];
    if (strcmp(j->task, task) == 0 && j->status.data[0]) return majority_rate(task, j->status.data);
  }
  return NAN;
}
