/* The small text files that tie a run directory's fine-tuning jobs together,
 * shared by the coordinator (which writes them), the Slurm job script
 * slurm/finetune.sbatch (which writes the status file too) and the metrics
 * store (which reads them).
 *
 * Layout:
 *   RUN_DIR/finetune/epoch-NNNN/milestone.txt   the milestone the jobs start from
 *   RUN_DIR/finetune/epoch-NNNN/                the job, when one task is configured
 *   RUN_DIR/finetune/epoch-NNNN/TASK/           a job each, when several are
 * and in each job directory:
 *   status          its state, below
 *   finetune.log    standard output and error of 'bertrain finetune'
 *   metrics.csv, config.ini, model.h5   what 'bertrain finetune --out' writes
 *
 * Both files are "key=value" lines. milestone.txt: epoch, global_step,
 * pretrain_wall_s (seconds of pre-training when the checkpoint was written),
 * checkpoint (relative to RUN_DIR when inside it). status: state (queued |
 * submitted | running | done | failed), exit_code, log, task, data,
 * checkpoint, launcher, seed, job_id (Slurm), reason (why it failed, when
 * not a plain exit code), pid and host (a running process job: its process
 * group and the machine it runs on). Unknown keys are kept and ignored. */
#ifndef BERTRAIN_RUN_FILES_H
#define BERTRAIN_RUN_FILES_H

#include <limits.h>
#include <stddef.h>

#include "util.h"

#define JOB_STATUS_FILE "status"
#define JOB_LOG_FILE "finetune.log"
#define MILESTONE_FILE "milestone.txt"

typedef struct JobStatus {
  char state[16];     /* "" when there is no status file */
  int exit_code;      /* -1 when unknown */
  long seed;          /* -1 when unknown */
  char task[32];
  char launcher[16];
  char job_id[64];
  long pid;           /* -1 when unknown */
  char host[256];
  char log[PATH_MAX];
  char data[PATH_MAX];
  char checkpoint[PATH_MAX];
  char reason[256];
} JobStatus;

typedef struct Milestone {
  int epoch;
  long global_step;      /* -1 when unknown */
  double pretrain_wall_s; /* < 0 when unknown */
  char checkpoint[PATH_MAX];
} Milestone;

void job_status_init(JobStatus *s);
/* Writes DIR/status atomically. */
void job_status_write(const char *dir, const JobStatus *s);
/* Reads DIR/status into s (job_status_init first); returns 0 when there is
 * none. Malformed lines are reported and skipped. */
int job_status_read(const char *dir, JobStatus *s);

/* Writes DIR/milestone.txt atomically. */
void milestone_write(const char *dir, const Milestone *m);
/* Reads DIR/milestone.txt; returns 0 when there is none. */
int milestone_read(const char *dir, Milestone *m);

/* RUN_DIR/finetune/epoch-NNNN, and with task non-NULL .../epoch-NNNN/TASK. */
void job_dir(char *buf, size_t n, const char *run_dir, int epoch, const char *task);
/* path relative to run_dir when it lies inside it, else its absolute form. */
void path_in_run(char *buf, size_t n, const char *run_dir, const char *path);
/* A path recorded relative to run_dir made usable again. */
void path_from_run(char *buf, size_t n, const char *run_dir, const char *path);

/* The shortest %.*g form of v that reads back as v (n >= 32); whole
 * numbers below 1e15 as integers. */
void format_double(char *buf, size_t n, double v);

/* snprintf for paths and command lines: dies when the result does not fit
 * instead of cutting it short. */
void path_fmt(char *buf, size_t n, const char *fmt, ...) PRINTF_LIKE(3, 4);
/* path's file name without its extension ("configs/bert-mini.ini" gives
 * "bert-mini"; a leading dot is kept), through path_fmt. */
void path_stem(char *buf, size_t n, const char *path);

/* s in single quotes for /bin/sh when it holds anything but
 * [A-Za-z0-9_./:=+,@%-]; dies when it does not fit in n. */
void shell_quote(char *buf, size_t n, const char *s);

#endif
