/* TensorBoard event files of a run, rebuilt from the metrics store.
 *
 * wall_time is seconds of pre-training, not the Unix time: for pre-training
 * events the row's wall_s, for a fine-tuning job the pre-training time of its
 * checkpoint. That keeps a rebuilt file byte-identical to the old one, up to
 * the events added since, so a TensorBoard already reading it goes on
 * reading the new events. Validation events take the fine-tuning epoch as
 * their step (as Keras writes epoch_accuracy), training events the
 * optimizer step. */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "report.h"
#include "tfevents.h"
#include "util.h"

static void tb_pretrain(const RunData *d) {
  const Pretrain *p = &d->pre;
  int cs = pretrain_col(p, "step"), ce = pretrain_col(p, "epoch"), cw = pretrain_col(p, "wall_s");
  if (cs < 0 || p->n == 0) return;
  char dir[PATH_MAX];
  path_fmt(dir, sizeof dir, "%s/tb/pretrain", d->run_dir);
  TfWriter *w = tf_open(dir, cw >= 0 ? p->v[cw] : 0);
  for (size_t i = 0; i < p->n; i++) {
    if (!pretrain_row_kept(p, i)) continue;
    const double *row = p->v + i * (size_t)p->ncols;
    double wall = cw >= 0 ? row[cw] : 0;
    for (int c = 0; c < p->ncols; c++)
      if (c != cs && c != ce && c != cw) tf_scalar(w, p->cols[c], (int64_t)row[cs], wall, (float)row[c]);
  }
  tf_close(w);
}

static void tb_job(const RunData *d, const Job *j) {
  /* j->dir is finetune/epoch-NNNN[/TASK]. */
  double wall = j->pretrain_wall_s >= 0 ? j->pretrain_wall_s : 0;
  for (int i = 0; i < j->nseries; i++) {
    const char *phase = j->series[i].phase;
    int first = 1;
    for (int k = 0; k < i; k++) first &= strcmp(j->series[k].phase, phase) != 0;
    if (!first) continue;
    char dir[PATH_MAX];
    path_fmt(dir, sizeof dir, "%s/tb/%s/%s", d->run_dir, j->dir, phase);
    int by_epoch = strcmp(phase, "validation") == 0;
    TfWriter *w = tf_open(dir, wall);
    /* Rows in file order, so that events follow the steps. */
    for (size_t r = 0; r < j->nrows; r++) {
      const Series *s = &j->series[j->rows[r].series];
      if (strcmp(s->phase, phase) != 0) continue;
      size_t x = j->rows[r].index;
      tf_scalar(w, s->metric, by_epoch ? s->epoch[x] : s->step[x], wall, (float)s->value[x]);
    }
    tf_close(w);
  }
}

void report_tensorboard(const RunData *d) {
  tb_pretrain(d);
  for (int i = 0; i < d->njobs; i++) tb_job(d, &d->jobs[i]);
}
