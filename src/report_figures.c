/* The report's figures: gnuplot scripts and their data under
 * RUN_DIR/report/data/, rendered with the pngcairo terminal. Each figure is
 * rendered by its own gnuplot run into a temporary file renamed into place,
 * so one failing figure leaves the others (and the previous PNG) intact.
 *
 * Lines of fine-tuning jobs are coloured by pre-trained epoch on a
 * sequential blue scale (light = early, dark = late), the epoch-0 baseline
 * (random initialisation, or the weights the run started from) grey and
 * dashed. Training batch accuracy is drawn raw (thin) and as a centred
 * moving average (thick). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "report.h"
#include "util.h"

const char *const REPORT_FIGURE_NAMES[REPORT_FIGURES] = {
  "figure_batch_accuracy.png", "figure_epoch_accuracy.png", "wallclock_accuracy.png",
  "pretrain_loss.png",
};

enum { FIG_BATCH, FIG_EPOCH, FIG_WALL, FIG_PRETRAIN };

#define PANEL_W 900
#define PANEL_H 540

FILE *report_open(const char *path) {
  FILE *f = fopen(path, "w");
  if (!f) die("cannot create %s: %s", path, strerror(errno));
  return f;
}

void report_close(FILE *f, const char *path) {
  if (fflush(f) != 0 || ferror(f) || fclose(f) != 0) die("cannot write %s: %s", path, strerror(errno));
}

/* Centred moving average of v over a window of 2h+1 (shrunk at the ends). */
static void smooth(const double *v, size_t n, size_t h, double *out) {
  for (size_t i = 0; i < n; i++) {
    size_t a = i >= h ? i - h : 0, b = i + h < n ? i + h : n - 1;
    double s = 0;
    for (size_t k = a; k <= b; k++) s += v[k];
    out[i] = s / (double)(b - a + 1);
  }
}

static size_t half_window(size_t n) { return n / 60; }

void report_gp_preamble(FILE *g, const char *name, int panels, int rows) {
  fprintf(g, "set terminal pngcairo size %d,%d enhanced font 'DejaVu Sans,11' linewidth 1\n",
          PANEL_W * (panels > 0 ? panels : 1), PANEL_H * rows);
  fprintf(g, "set output '%s.tmp'\n", name);
  fputs("set grid lc rgb '#e0e0e0' lw 1\nset border 3 lc rgb '#444444'\nset tics nomirror\n"
        "set key outside right top spacing 1.1 samplen 2 reverse Left\n"
        "set palette defined (0 '#9ecae1', 0.5 '#3182bd', 1 '#08306b')\nunset colorbox\n"
        "set offsets graph 0, graph 0, graph 0.05, graph 0.05\n", g);
}

/* The cbrange of the pre-trained epochs (> 0) of task's jobs. */
static void epoch_range(const RunData *d, const char *task, FILE *g) {
  int lo = 0, hi = 0;
  for (int i = 0; i < d->njobs; i++) {
    const Job *j = &d->jobs[i];
    if (strcmp(j->task, task) != 0 || j->epoch == 0) continue;
    if (!lo || j->epoch < lo) lo = j->epoch;
    if (j->epoch > hi) hi = j->epoch;
  }
  if (lo == hi) lo = hi > 0 ? hi - 1 : 0;
  fprintf(g, "set cbrange [%d:%d]\n", lo, hi > lo ? hi : lo + 1);
}

/* Thin lines (raw data) of the baseline stay solid: dashes would hide them. */
static void line_style(FILE *g, const Job *j, double lw) {
  if (j->epoch == 0) fprintf(g, "lc rgb '#7f7f7f' lw %g%s", lw, lw >= 1 ? " dt 2" : "");
  else fprintf(g, "lc palette cb %d lw %g", j->epoch, lw);
}

/* A plot command is collected apart, since a panel without data (a task
 * whose jobs all failed) needs fixed ranges before it for gnuplot to accept it. */
typedef struct PlotCmd {
  FILE *f;
  char *text;
  size_t len;
} PlotCmd;

static void plot_begin(PlotCmd *p) {
  p->text = NULL;
  p->f = open_memstream(&p->text, &p->len);
  if (!p->f) die("out of memory writing a gnuplot script");
  fputs("plot ", p->f);
}

static void plot_end(PlotCmd *p, FILE *g, int entries) {
  fputc('\n', p->f);
  fclose(p->f);
  if (entries) fputs(p->text, g);
  else fputs("set xrange [0:1]\nset yrange [0:1]\nset label 1 'no finished jobs' at graph 0.5, "
             "graph 0.5 center\nplot NaN notitle\nunset label 1\nset autoscale\n", g);
  free(p->text);
}

