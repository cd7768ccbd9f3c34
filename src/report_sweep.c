/* The sweep report: the runs of one sweep directory (sweep.h) side by side.
 *   SWEEP_DIR/report/Report.md                 runs, results table, findings
 *   SWEEP_DIR/report/sweep.csv                 one row per run, task and milestone
 *   SWEEP_DIR/report/sweep_wallclock_accuracy.png   final validation accuracy
 *       vs pre-training wall-clock time, one line per run, a panel per task
 * Each run's own report is rebuilt first. A run directory is any
 * subdirectory holding config.ini; SWEEP_DIR/sweep.ini (copied there by
 * slurm/sweep.sbatch) gives the runs' order and overrides when present. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "report.h"
#include "sweep.h"
#include "util.h"

#define SWEEP_FIGURE "sweep_wallclock_accuracy.png"

typedef struct SRun {
  char name[256];
  char dir[PATH_MAX];
  char sets[1024];   /* its overrides, from sweep.ini; "" when unknown */
  Config cfg;
  RunData *data;     /* NULL when the run has nothing to report yet */
} SRun;

typedef struct SweepData {
  const char *dir;
  SRun *runs;
  int nruns;
  char **tasks;      /* union over the runs, in first-seen order */
  int ntasks;
} SweepData;

static int is_run_dir(const char *dir) {
  char path[PATH_MAX];
  path_fmt(path, sizeof path, "%s/config.ini", dir);
  return file_exists(path);
}

static int by_name(const void *a, const void *b) {
  return strcmp(((const SRun *)a)->name, ((const SRun *)b)->name);
}

static void add_run(SweepData *s, size_t *cap, const char *name, const char *sets) {
  for (int i = 0; i < s->nruns; i++)
    if (strcmp(s->runs[i].name, name) == 0) return;
  char dir[PATH_MAX];
  path_fmt(dir, sizeof dir, "%s/%s", s->dir, name);
  if (!is_run_dir(dir)) return;
  grow((void **)&s->runs, cap, (size_t)s->nruns + 1, sizeof *s->runs);
  SRun *r = &s->runs[s->nruns++];
  memset(r, 0, sizeof *r);
  path_fmt(r->name, sizeof r->name, "%s", name);
  path_fmt(r->dir, sizeof r->dir, "%s", dir);
  path_fmt(r->sets, sizeof r->sets, "%s", sets);
}

/* The runs of sweep.ini first, in its order, then any other run directory
 * by name. */
static void find_runs(SweepData *s) {
  size_t cap = 0;
  char path[PATH_MAX];
  path_fmt(path, sizeof path, "%s/sweep.ini", s->dir);
  if (file_exists(path)) {
    Sweep *sw = sweep_load(path);
    for (int i = 0; i < sw->nruns; i++) {
      char sets[1024] = "";
      size_t used = 0;
      for (int k = 0; k < sw->runs[i].nsets && used < sizeof sets; k++)
        used += (size_t)snprintf(sets + used, sizeof sets - used, "%s%s", k ? ", " : "",
                                 sw->runs[i].sets[k]);
      add_run(s, &cap, sw->runs[i].name, sets);
    }
    sweep_free(sw);
  }
  int listed = s->nruns;
  DIR *d = opendir(s->dir);
  if (!d) die("%s: cannot read the sweep directory: %s", s->dir, strerror(errno));
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.' && strcmp(e->d_name, "report") != 0) add_run(s, &cap, e->d_name, "");
  closedir(d);
  qsort(s->runs + listed, (size_t)(s->nruns - listed), sizeof *s->runs, by_name);
}

static void add_task(SweepData *s, const char *task) {
  for (int i = 0; i < s->ntasks; i++)
    if (strcmp(s->tasks[i], task) == 0) return;
  s->tasks = xrealloc(s->tasks, (size_t)(s->ntasks + 1) * sizeof *s->tasks);
  s->tasks[s->ntasks++] = xstrdup(task);
}

/* Rebuilds each run's own report and loads its data and settings. */
static int load_runs(SweepData *s, const ReportOpts *o) {
  int failed = 0;
  for (int i = 0; i < s->nruns; i++) {
    SRun *r = &s->runs[i];
    char path[PATH_MAX];
    path_fmt(path, sizeof path, "%s/config.ini", r->dir);
    config_defaults(&r->cfg);
    config_load_file(&r->cfg, path);
    RunData *d = run_data_load(r->dir);
    if (d->pre.n == 0 && d->njobs == 0) {
      run_data_free(d);
      continue;
    }
    run_data_free(d);
    failed += report_build(r->dir, o);
    r->data = run_data_load(r->dir);
    for (int t = 0; t < r->data->ntasks; t++) add_task(s, r->data->tasks[t]);
  }
  return failed;
}

