/* bertrain report RUN_DIR: rebuilds the run's metrics store, TensorBoard
 * files and report from the files in the run directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "report.h"
#include "util.h"

static int run(int argc, char **argv) {
  int no_figures = 0, sweep = 0;
  const char *gnuplot = NULL;
  CliOpt opts[] = {{"no-figures", OPT_FLAG, &no_figures}, {"gnuplot", OPT_STRING, &gnuplot},
                   {"sweep", OPT_FLAG, &sweep}};
  Config cfg;
  char **args = cli_options_first(argc, argv, opts, (int)ARRAY_LEN(opts));
  int first = cli_parse(&CMD_REPORT, argc, args, opts, (int)ARRAY_LEN(opts), &cfg);
  config_free(&cfg);
  if (first >= argc) die("report: no directory given (usage: bertrain report [--sweep] DIR)");
  if (first + 1 < argc) die("report: one run directory expected, got '%s' too", args[first + 1]);
  const char *dir = args[first];
  ReportOpts o = {!no_figures, gnuplot};
  if (sweep) {
    int failed = report_sweep_build(dir, &o);
    printf("report: %s/report/Report.md, the runs side by side in %s/report/sweep.csv\n", dir, dir);
    if (failed) printf("report: %d figure(s) could not be rendered (see the warnings)\n", failed);
    free(args);
    return 0;
  }
  int failed = report_build(dir, &o);
  printf("report: %s/report/Report.md, metrics in %s/metrics.h5 and %s/metrics.csv, TensorBoard "
         "files in %s/tb\n", dir, dir, dir, dir);
  if (failed) printf("report: %d figure(s) could not be rendered (see the warnings)\n", failed);
  free(args);
  return 0;
}

const Command CMD_REPORT = {
  "report", "rebuild a run's metrics store, TensorBoard files and report",
  "usage: bertrain report RUN_DIR [--no-figures] [--gnuplot PROGRAM]\n"
  "       bertrain report --sweep SWEEP_DIR [--no-figures] [--gnuplot PROGRAM]\n\n"
  "Reads what the run directory holds (pretrain/metrics.csv and every\n"
  "fine-tuning job under finetune/epoch-NNNN/: status, metrics.csv,\n"
  "milestone.txt) and writes, replacing the previous versions:\n"
  "  metrics.csv   long format: task,pretrained_epoch,phase,step,epoch,metric,value\n"
  "                (rebuilt from the same files it is byte-identical)\n"
  "  metrics.h5    per task and pre-trained epoch (/finetune/TASK/epoch-NNNN):\n"
  "                train and validation series, the checkpoint's pre-training\n"
  "                step and wall-clock time, the job's status; /pretrain: the\n"
  "                pre-training curves\n"
  "  tb/           TensorBoard event files (tb/pretrain, tb/finetune/...)\n"
  "  report/Report.md and its figures (gnuplot, pngcairo):\n"
  "                figure_batch_accuracy.png, figure_epoch_accuracy.png,\n"
  "                wallclock_accuracy.png, pretrain_loss.png\n"
  "Jobs still running are included with what they have written so far; a job\n"
  "that failed and was re-run by hand into its directory counts as done.\n"
  "Needs no MPI: run it on a login node while the run goes on, or after.\n\n"
  "With --sweep, SWEEP_DIR holds the runs of a sweep (bertrain help sweep), one\n"
  "run directory each: every run's report is rebuilt as above, then\n"
  "SWEEP_DIR/report/ gets Report.md (the runs, their settings and progress,\n"
  "findings per task, a table of every milestone's final validation accuracy\n"
  "and F1), sweep.csv (run,task,pretrained_epoch,global_step,pretrain_wall_s,\n"
  "epoch_accuracy,f1,status) and sweep_wallclock_accuracy.png: final validation\n"
  "accuracy vs pre-training wall-clock time, one line per run.\n\n"
  "options:\n"
  "  --sweep           SWEEP_DIR is a sweep directory (above)\n"
  "  --no-figures      skip rendering the PNGs (their gnuplot scripts are\n"
  "                    still written to report/data/)\n"
  "  --gnuplot PROGRAM the gnuplot to run (default: gnuplot on PATH)\n",
  run, 0,
};