static int fig_batch(const RunData *d, const char *dir, FILE *g) {
  int any = 0;
  report_gp_preamble(g, REPORT_FIGURE_NAMES[FIG_BATCH], d->ntasks, 1);
  if (d->ntasks > 1) fprintf(g, "set multiplot layout 1,%d\n", d->ntasks);
  for (int t = 0; t < d->ntasks; t++) {
    const char *task = d->tasks[t];
    char path[PATH_MAX];
    path_fmt(path, sizeof path, "%s/data/%s_batch_accuracy.dat", dir, task);
    FILE *f = report_open(path);
    epoch_range(d, task, g);
    fprintf(g, "set title '%s: training batch accuracy while fine-tuning (thin: raw, thick: "
            "moving average)'\nset xlabel 'fine-tuning step'\nset ylabel 'batch accuracy'\n"
            "set key title \"pre-trained\\nepoch\"\n", task_title(task));
    int block = 0;
    PlotCmd pc;
    plot_begin(&pc);
    for (int i = 0; i < d->njobs; i++) {
      const Job *j = &d->jobs[i];
      const Series *s = job_series(j, "train", "batch_accuracy");
      if (strcmp(j->task, task) != 0 || !s || !s->n) continue;
      double *sm = xmalloc(s->n * sizeof *sm);
      smooth(s->value, s->n, half_window(s->n), sm);
      fprintf(f, "# %s epoch %d: step batch_accuracy moving_average\n", task, j->epoch);
      for (size_t k = 0; k < s->n; k++)
        fprintf(f, "%lld %.10g %.10g\n", (long long)s->step[k], s->value[k], sm[k]);
      fputs("\n\n", f);
      free(sm);
      fprintf(pc.f, "%s'data/%s_batch_accuracy.dat' index %d using 1:2 with lines ",
              block ? ", \\\n  " : "", task, block);
      line_style(pc.f, j, 0.5);
      fputs(" notitle, \\\n  '' index ", pc.f);
      fprintf(pc.f, "%d using 1:3 with lines ", block);
      line_style(pc.f, j, 2.2);
      fprintf(pc.f, " title '%d%s'", j->epoch, j->epoch == 0 ? d->baseline_label : "");
      block++;
    }
    plot_end(&pc, g, block);
    any += block;
    report_close(f, path);
  }
  if (d->ntasks > 1) fputs("unset multiplot\n", g);
  return any;
}

static int fig_epoch(const RunData *d, const char *dir, FILE *g) {
  int any = 0;
  report_gp_preamble(g, REPORT_FIGURE_NAMES[FIG_EPOCH], d->ntasks, 1);
  if (d->ntasks > 1) fprintf(g, "set multiplot layout 1,%d\n", d->ntasks);
  for (int t = 0; t < d->ntasks; t++) {
    const char *task = d->tasks[t];
    char path[PATH_MAX];
    path_fmt(path, sizeof path, "%s/data/%s_epoch_accuracy.dat", dir, task);
    FILE *f = report_open(path);
    epoch_range(d, task, g);
    fprintf(g, "set title '%s: validation accuracy after each fine-tuning epoch'\n"
            "set xlabel 'fine-tuning epoch'\nset ylabel 'validation accuracy'\nset xtics 1\n"
            "set key title \"pre-trained\\nepoch\"\n", task_title(task));
    int block = 0, max_epoch = 1;
    for (int i = 0; i < d->njobs; i++) {
      const Series *s = job_series(&d->jobs[i], "validation", "epoch_accuracy");
      if (strcmp(d->jobs[i].task, task) == 0 && s && s->n && s->epoch[s->n - 1] > max_epoch)
        max_epoch = s->epoch[s->n - 1];
    }
    fprintf(g, "set xrange [0.7:%g]\n", max_epoch + 0.3);
    PlotCmd pc;
    plot_begin(&pc);
    for (int i = 0; i < d->njobs; i++) {
      const Job *j = &d->jobs[i];
      const Series *s = job_series(j, "validation", "epoch_accuracy");
      if (strcmp(j->task, task) != 0 || !s || !s->n) continue;
      fprintf(f, "# %s epoch %d: fine-tuning_epoch step epoch_accuracy\n", task, j->epoch);
      for (size_t k = 0; k < s->n; k++)
        fprintf(f, "%d %lld %.10g\n", s->epoch[k], (long long)s->step[k], s->value[k]);
      fputs("\n\n", f);
      fprintf(pc.f, "%s'data/%s_epoch_accuracy.dat' index %d using 1:3 with linespoints pt 7 "
              "ps 0.8 ", block ? ", \\\n  " : "", task, block);
      line_style(pc.f, j, 2);
      fprintf(pc.f, " title '%d%s'", j->epoch, j->epoch == 0 ? d->baseline_label : "");
      block++;
    }
    double majority = task_majority_rate(d, task);
    if (!isnan(majority))
      fprintf(pc.f, ", \\\n  %.10g with lines dt 3 lc rgb '#d62728' lw 1.5 title 'majority class'",
              majority);
    plot_end(&pc, g, block);
    any += block;
    report_close(f, path);
  }
  if (d->ntasks > 1) fputs("unset multiplot\n", g);
  return any;
}

