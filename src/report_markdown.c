/* RUN_DIR/report/Report.md: findings in words, the results table, the
 * figures, the pre-training summary, how to reproduce the run, and its
 * configuration. Everything stated is computed from the metrics store. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "util.h"

const char *task_title(const char *task) {
  if (strcmp(task, "mrpc") == 0) return "MRPC";
  if (strcmp(task, "sst2") == 0) return "SST-2";
  return task;
}

void report_fmt_seconds(char *buf, size_t n, double s) {
  if (s < 0 || isnan(s)) path_fmt(buf, n, "?");
  else if (s < 3600) path_fmt(buf, n, "%.1f s", s);
  else path_fmt(buf, n, "%.0f s (%.1f h)", s, s / 3600);
}

static void fmt_val(char *buf, size_t n, double v) {
  if (isnan(v)) path_fmt(buf, n, "-");
  else path_fmt(buf, n, "%.4f", v);
}

static void majority_note(FILE *f, const RunData *d, const char *task) {
  double rate = task_majority_rate(d, task);
  if (isnan(rate)) return;
  int total = 0, at = 0;
  for (int i = 0; i < d->njobs; i++) {
    const Job *j = &d->jobs[i];
    if (strcmp(j->task, task) != 0 || isnan(j->final_acc)) continue;
    total++;
    at += fabs(j->final_acc - rate) < 1e-9;
  }
  fprintf(f, "- Always answering the dev set's majority class would score %.4f. ", rate);
  if (at == 0) fprintf(f, "No job ends exactly there.\n");
  else fprintf(f, "%d of %d jobs end exactly there: they may be predicting a single class.\n", at,
               total);
}

static void findings(FILE *f, const RunData *d, const char *task) {
  Findings r;
  report_findings(d, task, &r);
  int jobs = 0, failed = 0, unfinished = 0;
  for (int i = 0; i < d->njobs; i++) {
    const Job *j = &d->jobs[i];
    if (strcmp(j->task, task) != 0) continue;
    jobs++;
    failed += strcmp(j->status.state, "failed") == 0;
    unfinished += strcmp(j->status.state, "done") != 0 && strcmp(j->status.state, "failed") != 0;
  }
  fprintf(f, "**%s** (%d job%s: %d finished from pre-trained checkpoints%s, %d failed, %d not "
          "finished):\n\n", task_title(task), jobs, jobs == 1 ? "" : "s", r.n,
          r.have_baseline ? " plus the epoch-0 baseline" : "", failed, unfinished);
  if (r.have_baseline && d->init_checkpoint[0])
    fprintf(f, "- Fine-tuning the weights the run started from (pre-trained epoch 0: %s, "
            "pretrain.init_checkpoint) reaches validation accuracy %.4f.\n", d->init_checkpoint,
            r.baseline);
  else if (r.have_baseline)
    fprintf(f, "- Fine-tuning the untrained, randomly initialised model (pre-trained epoch 0) "
            "reaches validation accuracy %.4f.\n", r.baseline);
  if (r.n == 0) {
    fprintf(f, "- No fine-tuning job from a pre-trained checkpoint has finished yet.\n\n");
    return;
  }
  fprintf(f, "- The best checkpoint is pre-trained epoch %d with validation accuracy %.4f", r.best_epoch,
          r.best);
  if (r.have_baseline) fprintf(f, " (%+.1f points over epoch 0)", 100 * (r.best - r.baseline));
  fprintf(f, "; the first milestone (epoch %d) reaches %.4f and the last (epoch %d) %.4f.\n",
          r.first_epoch, r.first, r.last_epoch, r.last);
  if (r.half > 0) {
    double diff = r.late_mean - r.early_mean;
    const char *verdict = fabs(diff) < 0.005 ? "Later milestones reach about the same validation "
                                               "accuracy as earlier ones"
                          : diff > 0 ? "Later milestones reach higher validation accuracy than "
                                       "earlier ones"
                                     : "Later milestones reach lower validation accuracy than "
                                       "earlier ones";
    fprintf(f, "- %s: the later half of the milestones (epochs %d-%d) averages %.4f, the "
            "earlier half (epochs %d-%d) %.4f (%+.1f points)", verdict, r.late_lo, r.late_hi,
            r.late_mean, r.early_lo, r.early_hi, r.early_mean, 100 * diff);
    if (!isnan(r.spearman))
      fprintf(f, "; rank correlation between pre-trained epoch and accuracy %.2f", r.spearman);
    fprintf(f, ". Accuracy rose from one milestone to the next %d of %d times.\n", r.rises, r.n - 1);
  }
  if (r.have_baseline)
    fprintf(f, "- %d of %d pre-trained milestones end above the epoch-0 baseline.\n",
            r.above_baseline, r.n);
  majority_note(f, d, task);
  fputc('\n', f);
}

/* The last line of a log that reports an error, for failed jobs. */
static void last_error(const char *path, char *buf, size_t n) {
  buf[0] = '\0';
  FILE *f = fopen(path, "r");
  if (!f) return;
  char line[1024];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = '\0';
    if (strstr(line, "error")) path_fmt(buf, n, "%s", line);
  }
  fclose(f);
}

