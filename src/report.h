/* The report of a run: everything 'bertrain report RUN_DIR' rebuilds from
 * the run directory's files (metrics_store.h), and the coordinator after
 * every finished fine-tuning job:
 *   RUN_DIR/metrics.h5, RUN_DIR/metrics.csv   the metrics store
 *   RUN_DIR/tb/pretrain/                      TensorBoard: pre-training curves
 *   RUN_DIR/tb/finetune/JOB/{train,validation}/     each job's curves
 *   RUN_DIR/report/Report.md                  tables, findings, config, command
 *   RUN_DIR/report/NAME.png                    figures (gnuplot, pngcairo)
 *   RUN_DIR/report/figures.gp, report/data/   the figures' script and data
 * It needs no MPI and no GPU: it runs on a login node. */
#ifndef BERTRAIN_REPORT_H
#define BERTRAIN_REPORT_H

#include <stdio.h>

#include "metrics_store.h"

/* Where the run's command line is kept for the report (written by the
 * coordinator, coord_set_command). */
#define RUN_COMMAND_FILE "command.txt"

typedef struct ReportOpts {
  int figures;      /* render the PNGs with gnuplot */
  const char *gnuplot; /* the gnuplot program; NULL = "gnuplot" */
} ReportOpts;

/* Rebuilds everything above. Returns the number of figures that could not be
 * rendered (each reported with warn), 0 when all were. */
int report_build(const char *run_dir, const ReportOpts *o);

/* Parts, for report_build. */
void report_tensorboard(const RunData *d);
/* Writes the figures' data and scripts under dir/data and runs gnuplot;
 * sets made[i] for each of the REPORT_FIGURES figures rendered. Returns how
 * many had data but could not be rendered. */
#define REPORT_FIGURES 4
extern const char *const REPORT_FIGURE_NAMES[REPORT_FIGURES];
int report_figures(const RunData *d, const char *dir, const ReportOpts *o,
                   int made[REPORT_FIGURES]);
void report_markdown(const RunData *d, const char *dir, const int made[REPORT_FIGURES]);

/* Figure helpers, shared with the sweep report. */
FILE *report_open(const char *path);          /* dies naming path */
void report_close(FILE *f, const char *path); /* dies on a write error */
/* The common gnuplot settings; output NAME.tmp, panels x rows panels. */
void report_gp_preamble(FILE *g, const char *name, int panels, int rows);
/* Runs gnuplot on DIR/data/STEM.gp (NAME = STEM.png), which writes NAME.tmp,
 * and renames it to DIR/NAME. Returns 0, or non-zero after a warning (127:
 * no gnuplot). */
int report_render(const char *dir, const char *name, const ReportOpts *o);
/* Seconds as "12.3 s", or "4000 s (1.1 h)" from an hour on; "?" when
 * unknown (negative or NaN). */
void report_fmt_seconds(char *buf, size_t n, double s);
/* "MRPC", "SST-2", or the name itself. */
const char *task_title(const char *task);

/* bertrain report --sweep DIR: rebuilds each run's report, then DIR/report/
 * (Report.md, sweep.csv, the cross-run figures). Returns the number of
 * figures that could not be rendered. */
int report_sweep_build(const char *sweep_dir, const ReportOpts *o);

/* The pre-trained epochs' final validation accuracies of one task, from
 * which the report's findings are computed. */
typedef struct Findings {
  int n;             /* finished pre-trained milestones (epoch > 0) */
  int have_baseline; /* epoch 0 finished */
  double baseline;
  double first, last;      /* first and last milestone */
  int first_epoch, last_epoch;
  double best; int best_epoch;
  double early_mean, late_mean; /* earlier and later half of the milestones */
  int half;                     /* milestones in each half */
  int early_lo, early_hi, late_lo, late_hi; /* their epochs */
  double spearman;              /* epoch vs accuracy; NaN under 3 milestones */
  int above_baseline;           /* milestones above the baseline */
  int rises;                    /* milestone-to-milestone increases, of n - 1 */
} Findings;
void report_findings(const RunData *d, const char *task, Findings *f);

/* Accuracy of always answering the majority class on task's dev set, read
 * from the data directory its jobs used (status file); NaN when that is not
 * readable from here. */
double task_majority_rate(const RunData *d, const char *task);

#endif
