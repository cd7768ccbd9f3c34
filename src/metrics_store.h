/* The run's metrics in one place: every fine-tuning job directory
 * (run_files.h) and the pre-training curves, read into memory and written as
 * RUN_DIR/metrics.h5 and RUN_DIR/metrics.csv.
 *
 * metrics.csv (long format, rows in a fixed order so that a rebuild from the
 * same files is byte-identical):
 *   task,pretrained_epoch,phase,step,epoch,metric,value
 *   ,,pretrain,STEP,EPOCH,COLUMN,VALUE      pre-training curves (COLUMN of
 *        pretrain/metrics.csv other than step, epoch and wall_s), every
 *        step, or every k-th (and the last) when there are more than
 *        STORE_PRETRAIN_ROWS steps; metrics.h5 has them all
 *   TASK,E,milestone,STEP,E,global_step|pretrain_wall_s,VALUE
 *   TASK,E,train|validation,STEP,EPOCH,METRIC,VALUE   the job's metrics.csv
 *   ordered: pretrain rows; then jobs by task name and pre-trained epoch,
 *   each with its milestone rows and then its rows in file order.
 * Values are written in the shortest form that reads back to the same double.
 *
 * metrics.h5 (format "bertrain-metrics", format_version 1):
 *   /pretrain/<column>    float64 [steps], one per column of
 *                         pretrain/metrics.csv (step as int64)
 *   /finetune/TASK/epoch-NNNN   a group per job, attributes: task,
 *       pretrained_epoch, global_step, pretrain_wall_s, status, exit_code,
 *       log, checkpoint, job_id, reason, final_epoch_accuracy, final_f1
 *       (NaN when absent)
 *     <phase>/<metric>    compound {step int64, epoch int32, value float64},
 *                         e.g. train/batch_accuracy, train/loss,
 *                         validation/epoch_accuracy, validation/f1
 * Both files are written under a temporary name and renamed into place. */
#ifndef BERTRAIN_METRICS_STORE_H
#define BERTRAIN_METRICS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "run_files.h"

#define STORE_PRETRAIN_ROWS 5000

typedef struct Series {
  char *phase, *metric;
  size_t n, cap;
  int64_t *step;
  int *epoch;
  double *value;
} Series;

typedef struct RowRef {
  int series;
  size_t index;
} RowRef;

typedef struct Job {
  char task[32];
  int epoch;                 /* pre-trained epoch */
  char dir[PATH_MAX];        /* relative to the run directory */
  JobStatus status;          /* state "" when the job has no status file */
  long global_step;          /* -1 when unknown */
  double pretrain_wall_s;    /* < 0 when unknown */
  Series *series;
  int nseries;
  RowRef *rows;              /* metrics.csv's rows in file order */
  size_t nrows, rows_cap;
  double final_acc, final_f1; /* last validation values; NaN when absent */
  int final_epoch;            /* fine-tuning epoch of final_acc; 0 when absent */
} Job;

typedef struct Pretrain {
  char **cols;  /* header of pretrain/metrics.csv */
  int ncols;
  double *v;    /* n rows of ncols */
  size_t n, cap;
} Pretrain;

typedef struct RunData {
  char *run_dir;
  Pretrain pre;
  Job *jobs;    /* by task, then pre-trained epoch */
  int njobs;
  char **tasks; /* distinct task names, sorted */
  int ntasks;
  /* pretrain.init_checkpoint of RUN_DIR/config.ini: the weights the run
   * started from, so the epoch-0 baseline; "" for random initialisation */
  char *init_checkpoint;
  const char *baseline_label; /* after epoch 0: " (random init)" or " (initial weights)" */
} RunData;

/* Reads RUN_DIR/pretrain/metrics.csv (if any) and every job directory under
 * RUN_DIR/finetune. Incomplete last lines (a job still writing) are ignored;
 * malformed lines are reported with FILE:LINE and skipped. A job whose
 * status says failed but whose model.h5 is newer than the status file was
 * re-run by hand, and counts as done. */
RunData *run_data_load(const char *run_dir);
void run_data_free(RunData *d);

/* Writes RUN_DIR/metrics.h5 and RUN_DIR/metrics.csv. */
void metrics_store_write(const RunData *d);

/* The job's series for phase and metric, or NULL. */
const Series *job_series(const Job *j, const char *phase, const char *metric);
/* Index of a pre-training column, or -1. */
int pretrain_col(const Pretrain *p, const char *name);
/* Rows of the pre-training curves kept in metrics.csv, TensorBoard and the
 * figures: every stride-th, and the last. */
size_t pretrain_stride(const Pretrain *p);
int pretrain_row_kept(const Pretrain *p, size_t i);

#endif