static void table(FILE *f, const RunData *d, const char *task) {
  fprintf(f, "### %s\n\n| pre-trained epoch | global step | pre-training time | final val. "
          "accuracy | final F1 | best val. accuracy (ft epoch) | status |\n"
          "|---:|---:|---:|---:|---:|---:|:---|\n", task_title(task));
  for (int i = 0; i < d->njobs; i++) {
    const Job *j = &d->jobs[i];
    if (strcmp(j->task, task) != 0) continue;
    char t[64], acc[32], f1[32], best[64] = "-", step[32] = "?";
    report_fmt_seconds(t, sizeof t, j->pretrain_wall_s);
    fmt_val(acc, sizeof acc, j->final_acc);
    fmt_val(f1, sizeof f1, j->final_f1);
    if (j->global_step >= 0) path_fmt(step, sizeof step, "%ld", j->global_step);
    const Series *s = job_series(j, "validation", "epoch_accuracy");
    if (s && s->n) {
      size_t b = 0;
      for (size_t k = 1; k < s->n; k++)
        if (s->value[k] > s->value[b]) b = k;
      path_fmt(best, sizeof best, "%.4f (%d)", s->value[b], s->epoch[b]);
    }
    fprintf(f, "| %d%s | %s | %s | %s | %s | %s | %s", j->epoch, j->epoch == 0 ? d->baseline_label : "",
            step, t, acc, f1, best, j->status.state);
    if (strcmp(j->status.state, "failed") == 0 && j->status.exit_code >= 0)
      fprintf(f, " (exit %d)", j->status.exit_code);
    fputs(" |\n", f);
  }
  fputc('\n', f);
  for (int i = 0; i < d->njobs; i++) {
    const Job *j = &d->jobs[i];
    if (strcmp(j->task, task) != 0 || strcmp(j->status.state, "failed") != 0) continue;
    char log[PATH_MAX], err[1024], why[300];
    path_from_run(log, sizeof log, d->run_dir, j->status.log);
    last_error(log, err, sizeof err);
    if (j->status.reason[0]) path_fmt(why, sizeof why, "%s", j->status.reason);
    else path_fmt(why, sizeof why, "exit code %d", j->status.exit_code);
    fprintf(f, "- Failed: pre-trained epoch %d (`%s`): %s; log `%s`", j->epoch, j->dir, why,
            j->status.log[0] ? j->status.log : "(none)");
    if (err[0]) fprintf(f, ": `%s`", err);
    fputc('\n', f);
  }
}

static void pretrain_summary(FILE *f, const RunData *d) {
  const Pretrain *p = &d->pre;
  fputs("## Pre-training\n\n", f);
  int cs = pretrain_col(p, "step");
  if (!p->n || cs < 0) {
    fputs("No pre-training metrics (pretrain/metrics.csv) in this run directory.\n\n", f);
    return;
  }
  size_t k = p->n / 20 + 1; /* the last 5% of the steps */
  static const char *const COLS[] = {"loss", "mlm_loss", "nsp_loss", "mlm_acc", "nsp_acc", "seq_per_s"};
  const double *last = p->v + (p->n - 1) * (size_t)p->ncols;
  fprintf(f, "%zu steps recorded, up to step %.0f", p->n, last[cs]);
  int cw = pretrain_col(p, "wall_s");
  if (cw >= 0) fprintf(f, " after %.1f s", last[cw]);
  fprintf(f, ". Means over the last %zu step%s:", k, k == 1 ? "" : "s");
  for (size_t c = 0; c < ARRAY_LEN(COLS); c++) {
    int ci = pretrain_col(p, COLS[c]);
    if (ci < 0) continue;
    double s = 0;
    for (size_t i = p->n - k; i < p->n; i++) s += p->v[i * (size_t)p->ncols + ci];
    fprintf(f, "%s %s %.4g", c ? "," : "", COLS[c], s / (double)k);
  }
  fputs(".\n\n", f);
}

