/* The coordinator: fine-tunes every milestone checkpoint of a pre-training
 * run, as [finetune] launcher says, and keeps the run's metrics store and
 * report (report.h) up to date after every finished job.
 *
 * Launchers:
 *   none     no fine-tuning (the report is still built at the end).
 *   inline   the pre-training processes fine-tune each checkpoint themselves:
 *            coord_next_inline hands out the jobs, coord_job_done records
 *            each outcome.
 *   process  'bertrain finetune' as a separate process per job, from the
 *            command template finetune.command, at most finetune.max_parallel
 *            at once; pre-training goes on and coord_poll notices completion
 *            (waitpid WNOHANG), starts waiting jobs and refreshes the report.
 *   slurm    each job submitted with 'sbatch --parsable finetune.sbatch
 *            CHECKPOINT TASK DATA OUT --set run.seed=SEED'; the job id is
 *            recorded and followed with squeue, then sacct or scontrol once
 *            it has left the queue (the job script writes the status file
 *            itself; Slurm's verdict counts when it could not).
 *
 * Jobs: one per task of finetune.tasks ("TASK" or "TASK:DIR", DIR defaulting
 * to finetune.data; "" = finetune.task) per milestone, in
 * RUN_DIR/finetune/epoch-NNNN/ (one task) or RUN_DIR/finetune/epoch-NNNN/TASK/
 * (several); files as run_files.h describes. A job's seed is run.seed + the
 * pre-trained epoch, so a job is reproducible and each milestone has its own.
 * A failed job is recorded (state failed, exit code, log) and nothing else
 * stops.
 *
 * MPI: create the coordinator and make the same calls on every rank. Only
 * rank 0 writes files, starts processes and submits jobs; for inline every
 * rank gets the same jobs in the same order from coord_next_inline.
 *
 * Hooking into pre-training (the calls, in order):
 *   co = coord_new(&cfg, run_dir, NULL);            after run_dir/config.ini
 *   coord_set_command(co, argc, argv, world_size);   optional: for the report
 *   resumed: each m of coord_unfinished(co, epochs done, &m):
 *       coord_milestone(co, m.checkpoint, m.epoch, ...) (and run inline jobs)
 *   coord_baseline(co, t, host, &cfg, vocab);        initial weights = epoch 0
 *   ... each step:            coord_poll(co);
 *   ... each milestone, after checkpoints/epoch-NNNN.h5 is written:
 *       coord_milestone(co, path, epoch, wall_seconds, step);
 *       with inline:  while (coord_next_inline(co, &job))
 *                       coord_job_done(co, &job, finetune_run(&cfg, &args of job));
 *   coord_finish(co) at the end, or coord_stop(co) on a stop signal;
 *   coord_free(co).
 */
#ifndef BERTRAIN_COORDINATOR_H
#define BERTRAIN_COORDINATOR_H

#include <limits.h>
#include <signal.h>

#include "config.h"
#include "params.h"
#include "run_files.h"
#include "vocab.h"

typedef struct Coordinator Coordinator;

/* One fine-tuning job, as the inline launcher runs it: 'bertrain finetune
 * --checkpoint checkpoint --task task --data data --out out --set
 * run.seed=seed', its progress into log. */
typedef struct CoordJob {
  int epoch;                 /* pre-trained epoch (0 = the baseline) */
  long seed;
  char task[32];
  char data[PATH_MAX];
  char checkpoint[PATH_MAX];
  char out[PATH_MAX];        /* the job directory */
  char log[PATH_MAX];        /* out/finetune.log */
} CoordJob;

/* bertrain_path: the binary the process launcher and the report run; NULL =
 * this process's own executable. Dies on a bad finetune.tasks entry or an
 * unreadable finetune.sbatch (slurm). cfg is copied as needed. */
Coordinator *coord_new(const Config *cfg, const char *run_dir, const char *bertrain_path);
void coord_free(Coordinator *c);

/* Writes RUN_DIR/command.txt: the command line (argv[0] being the command
 * name, as commands get it), prefixed by "mpirun -np N" when world_size > 1. */
void coord_set_command(Coordinator *c, int argc, char **argv, int world_size);

/* Fine-tuning jobs for a checkpoint written after epoch (pre-training
 * wall_seconds and global_step at that point): writes milestone.txt and
 * queued status files, then starts (process), submits (slurm) or queues
 * (inline) the jobs. Returns at once. */
void coord_milestone(Coordinator *c, const char *checkpoint, int epoch, double wall_seconds,
                     long global_step);

/* With finetune.baseline (and a launcher other than none): writes the
 * initial weights to RUN_DIR/checkpoints/epoch-0000.h5 and calls
 * coord_milestone for epoch 0. Every rank calls it; rank 0 writes. */
void coord_baseline(Coordinator *c, const ParamTable *t, const float *host, const Config *cfg,
                    const Vocab *vocab);

/* Non-blocking: notices finished processes and ended Slurm jobs (squeue at
 * most every coord_poll_interval seconds), records them, starts waiting
 * jobs, and refreshes the report in a background 'bertrain report'. Cheap
 * enough to call every step. */
void coord_poll(Coordinator *c);
/* Seconds between Slurm queries (default 30). */
void coord_poll_interval(Coordinator *c, double seconds);

/* inline: the next queued job, marked running (rank 0 writes its status);
 * returns 0 when there is none. */
int coord_next_inline(Coordinator *c, CoordJob *job);
/* Records a job's outcome the way the other launchers do (exit_code 0 =
 * done, else failed) and refreshes the report. */
void coord_job_done(Coordinator *c, const CoordJob *job, int exit_code);

/* Jobs queued, running or submitted and not yet seen to end. */
int coord_outstanding(const Coordinator *c);
/* Jobs running now (process launcher: processes alive). */
int coord_running(const Coordinator *c);

/* Resuming: the milestones of epoch <= last_epoch (those the checkpoint
 * resumed from has passed) that an earlier start of the run reached and
 * whose jobs did not all finish, by epoch, checkpoint paths made usable
 * (*out malloc'ed; rank 0 only, others get 0). Hand each to coord_milestone
 * again: it starts the jobs not done and follows Slurm jobs still known. */
int coord_unfinished(const Coordinator *c, int last_epoch, Milestone **out);

/* A stop signal: process jobs still running are ended (SIGTERM to their
 * process group, SIGKILL after 10 s) and recorded as queued, so that the
 * next start runs them again; Slurm jobs are left to Slurm. Rebuilds the
 * report and waits for it. */
void coord_stop(Coordinator *c);

/* The stop-signal flag coord_finish watches while it waits (NULL: none). */
void coord_stop_flag(Coordinator *c, volatile sig_atomic_t *flag);

/* End of pre-training: process waits for every job (or, when the stop flag
 * is set meanwhile, does what coord_stop does and returns 1); slurm polls once and
 * leaves jobs still in Slurm, saying which, and that 'bertrain report
 * RUN_DIR' aggregates them once they end; inline warns about jobs never run.
 * Then rebuilds the report (and waits for it). */
int coord_finish(Coordinator *c);

#endif