static int fig_wall(const RunData *d, const char *dir, FILE *g) {
  static const char *const COLORS[] = {"#08519c", "#e6550d", "#31a354", "#756bb1", "#636363"};
  char path[PATH_MAX];
  path_fmt(path, sizeof path, "%s/data/wallclock_accuracy.dat", dir);
  FILE *f = report_open(path);
  report_gp_preamble(g, REPORT_FIGURE_NAMES[FIG_WALL], 1, 1);
  fputs("set title 'Final validation accuracy vs pre-training time (labels: pre-trained epoch)'\n"
        "set xlabel 'wall-clock time of pre-training, seconds'\nset ylabel 'final validation "
        "accuracy'\nset key title 'task'\nset offsets graph 0.03, graph 0.08, graph 0.08, graph "
        "0.08\nset xrange [0:*]\n", g);
  int blocks = 0;
  PlotCmd pc;
  plot_begin(&pc);
  for (int t = 0; t < d->ntasks; t++) {
    int n = 0;
    fprintf(f, "# %s: pretrain_wall_s final_epoch_accuracy pretrained_epoch\n", d->tasks[t]);
    for (int i = 0; i < d->njobs; i++) {
      const Job *j = &d->jobs[i];
      if (strcmp(j->task, d->tasks[t]) != 0 || isnan(j->final_acc) || j->pretrain_wall_s < 0) continue;
      fprintf(f, "%.10g %.10g %d\n", j->pretrain_wall_s, j->final_acc, j->epoch);
      n++;
    }
    fputs("\n\n", f);
    if (!n) continue;
    const char *c = COLORS[t % ARRAY_LEN(COLORS)];
    fprintf(pc.f, "%s'data/wallclock_accuracy.dat' index %d using 1:2 with linespoints pt 7 ps 1.2 "
            "lw 2 lc rgb '%s' title '%s', \\\n  '' index %d using 1:2:3 with labels offset 0,1 "
            "font ',9' tc rgb '%s' notitle", blocks ? ", \\\n  " : "", t, c,
            task_title(d->tasks[t]), t, c);
    blocks++;
  }
  plot_end(&pc, g, blocks);
  report_close(f, path);
  return blocks;
}

/* Milestones as dashed vertical lines, labelled with their epoch. */
static void milestone_marks(const RunData *d, FILE *g, int label) {
  int last = -1;
  for (int i = 0; i < d->njobs; i++) {
    const Job *j = &d->jobs[i];
    if (j->global_step <= 0 || j->epoch == last) continue;
    int seen = 0;
    for (int k = 0; k < i; k++) seen |= d->jobs[k].epoch == j->epoch;
    if (seen) continue;
    fprintf(g, "set arrow from %ld, graph 0 to %ld, graph 1 nohead dt 3 lc rgb '#b0b0b0'\n",
            j->global_step, j->global_step);
    if (label)
      fprintf(g, "set label 'e%d' at %ld, graph 1.03 center font ',8' tc rgb '#808080'\n", j->epoch,
              j->global_step);
    last = j->epoch;
  }
}

