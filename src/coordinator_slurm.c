/* The slurm launcher: sbatch --parsable to submit, the job script's status
 * file as the first word on how a job went, squeue to see it still queued
 * or running, and sacct (or scontrol, without accounting) for the verdict of
 * a job that left the queue without writing its final status (time limit,
 * scancel, node failure). */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator_internal.h"
#include "util.h"

/* Polls that find a job in neither squeue nor the accounting before it is
 * given up as failed (a controller that does not answer for a while). */
#define SLURM_MAX_MISSES 3

#define Q (PATH_MAX * 4 + 8)

static void trim(char *s) {
  size_t n = strlen(s);
  while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ')) s[--n] = '\0';
}

/* The job id sbatch --parsable printed ("ID" or "ID;cluster"), or 0. */
static int parse_job_id(const char *out, char *id, size_t n) {
  size_t k = 0;
  while (out[k] && out[k] != ';' && out[k] != '\n' && k + 1 < n) {
    if (!((out[k] >= '0' && out[k] <= '9') || out[k] == '_')) return 0;
    id[k] = out[k];
    k++;
  }
  id[k] = '\0';
  return k > 0;
}

static void first_line(const char *path, char *buf, size_t n) {
  buf[0] = '\0';
  FILE *f = fopen(path, "r");
  if (!f) return;
  if (fgets(buf, (int)n, f)) trim(buf);
  fclose(f);
}

void slurm_submit(Coordinator *c, CJob *j) {
  char qs[Q], qc[Q], qt[Q], qd[Q], qo[Q], qout[Q], qexp[Q], qname[128], arg[PATH_MAX + 64];
  char errlog[PATH_MAX + 16], out[256];
  path_fmt(errlog, sizeof errlog, "%s/sbatch.log", j->spec.out);
  shell_quote(qs, sizeof qs, c->sbatch);
  shell_quote(qc, sizeof qc, j->spec.checkpoint);
  shell_quote(qt, sizeof qt, j->spec.task);
  shell_quote(qd, sizeof qd, j->spec.data);
  shell_quote(qo, sizeof qo, j->spec.out);
  path_fmt(arg, sizeof arg, "--output=%s/slurm-%%j.out", j->spec.out);
  shell_quote(qout, sizeof qout, arg);
  path_fmt(arg, sizeof arg, "--export=ALL,BERTRAIN=%s", c->bertrain);
  shell_quote(qexp, sizeof qexp, arg);
  path_fmt(arg, sizeof arg, "--job-name=bertrain-ft-e%04d-%s", j->spec.epoch, j->spec.task);
  shell_quote(qname, sizeof qname, arg);
  size_t len = strlen(qs) + strlen(qc) + strlen(qt) + strlen(qd) + strlen(qo) + strlen(qout) +
               strlen(qexp) + strlen(qname) + 128;
  char *cmd = xmalloc(len);
  path_fmt(cmd, len, "sbatch --parsable %s %s %s %s %s %s %s %s --set run.seed=%ld", qname, qout,
           qexp, qs, qc, qt, qd, qo, j->spec.seed);
  FILE *f = fopen(errlog, "w");
  if (f) {
    fprintf(f, "$ %s\n", cmd);
    fclose(f);
  }
  int rc = coord_capture(c, cmd, out, sizeof out, errlog);
  free(cmd);
  if (rc != 0 || !parse_job_id(out, j->job_id, sizeof j->job_id)) {
    char why[256], line[160];
    first_line(errlog, line, sizeof line);
    path_fmt(j->spec.log, sizeof j->spec.log, "%s", errlog);
    if (rc == 127) path_fmt(why, sizeof why, "sbatch could not be run (is Slurm installed?)");
    else if (rc != 0) path_fmt(why, sizeof why, "sbatch failed with exit code %d", rc);
    else path_fmt(why, sizeof why, "sbatch printed no job id ('%.60s')", out);
    coord_job_finished(c, j, rc ? rc : 1, why);
    return;
  }
  j->state = J_SUBMITTED;
  /* The job may have started and written its own status already. */
  JobStatus s;
  job_status_init(&s);
  if (!job_status_read(j->spec.out, &s) || strcmp(s.state, "queued") == 0)
    coord_write_status(c, j, -1, NULL);
  info("finetune: %s from epoch %d submitted as Slurm job %s", j->spec.task, j->spec.epoch,
       j->job_id);
}

/* The status the job script wrote, when final: takes it as it is (exit
 * code, log) and returns 1. */
