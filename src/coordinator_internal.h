/* Shared between coordinator.c (jobs, process launcher, report refresh) and
 * coordinator_slurm.c (the slurm launcher). */
#ifndef BERTRAIN_COORDINATOR_INTERNAL_H
#define BERTRAIN_COORDINATOR_INTERNAL_H

#include <signal.h>
#include <sys/types.h>

#include "coordinator.h"
#include "run_files.h"

typedef enum { L_NONE, L_INLINE, L_PROCESS, L_SLURM } Launcher;
typedef enum { J_QUEUED, J_SUBMITTED, J_RUNNING, J_DONE, J_FAILED } JobState;

typedef struct CJob {
  CoordJob spec;
  JobState state;
  pid_t pid;          /* process launcher */
  char job_id[64];    /* slurm launcher */
  int misses;         /* slurm: polls that found the job nowhere */
} CJob;

typedef struct TaskSpec {
  char task[32];
  char data[PATH_MAX];
} TaskSpec;

struct Coordinator {
  Launcher launcher;
  char run_dir[PATH_MAX];
  char bertrain[PATH_MAX];
  char *command;      /* finetune.command */
  char sbatch[PATH_MAX];
  int max_parallel, baseline, writer;
  long seed;
  TaskSpec *tasks;
  int ntasks;
  CJob *jobs;
  int njobs;
  size_t cap;
  char **env;         /* the children's environment */
  pid_t report_pid;
  int report_dirty;
  double poll_interval, last_slurm_poll;
  volatile sig_atomic_t *stop_flag;
};

extern const char *const JOB_STATE_NAMES[];

/* Spawns /bin/sh -c cmd with c's environment, stdin from /dev/null and
 * stdout and stderr appended to log (NULL: inherited); returns the pid or
 * -1 (errno set). */
pid_t coord_spawn(const Coordinator *c, const char *cmd, const char *log);
/* Runs cmd to its end, its standard output into out (n bytes, NUL-ended,
 * cut if longer) and standard error appended to err_log (NULL: discarded).
 * Returns its exit status, or 127 when it could not be started. */
int coord_capture(const Coordinator *c, const char *cmd, char *out, size_t n, const char *err_log);

/* Writes the job's status file from its state (rank 0). */
void coord_write_status(const Coordinator *c, const CJob *j, int exit_code, const char *reason);
/* Marks a job finished, writes its status, says so and refreshes the report. */
void coord_job_finished(Coordinator *c, CJob *j, int exit_code, const char *reason);

/* Rebuilds the report in the background (again once the current build
 * ends, when one is under way). */
void coord_report_request(Coordinator *c);

void slurm_submit(Coordinator *c, CJob *j);
/* force: ignore the poll interval. */
void slurm_poll(Coordinator *c, int force);

#endif