static int fig_pretrain(const RunData *d, const char *dir, FILE *g) {
  const Pretrain *p = &d->pre;
  int cs = pretrain_col(p, "step"), cl = pretrain_col(p, "loss"), cm = pretrain_col(p, "mlm_acc");
  if (cs < 0 || cl < 0 || p->n == 0) return 0;
  char path[PATH_MAX];
  path_fmt(path, sizeof path, "%s/data/pretrain.dat", dir);
  FILE *f = report_open(path);
  size_t kept = 0;
  double *loss = xmalloc(p->n * sizeof *loss), *mlm = xmalloc(p->n * sizeof *mlm);
  double *steps = xmalloc(p->n * sizeof *steps);
  for (size_t i = 0; i < p->n; i++) {
    if (!pretrain_row_kept(p, i)) continue;
    const double *row = p->v + i * (size_t)p->ncols;
    steps[kept] = row[cs];
    loss[kept] = row[cl];
    mlm[kept++] = cm >= 0 ? row[cm] : NAN;
  }
  double *ls = xmalloc(kept * sizeof *ls), *ms = xmalloc(kept * sizeof *ms);
  smooth(loss, kept, half_window(kept), ls);
  smooth(mlm, kept, half_window(kept), ms);
  fputs("# step loss loss_moving_average mlm_acc mlm_acc_moving_average\n", f);
  for (size_t i = 0; i < kept; i++)
    fprintf(f, "%.10g %.10g %.10g %.10g %.10g\n", steps[i], loss[i], ls[i], mlm[i], ms[i]);
  report_close(f, path);
  free(loss);
  free(mlm);
  free(steps);
  free(ls);
  free(ms);
  report_gp_preamble(g, REPORT_FIGURE_NAMES[FIG_PRETRAIN], 1, 2);
  fputs("set multiplot layout 2,1 margins 0.09,0.96,0.06,0.94 spacing 0.1,0.13\n"
        "set key inside right top\nset xlabel 'pre-training step'\n", g);
  milestone_marks(d, g, 1);
  fputs("set title 'Pre-training loss (MLM + NSP; dotted lines: milestones)' offset 0,1\n"
        "set ylabel 'loss'\nplot 'data/pretrain.dat' using 1:2 with lines lc rgb '#9ecae1' lw 0.6 "
        "title 'per step', '' using 1:3 with lines lc rgb '#08519c' lw 2 title 'moving average'\n", g);
  fputs("unset label\nset title 'Masked-LM accuracy'\n"
        "set ylabel 'MLM accuracy'\nset key inside right bottom\nset yrange [0:*]\n", g);
  fputs("plot 'data/pretrain.dat' using 1:4 with lines lc rgb '#a1d99b' lw 0.6 title 'per step', "
        "'' using 1:5 with lines lc rgb '#006d2c' lw 2 title 'moving average'\nunset multiplot\n", g);
  return 1;
}

/* Runs gnuplot on script (in dir); returns its exit status, 127 when it
 * cannot be started. */
static int run_gnuplot(const char *dir, const char *script, const char *log, const ReportOpts *o) {
  char qd[PATH_MAX * 2], qs[PATH_MAX * 2], ql[PATH_MAX * 2], qg[PATH_MAX * 2], cmd[PATH_MAX * 9];
  shell_quote(qd, sizeof qd, dir);
  shell_quote(qs, sizeof qs, script);
  shell_quote(ql, sizeof ql, log);
  shell_quote(qg, sizeof qg, o->gnuplot ? o->gnuplot : "gnuplot");
  path_fmt(cmd, sizeof cmd, "cd %s && %s %s > %s 2>&1", qd, qg, qs, ql);
  fflush(NULL);
  int st = system(cmd);
  if (st == -1) return 127;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

int report_render(const char *dir, const char *name, const ReportOpts *o) {
  static int missing_reported = 0;
  char script[PATH_MAX], log[PATH_MAX], tmp[PATH_MAX + 8], png[PATH_MAX];
  size_t stem = strlen(name) - 4; /* without ".png" */
  path_fmt(script, sizeof script, "data/%.*s.gp", (int)stem, name);
  path_fmt(log, sizeof log, "data/%.*s.log", (int)stem, name);
  path_fmt(png, sizeof png, "%s/%s", dir, name);
  path_fmt(tmp, sizeof tmp, "%s.tmp", png);
  int rc = run_gnuplot(dir, script, log, o);
  if (rc == 127) {
    if (!missing_reported)
      warn("gnuplot could not be run (install gnuplot, e.g. gnuplot-nox): the report has no "
           "figures; the scripts are in %s/data", dir);
    missing_reported = 1;
  } else if (rc != 0 || !file_exists(tmp)) {
    warn("gnuplot failed on %s/%s (exit %d); see %s/%s", dir, script, rc, dir, log);
    if (rc == 0) rc = 1;
  } else if (rename(tmp, png) != 0) {
    die("cannot rename %s to %s: %s", tmp, png, strerror(errno));
  }
  if (rc != 0) unlink(tmp);
  return rc;
}

int report_figures(const RunData *d, const char *dir, const ReportOpts *o,
                   int made[REPORT_FIGURES]) {
  typedef int (*FigFn)(const RunData *, const char *, FILE *);
  static const FigFn FIGS[REPORT_FIGURES] = {fig_batch, fig_epoch, fig_wall, fig_pretrain};
  char data[PATH_MAX];
  path_fmt(data, sizeof data, "%s/data", dir);
  make_dirs(data);
  int failed = 0;
  for (int i = 0; i < REPORT_FIGURES; i++) {
    made[i] = 0;
    const char *name = REPORT_FIGURE_NAMES[i];
    char script[PATH_MAX];
    path_fmt(script, sizeof script, "%s/data/%.*s.gp", dir, (int)(strlen(name) - 4), name);
    FILE *g = report_open(script);
    int have = FIGS[i](d, dir, g);
    report_close(g, script);
    if (!have || !o->figures) continue;
    if (report_render(dir, name, o) == 0) made[i] = 1;
    else failed++;
  }
  return failed;
}