static int adopt_status(Coordinator *c, CJob *j) {
  JobStatus s;
  job_status_init(&s);
  if (!job_status_read(j->spec.out, &s)) return 0;
  if (strcmp(s.state, "running") == 0) j->state = J_RUNNING;
  if (strcmp(s.state, "done") != 0 && strcmp(s.state, "failed") != 0) return 0;
  j->state = strcmp(s.state, "done") == 0 ? J_DONE : J_FAILED;
  if (j->state == J_DONE)
    info("finetune: %s from epoch %d done (Slurm job %s, %s)", j->spec.task, j->spec.epoch,
         j->job_id, j->spec.out);
  else
    warn("finetune: %s from epoch %d failed (Slurm job %s, exit code %d); log %s", j->spec.task,
         j->spec.epoch, j->job_id, s.exit_code, s.log[0] ? s.log : j->spec.log);
  coord_report_request(c);
  return 1;
}

/* Slurm's state and exit code ("a:b", b a signal) of a job that left the
 * queue; returns 0 when neither sacct nor scontrol knows it. */
static int slurm_verdict(const Coordinator *c, const char *id, char *state, size_t n, int *code) {
  char cmd[256], out[4096];
  path_fmt(cmd, sizeof cmd, "sacct -n -X -P -j %s -o State,ExitCode", id);
  int a = 0, b = 0;
  if (coord_capture(c, cmd, out, sizeof out, NULL) == 0) {
    char *line = strtok(out, "\n");
    while (line && !strchr(line, '|')) line = strtok(NULL, "\n");
    if (line) {
      char *bar = strchr(line, '|');
      *bar = '\0';
      char *sp = strchr(line, ' '); /* "CANCELLED by 1000" */
      if (sp) *sp = '\0';
      path_fmt(state, n, "%s", line);
      sscanf(bar + 1, "%d:%d", &a, &b);
      *code = a ? a : b ? 128 + b : 0;
      return state[0] != '\0';
    }
  }
  path_fmt(cmd, sizeof cmd, "scontrol show job %s", id);
  if (coord_capture(c, cmd, out, sizeof out, NULL) == 0) {
    char *js = strstr(out, "JobState="), *ec = strstr(out, "ExitCode=");
    if (js) {
      sscanf(js + 9, "%63[A-Z_]", state);
      if (ec) sscanf(ec + 9, "%d:%d", &a, &b);
      *code = a ? a : b ? 128 + b : 0;
      return state[0] != '\0';
    }
  }
  return 0;
}

static int still_active(const char *state) {
  static const char *const ACTIVE[] = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING",
                                       "REQUEUED", "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING"};
  for (size_t i = 0; i < ARRAY_LEN(ACTIVE); i++)
    if (strcmp(state, ACTIVE[i]) == 0) return 1;
  return 0;
}

static void poll_job(Coordinator *c, CJob *j) {
  if (adopt_status(c, j)) return;
  char cmd[256], out[256], state[64] = "";
  path_fmt(cmd, sizeof cmd, "squeue -h -j %s -o %%T", j->job_id);
  int rc = coord_capture(c, cmd, out, sizeof out, NULL);
  trim(out);
  if (rc == 0 && out[0]) {
    j->misses = 0;
    if (strcmp(out, "RUNNING") == 0) j->state = J_RUNNING;
    if (still_active(out)) return;
  }
  /* Gone from the queue: the script's last word, else Slurm's. */
  if (adopt_status(c, j)) return;
  int code = 0;
  if (slurm_verdict(c, j->job_id, state, sizeof state, &code)) {
    if (still_active(state)) return;
    char model[PATH_MAX + 16], why[256];
    path_fmt(model, sizeof model, "%s/model.h5", j->spec.out);
    if (strcmp(state, "COMPLETED") == 0 && code == 0 && file_exists(model)) {
      coord_job_finished(c, j, 0, NULL);
      return;
    }
    path_fmt(why, sizeof why, "Slurm job %s ended as %s without the job script's final status",
             j->job_id, state);
    coord_job_finished(c, j, code ? code : 1, why);
    return;
  }
  if (++j->misses >= SLURM_MAX_MISSES) {
    char why[256];
    path_fmt(why, sizeof why, "Slurm job %s left the queue with no final status and no record "
             "in sacct or scontrol", j->job_id);
    coord_job_finished(c, j, 1, why);
  }
}

void slurm_poll(Coordinator *c, int force) {
  double now = now_seconds();
  if (!force && now - c->last_slurm_poll < c->poll_interval) return;
  c->last_slurm_poll = now;
  for (int i = 0; i < c->njobs; i++) {
    CJob *j = &c->jobs[i];
    if (j->state == J_SUBMITTED || j->state == J_RUNNING) poll_job(c, j);
  }
}