static void figures(FILE *f, const int made[REPORT_FIGURES]) {
  static const char *const CAPTIONS[REPORT_FIGURES] = {
    "Training batch accuracy while fine-tuning, one line per pre-trained epoch (darker = "
    "pre-trained longer; grey dashed = the epoch-0 baseline).",
    "Validation accuracy after each fine-tuning epoch, one line per pre-trained epoch.",
    "Final validation accuracy against the wall-clock time pre-training had taken at the "
    "checkpoint (labels: pre-trained epoch).",
    "Pre-training loss and masked-LM accuracy per step; dotted lines mark the milestones.",
  };
  fputs("## Figures\n\n", f);
  for (int i = 0; i < REPORT_FIGURES; i++) {
    if (made[i]) fprintf(f, "![%s](./%s)\n\n%s\n\n", REPORT_FIGURE_NAMES[i], REPORT_FIGURE_NAMES[i],
                         CAPTIONS[i]);
    else fprintf(f, "`%s`: not rendered (no data yet, or gnuplot unavailable; the script is in "
                 "data/).\n\n", REPORT_FIGURE_NAMES[i]);
  }
}

/* Copies file into f (fenced as lang), or says it is missing. */
static void include_file(FILE *f, const char *path, const char *lang, const char *missing) {
  FILE *in = fopen(path, "r");
  if (!in) {
    fprintf(f, "%s\n\n", missing);
    return;
  }
  fprintf(f, "```%s\n", lang);
  char buf[4096];
  size_t n;
  int last = '\n';
  while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
    fwrite(buf, 1, n, f);
    last = buf[n - 1];
  }
  fclose(in);
  if (last != '\n') fputc('\n', f);
  fputs("```\n\n", f);
}

static void reproduce(FILE *f, const RunData *d) {
  char path[PATH_MAX];
  fputs("## Reproducing this run\n\n", f);
  path_fmt(path, sizeof path, "%s/" RUN_COMMAND_FILE, d->run_dir);
  if (file_exists(path)) {
    fputs("The run was started with:\n\n", f);
    include_file(f, path, "sh", "");
  }
  fprintf(f, "Its resolved configuration (below) repeats it exactly: the seeds, data order and "
          "fine-tuning seeds follow from it (each fine-tuning job's seed is run.seed plus its "
          "pre-trained epoch). To run it again into a new directory:\n\n```sh\n"
          "bertrain pretrain --config %s/config.ini --set run.dir=NEW_DIR\n"
          "bertrain report NEW_DIR\n```\n\n"
          "This report is rebuilt from the run's files at any time with `bertrain report %s`.\n\n",
          d->run_dir, d->run_dir);
}

static void files_section(FILE *f, const RunData *d) {
  fprintf(f, "## Files\n\n"
          "- `metrics.csv`: every metric in long format (task, pretrained_epoch, phase, step, "
          "epoch, metric, value).\n"
          "- `metrics.h5`: the same, grouped per task and pre-trained epoch "
          "(`/finetune/TASK/epoch-NNNN`), with the pre-training curves in `/pretrain`.\n"
          "- `tb/`: TensorBoard event files: `tensorboard --logdir %s/tb`.\n"
          "- `finetune/epoch-NNNN/`: each job's log, metrics, weights and status.\n\n", d->run_dir);
}

void report_markdown(const RunData *d, const char *dir, const int made[REPORT_FIGURES]) {
  char *text = NULL, path[PATH_MAX];
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) die("out of memory writing the report");
  const char *base = strrchr(d->run_dir, '/');
  fprintf(f, "# Fine-tuning accuracy vs pre-training length: %s\n\n", base && base[1] ? base + 1 : d->run_dir);
  fprintf(f, "Each milestone checkpoint of pre-training was fine-tuned on the task(s) below; the "
          "curves show how downstream accuracy changes with the length of pre-training. Pre-trained "
          "epoch 0 is the baseline: the same fine-tuning from %s.\n\n",
          d->init_checkpoint[0] ? "the weights the run started from (pretrain.init_checkpoint)"
                                : "randomly initialised weights");
  fputs("## Findings\n\n", f);
  if (!d->ntasks) fputs("No fine-tuning jobs in this run directory yet.\n\n", f);
  for (int t = 0; t < d->ntasks; t++) findings(f, d, d->tasks[t]);
  fputs("## Results\n\n", f);
  for (int t = 0; t < d->ntasks; t++) table(f, d, d->tasks[t]);
  fputc('\n', f);
  figures(f, made);
  pretrain_summary(f, d);
  files_section(f, d);
  reproduce(f, d);
  fputs("## Configuration\n\n", f);
  path_fmt(path, sizeof path, "%s/config.ini", d->run_dir);
  include_file(f, path, "ini", "No config.ini in the run directory.");
  if (fclose(f) != 0) die("cannot write the report: %s", strerror(errno));
  path_fmt(path, sizeof path, "%s/Report.md", dir);
  write_file_atomic(path, text, len);
  free(text);
}