static void fmt_num(char *buf, size_t n, double v, const char *fmt) {
  if (isnan(v) || v < 0) path_fmt(buf, n, "-");
  else snprintf(buf, n, fmt, v);
}

static void write_csv(const SweepData *s, const char *dir) {
  char path[PATH_MAX], tmp[PATH_MAX + 8];
  path_fmt(path, sizeof path, "%s/sweep.csv", dir);
  path_fmt(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = report_open(tmp);
  fputs("run,task,pretrained_epoch,global_step,pretrain_wall_s,epoch_accuracy,f1,status\n", f);
  for (int i = 0; i < s->nruns; i++) {
    const RunData *d = s->runs[i].data;
    for (int k = 0; d && k < d->njobs; k++) {
      const Job *j = &d->jobs[k];
      char wall[32], acc[32], f1[32];
      fmt_num(wall, sizeof wall, j->pretrain_wall_s, "%.3f");
      fmt_num(acc, sizeof acc, j->final_acc, "%.6f");
      fmt_num(f1, sizeof f1, j->final_f1, "%.6f");
      fprintf(f, "%s,%s,%d,%ld,%s,%s,%s,%s\n", s->runs[i].name, j->task, j->epoch,
              j->global_step, wall, acc, f1, j->status.state[0] ? j->status.state : "unknown");
    }
  }
  report_close(f, tmp);
  if (rename(tmp, path) != 0) die("cannot rename %s to %s: %s", tmp, path, strerror(errno));
}

/* One panel per task: a line per run through its milestones (the epoch-0
 * baseline at time 0 included), points labelled with the pre-trained epoch. */
static int figure(const SweepData *s, const char *dir, const ReportOpts *o) {
  static const char *const COLORS[] = {"#08519c", "#e6550d", "#31a354", "#756bb1", "#636363",
                                       "#d6616b", "#8c6d31", "#17becf"};
  char dat[PATH_MAX], gp[PATH_MAX];
  path_fmt(dat, sizeof dat, "%s/data", dir);
  make_dirs(dat);
  path_fmt(dat, sizeof dat, "%s/data/sweep_wallclock_accuracy.dat", dir);
  path_fmt(gp, sizeof gp, "%s/data/sweep_wallclock_accuracy.gp", dir);
  FILE *f = report_open(dat), *g = report_open(gp);
  report_gp_preamble(g, SWEEP_FIGURE, s->ntasks, 1);
  if (s->ntasks > 1) fprintf(g, "set multiplot layout 1,%d\n", s->ntasks);
  int block = 0, any = 0;
  for (int t = 0; t < s->ntasks; t++) {
    fprintf(g, "set title '%s: final validation accuracy vs pre-training time (labels: "
            "pre-trained epoch)'\nset xlabel 'wall-clock time of pre-training, seconds'\n"
            "set ylabel 'final validation accuracy'\nset key title 'run'\nset xrange [0:*]\n"
            "set offsets graph 0.03, graph 0.08, graph 0.08, graph 0.08\nplot ",
            task_title(s->tasks[t]));
    int lines = 0;
    for (int i = 0; i < s->nruns; i++) {
      const RunData *d = s->runs[i].data;
      int n = 0;
      fprintf(f, "# %s %s: pretrain_wall_s final_epoch_accuracy pretrained_epoch\n",
              s->runs[i].name, s->tasks[t]);
      for (int k = 0; d && k < d->njobs; k++) {
        const Job *j = &d->jobs[k];
        if (strcmp(j->task, s->tasks[t]) != 0 || isnan(j->final_acc) || j->pretrain_wall_s < 0)
          continue;
        fprintf(f, "%.10g %.10g %d\n", j->pretrain_wall_s, j->final_acc, j->epoch);
        n++;
      }
      fputs("\n\n", f);
      if (n) {
        const char *c = COLORS[i % ARRAY_LEN(COLORS)];
        fprintf(g, "%s'data/sweep_wallclock_accuracy.dat' index %d using 1:2 with linespoints "
                "pt 7 ps 1.2 lw 2 lc rgb '%s' title '%s', '' index %d using 1:2:3 with labels "
                "offset 0,1 font ',9' tc rgb '%s' notitle", lines ? ", \\\n  " : "", block, c,
                s->runs[i].name, block, c);
        lines++;
      }
      block++;
    }
    if (!lines) fputs("NaN notitle", g);
    fputc('\n', g);
    any += lines;
  }
  if (s->ntasks > 1) fputs("unset multiplot\n", g);
  report_close(f, dat);
  report_close(g, gp);
  if (!any || !o->figures) return 0;
  return report_render(dir, SWEEP_FIGURE, o) == 0 ? 1 : -1;
}

/* Pre-training's last step and wall-clock time; 0 when it has none. */
static int pretrain_reached(const RunData *d, double *step, double *wall) {
  const Pretrain *p = &d->pre;
  int cs = pretrain_col(p, "step"), cw = pretrain_col(p, "wall_s");
  if (p->n == 0 || cs < 0) return 0;
  const double *last = p->v + (p->n - 1) * (size_t)p->ncols;
  *step = last[cs];
  *wall = cw >= 0 ? last[cw] : -1;
  return 1;
}

static void runs_table(FILE *f, const SweepData *s) {
  fputs("| run | overrides | model | global batch | pre-training reached | fine-tuning jobs | "
        "run report |\n|---|---|---|---|---|---|---|\n", f);
  for (int i = 0; i < s->nruns; i++) {
    const SRun *r = &s->runs[i];
    const Config *c = &r->cfg;
    char reached[128] = "not started", wall[64];
    int done = 0, failed = 0, other = 0;
    double step, w;
    if (r->data && pretrain_reached(r->data, &step, &w)) {
      report_fmt_seconds(wall, sizeof wall, w);
      path_fmt(reached, sizeof reached, "step %.0f of %lld, %s", step,
               (long long)c->pretrain.epochs * c->pretrain.steps_per_epoch, wall);
    }
    for (int k = 0; r->data && k < r->data->njobs; k++) {
      const char *st = r->data->jobs[k].status.state;
      done += strcmp(st, "done") == 0;
      failed += strcmp(st, "failed") == 0;
      other += strcmp(st, "done") != 0 && strcmp(st, "failed") != 0;
    }
    fprintf(f, "| %s | %s | L%d/H%d/A%d/I%d | %d | %s | %d done, %d failed, %d other | ", r->name,
            r->sets[0] ? r->sets : "-", c->model.layers, c->model.hidden, c->model.heads,
            c->model.intermediate, c->pretrain.batch_size, reached, done, failed, other);
    if (r->data) fprintf(f, "[Report.md](../%s/report/Report.md) |\n", r->name);
    else fputs("- |\n", f);
  }
  fputc('\n', f);
}

/* The latest milestone of d's task jobs with pre-training time <= t. */
static const Job *latest_by(const RunData *d, const char *task, double t) {
  const Job *best = NULL;
  for (int k = 0; d && k < d->njobs; k++) {
    const Job *j = &d->jobs[k];
    if (strcmp(j->task, task) != 0 || isnan(j->final_acc) || j->pretrain_wall_s < 0 ||
        j->pretrain_wall_s > t)
      continue;
    if (!best || j->pretrain_wall_s > best->pretrain_wall_s) best = j;
  }
  return best;
}

static void task_findings(FILE *f, const SweepData *s, const char *task) {
  fprintf(f, "**%s**\n\n", task_title(task));
  double common = INFINITY;
  int with = 0;
  for (int i = 0; i < s->nruns; i++) {
    const Job *top = NULL, *last = NULL;
    for (int k = 0; s->runs[i].data && k < s->runs[i].data->njobs; k++) {
      const Job *j = &s->runs[i].data->jobs[k];
      if (strcmp(j->task, task) != 0 || isnan(j->final_acc)) continue;
      if (!top || j->final_acc > top->final_acc) top = j;
      if (!last || j->epoch > last->epoch) last = j;
    }
    if (!top) {
      fprintf(f, "- %s: no finished fine-tuning job yet.\n", s->runs[i].name);
      continue;
    }
    char w[64];
    report_fmt_seconds(w, sizeof w, top->pretrain_wall_s);
    fprintf(f, "- %s: best validation accuracy %.4f, from pre-trained epoch %d (%s of "
            "pre-training); its latest finished milestone, epoch %d, reaches %.4f.\n",
            s->runs[i].name, top->final_acc, top->epoch, w, last->epoch, last->final_acc);
    if (last->pretrain_wall_s >= 0 && last->pretrain_wall_s < common) common = last->pretrain_wall_s;
    with++;
  }
  if (with >= 2 && isfinite(common)) {
    char w[64];
    report_fmt_seconds(w, sizeof w, common);
    fprintf(f, "- For the same pre-training time (%s, as far as every run has got), each run's "
            "latest milestone by then scores:", w);
    for (int i = 0; i < s->nruns; i++) {
      const Job *j = latest_by(s->runs[i].data, task, common);
      if (j) fprintf(f, " %s %.4f (epoch %d);", s->runs[i].name, j->final_acc, j->epoch);
    }
    fputs(" the figure shows the whole curves.\n", f);
  }
  fputc('\n', f);
}

static void results_table(FILE *f, const SweepData *s) {
  fputs("| run | task | pre-trained epoch | step | pre-training wall-clock | validation accuracy "
        "| F1 | status |\n|---|---|---|---|---|---|---|---|\n", f);
  for (int i = 0; i < s->nruns; i++) {
    const RunData *d = s->runs[i].data;
    for (int k = 0; d && k < d->njobs; k++) {
      const Job *j = &d->jobs[k];
      char wall[64], acc[32], f1[32];
      report_fmt_seconds(wall, sizeof wall, j->pretrain_wall_s);
      fmt_num(acc, sizeof acc, j->final_acc, "%.4f");
      fmt_num(f1, sizeof f1, j->final_f1, "%.4f");
      fprintf(f, "| %s | %s | %d%s | %ld | %s | %s | %s | %s |\n", s->runs[i].name,
              task_title(j->task), j->epoch, j->epoch == 0 ? d->baseline_label : "",
              j->global_step, wall, acc, f1, j->status.state[0] ? j->status.state : "unknown");
    }
  }
  fputc('\n', f);
}

static void write_markdown(const SweepData *s, const char *dir, int figure_made) {
  char path[PATH_MAX], tmp[PATH_MAX + 8];
  path_fmt(path, sizeof path, "%s/Report.md", dir);
  path_fmt(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = report_open(tmp);
  fprintf(f, "# Sweep report: %s\n\n%d run%s of one experiment with different settings. Rebuilt "
          "by `bertrain report --sweep %s` (each run's own report too); the numbers are in "
          "`sweep.csv` beside this file.\n\n## Runs\n\n", s->dir, s->nruns,
          s->nruns == 1 ? "" : "s", s->dir);
  runs_table(f, s);
  fputs("## Findings\n\n", f);
  if (s->ntasks == 0) fputs("No fine-tuning job has finished in any run yet.\n\n", f);
  for (int t = 0; t < s->ntasks; t++) task_findings(f, s, s->tasks[t]);
  fputs("## Fine-tuning accuracy vs pre-training time\n\n", f);
  if (figure_made)
    fputs("![Final validation accuracy vs pre-training wall-clock time, one line per run]"
          "(./" SWEEP_FIGURE ")\n\n", f);
  else
    fputs("(No figure: no finished job, or gnuplot could not render it; the script is in "
          "`data/`.)\n\n", f);
  fputs("## Results\n\n", f);
  results_table(f, s);
  report_close(f, tmp);
  if (rename(tmp, path) != 0) die("cannot rename %s to %s: %s", tmp, path, strerror(errno));
}

int report_sweep_build(const char *sweep_dir, const ReportOpts *o) {
  struct stat st;
  if (stat(sweep_dir, &st) != 0 || !S_ISDIR(st.st_mode)) die("%s: no such sweep directory", sweep_dir);
  SweepData s = {sweep_dir, NULL, 0, NULL, 0};
  find_runs(&s);
  if (s.nruns == 0)
    die("%s: no run directories in it (subdirectories with config.ini): not a sweep directory",
        sweep_dir);
  int failed = load_runs(&s, o);
  char dir[PATH_MAX];
  path_fmt(dir, sizeof dir, "%s/report", sweep_dir);
  make_dirs(dir);
  write_csv(&s, dir);
  int fig = figure(&s, dir, o);
  failed += fig < 0;
  write_markdown(&s, dir, fig > 0);
  for (int i = 0; i < s.nruns; i++) {
    if (s.runs[i].data) run_data_free(s.runs[i].data);
    config_free(&s.runs[i].cfg);
  }
  for (int t = 0; t < s.ntasks; t++) free(s.tasks[t]);
  free(s.tasks);
  free(s.runs);
  return failed;
}
