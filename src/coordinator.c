#define _POSIX_C_SOURCE 200809L
#include "coordinator.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "coordinator_internal.h"
#include "glue.h"
#include "report.h"
#include "util.h"
#include "weights_h5.h"

extern char **environ;

const char *const JOB_STATE_NAMES[] = {"queued", "submitted", "running", "done", "failed"};

static const char *const LAUNCHERS[] = {"none", "inline", "process", "slurm"};

/* ---- the children's environment ---- */

/* Variables mpirun (or srun) gives its ranks: a nested mpirun (in
 * finetune.command) or a Slurm job must not think it is one of them. Open MPI
 * takes a set SLURM_STEP_ID for "launched by srun" and then fails in MPI_Init
 * without the step's PMIx server; a batch job has no step id of its own. */
static int launcher_var(const char *kv) {
  static const char *const PREFIXES[] = {
    "PMIX_", "PRTE_", "OMPI_COMM_WORLD_", "OMPI_MCA_ess", "OMPI_MCA_orte_", "OMPI_MCA_pmix",
    "OMPI_APP_CTX_NUM_PROCS=", "OMPI_COMMAND=", "OMPI_ARGV=", "OMPI_FILE_LOCATION=",
    "OMPI_FIRST_RANKS=", "OMPI_NUM_APP_CTX=", "OMPI_UNIVERSE_SIZE=", "OMPI_MCA_initial_wdir=",
    "OMPI_MCA_shmem_RUNTIME_QUERY_hint=", "SLURM_STEP_ID=", "SLURM_STEPID=",
  };
  for (size_t i = 0; i < ARRAY_LEN(PREFIXES); i++)
    if (strncmp(kv, PREFIXES[i], strlen(PREFIXES[i])) == 0) return 1;
  return 0;
}

static char **child_env(void) {
  size_t n = 0;
  while (environ[n]) n++;
  char **env = xcalloc(n + 1, sizeof *env);
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (!launcher_var(environ[i])) env[k++] = xstrdup(environ[i]);
  return env;
}

pid_t coord_spawn(const Coordinator *c, const char *cmd, const char *log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (log) {
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0666);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
  }
  /* Its own process group, so that coord_stop can end the whole job
   * (sh, mpirun and the ranks under it) with one kill. */
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  char *argv[] = {"sh", "-c", (char *)cmd, NULL};
  pid_t pid;
  fflush(NULL);
  int err = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, c->env);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (err) {
    errno = err;
    return -1;
  }
  return pid;
}

static int wait_exit(pid_t pid) {
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return 127;
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

int coord_capture(const Coordinator *c, const char *cmd, char *out, size_t n, const char *err_log) {
  int fds[2];
  if (pipe(fds) != 0) return 127;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  posix_spawn_file_actions_addclose(&fa, fds[1]);
  if (err_log) posix_spawn_file_actions_addopen(&fa, 2, err_log, O_WRONLY | O_CREAT | O_APPEND, 0666);
  else posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  char *argv[] = {"sh", "-c", (char *)cmd, NULL};
  pid_t pid;
  fflush(NULL);
  int err = posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, c->env);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  size_t used = 0;
  ssize_t r;
  char sink[256];
  /* Read to the end even past n, so the child never blocks on a full pipe. */
  while ((r = read(fds[0], used + 1 < n ? out + used : sink,
                   used + 1 < n ? n - 1 - used : sizeof sink)) != 0) {
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (used + 1 < n) used += (size_t)r;
  }
  close(fds[0]);
  if (n) out[used] = '\0';
  return err ? 127 : wait_exit(pid);
}

/* ---- set-up ---- */

static Launcher parse_launcher(const char *s) {
  for (size_t i = 0; i < ARRAY_LEN(LAUNCHERS); i++)
    if (strcmp(s, LAUNCHERS[i]) == 0) return (Launcher)i;
  die("finetune.launcher: '%s' is not one of none, inline, process, slurm", s);
}

static void parse_tasks(Coordinator *c, const Config *cfg) {
  int n;
  char **items = split_list(cfg->finetune.tasks, &n);
  if (n == 0) {
    free_list(items);
    items = split_list(cfg->finetune.task, &n);
  }
  c->tasks = xcalloc((size_t)n, sizeof *c->tasks);
  for (int i = 0; i < n; i++) {
    char *colon = strchr(items[i], ':');
    if (colon) *colon = '\0';
    const char *name = glue_task_parse(items[i]) == GLUE_MRPC ? "mrpc" : "sst2";
    for (int k = 0; k < c->ntasks; k++)
      if (strcmp(c->tasks[k].task, name) == 0)
        die("finetune.tasks: %s appears twice in '%s'", name, cfg->finetune.tasks);
    TaskSpec *t = &c->tasks[c->ntasks++];
    path_fmt(t->task, sizeof t->task, "%s", name);
    path_fmt(t->data, sizeof t->data, "%s", colon && colon[1] ? colon + 1 : cfg->finetune.data);
  }
  free_list(items);
}

static const char *const PLACEHOLDERS[] = {"bertrain", "checkpoint", "task", "data",
                                           "out", "seed", "epoch", "run_dir"};

/* finetune.command with each {name} replaced by the shell-quoted value
 * (values in PLACEHOLDERS order); dies naming an unknown placeholder. */
static char *expand(const char *tmpl, const char *const values[ARRAY_LEN(PLACEHOLDERS)]) {
  size_t cap = 256, len = 0;
  char *out = xmalloc(cap);
  for (const char *p = tmpl; *p;) {
    const char *piece = p;
    size_t plen = 1;
    char quoted[PATH_MAX * 4 + 8];
    if (*p == '{') {
      const char *end = strchr(p, '}');
      size_t k = 0;
      if (end) {
        for (; k < ARRAY_LEN(PLACEHOLDERS); k++)
          if (strlen(PLACEHOLDERS[k]) == (size_t)(end - p - 1) &&
              strncmp(p + 1, PLACEHOLDERS[k], (size_t)(end - p - 1)) == 0)
            break;
      }
      if (!end || k == ARRAY_LEN(PLACEHOLDERS))
        die("finetune.command: unknown placeholder at '%.30s' (known: {bertrain} {checkpoint} "
            "{task} {data} {out} {seed} {epoch} {run_dir})", p);
      shell_quote(quoted, sizeof quoted, values[k]);
      piece = quoted;
      plen = strlen(quoted);
      p = end + 1;
    } else {
      p++;
    }
    grow((void **)&out, &cap, len + plen + 1, 1);
    memcpy(out + len, piece, plen);
    len += plen;
  }
  out[len] = '\0';
  return out;
}

static char *job_command(const Coordinator *c, const CoordJob *j) {
  char seed[32], epoch[32];
  path_fmt(seed, sizeof seed, "%ld", j->seed);
  path_fmt(epoch, sizeof epoch, "%d", j->epoch);
  const char *values[] = {c->bertrain, j->checkpoint, j->task, j->data, j->out, seed, epoch,
                          c->run_dir};
  return expand(c->command, values);
}

Coordinator *coord_new(const Config *cfg, const char *run_dir, const char *bertrain_path) {
  Coordinator *c = xcalloc(1, sizeof *c);
  c->launcher = parse_launcher(cfg->finetune.launcher);
  path_fmt(c->run_dir, sizeof c->run_dir, "%s", run_dir);
  if (bertrain_path) {
    path_fmt(c->bertrain, sizeof c->bertrain, "%s", bertrain_path);
  } else {
    ssize_t n = readlink("/proc/self/exe", c->bertrain, sizeof c->bertrain - 1);
    if (n <= 0) die("cannot find this program's path (/proc/self/exe): %s", strerror(errno));
    c->bertrain[n] = '\0';
  }
  c->command = xstrdup(cfg->finetune.command);
  path_fmt(c->sbatch, sizeof c->sbatch, "%s", cfg->finetune.sbatch);
  c->max_parallel = cfg->finetune.max_parallel;
  c->baseline = cfg->finetune.baseline;
  c->seed = cfg->run.seed;
  c->writer = g_rank == 0;
  c->poll_interval = 30;
  c->last_slurm_poll = -1e30;
  c->env = child_env();
  parse_tasks(c, cfg);
  if (c->launcher == L_PROCESS) {
    CoordJob probe = {0};
    free(job_command(c, &probe)); /* dies now on a bad template rather than at a milestone */
  }
  if (c->launcher == L_SLURM && access(c->sbatch, R_OK) != 0)
    die("finetune.sbatch: cannot read the job script %s: %s", c->sbatch, strerror(errno));
  return c;
}

void coord_free(Coordinator *c) {
  if (!c) return;
  for (char **e = c->env; *e; e++) free(*e);
  free(c->env);
  free(c->tasks);
  free(c->jobs);
  free(c->command);
  free(c);
}

void coord_poll_interval(Coordinator *c, double seconds) { c->poll_interval = seconds; }

void coord_set_command(Coordinator *c, int argc, char **argv, int world_size) {
  if (!c->writer) return;
  char *text = NULL, q[PATH_MAX * 4 + 8], path[PATH_MAX];
  size_t len = 0;
  FILE *m = open_memstream(&text, &len);
  if (!m) die("out of memory writing the command line");
  if (world_size > 1) fprintf(m, "mpirun -np %d ", world_size);
  fputs("bertrain", m);
  for (int i = 0; i < argc; i++) {
    shell_quote(q, sizeof q, argv[i]);
    fprintf(m, " %s", q);
  }
  fputc('\n', m);
  fclose(m);
  path_fmt(path, sizeof path, "%s/" RUN_COMMAND_FILE, c->run_dir);
  write_file_atomic(path, text, len);
  free(text);
}

/* ---- status ---- */

void coord_write_status(const Coordinator *c, const CJob *j, int exit_code, const char *reason) {
  if (!c->writer) return;
  JobStatus s;
  job_status_init(&s);
  path_fmt(s.state, sizeof s.state, "%s", JOB_STATE_NAMES[j->state]);
  s.exit_code = exit_code;
  s.seed = j->spec.seed;
  path_fmt(s.task, sizeof s.task, "%s", j->spec.task);
  path_fmt(s.launcher, sizeof s.launcher, "%s", LAUNCHERS[c->launcher]);
  path_fmt(s.job_id, sizeof s.job_id, "%s", j->job_id);
  if (j->state == J_RUNNING && j->pid > 0) {
    s.pid = (long)j->pid;
    if (gethostname(s.host, sizeof s.host) != 0) s.host[0] = '\0';
    s.host[sizeof s.host - 1] = '\0';
  }
  path_fmt(s.data, sizeof s.data, "%s", j->spec.data);
  path_fmt(s.reason, sizeof s.reason, "%s", reason ? reason : "");
  path_in_run(s.log, sizeof s.log, c->run_dir, j->spec.log);
  path_in_run(s.checkpoint, sizeof s.checkpoint, c->run_dir, j->spec.checkpoint);
  job_status_write(j->spec.out, &s);
}

/* ---- the report, refreshed in the background ---- */

static void report_start(Coordinator *c) {
  char dir[PATH_MAX], log[PATH_MAX + 16], qb[PATH_MAX * 4 + 8], qr[PATH_MAX * 4 + 8];
  char cmd[PATH_MAX * 8 + 32];
  path_fmt(dir, sizeof dir, "%s/report", c->run_dir);
  make_dirs(dir);
  path_fmt(log, sizeof log, "%s/report.log", dir);
  unlink(log);
  shell_quote(qb, sizeof qb, c->bertrain);
  shell_quote(qr, sizeof qr, c->run_dir);
  path_fmt(cmd, sizeof cmd, "exec %s report %s", qb, qr);
  c->report_pid = coord_spawn(c, cmd, log);
  if (c->report_pid < 0) {
    warn("cannot run '%s': %s; the report is not updated", cmd, strerror(errno));
    c->report_pid = 0;
  }
  c->report_dirty = 0;
}

void coord_report_request(Coordinator *c) {
  if (!c->writer) return;
  if (c->report_pid > 0) c->report_dirty = 1;
  else report_start(c);
}

/* Notices the report process's end; block waits for it. */
static void report_reap(Coordinator *c, int block) {
  if (c->report_pid <= 0) return;
  int st;
  pid_t r = waitpid(c->report_pid, &st, block ? 0 : WNOHANG);
  if (r == 0 || (r < 0 && errno == EINTR)) return;
  if (r > 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
    warn("'bertrain report %s' failed; see %s/report/report.log", c->run_dir, c->run_dir);
  c->report_pid = 0;
  if (c->report_dirty) report_start(c);
}

/* ---- jobs ---- */

void coord_job_finished(Coordinator *c, CJob *j, int exit_code, const char *reason) {
  j->state = exit_code == 0 ? J_DONE : J_FAILED;
  j->pid = 0;
  coord_write_status(c, j, exit_code, reason);
  if (j->state == J_DONE)
    info("finetune: %s from epoch %d done (%s)", j->spec.task, j->spec.epoch, j->spec.out);
  else if (c->writer && reason)
    warn("finetune: %s from epoch %d failed (%s); log %s; pre-training goes on", j->spec.task,
         j->spec.epoch, reason, j->spec.log);
  else if (c->writer)
    warn("finetune: %s from epoch %d failed (exit code %d); log %s; pre-training goes on",
         j->spec.task, j->spec.epoch, exit_code, j->spec.log);
  coord_report_request(c);
}

static void process_start(Coordinator *c, CJob *j) {
  char *cmd = job_command(c, &j->spec);
  if (c->writer) {
    FILE *f = fopen(j->spec.log, "w");
    if (f) {
      fprintf(f, "$ %s\n", cmd);
      fclose(f);
    }
  }
  j->pid = coord_spawn(c, cmd, j->spec.log);
  if (j->pid < 0) {
    char why[256];
    path_fmt(why, sizeof why, "cannot start /bin/sh: %s", strerror(errno));
    coord_job_finished(c, j, 127, why);
  } else {
    j->state = J_RUNNING;
    coord_write_status(c, j, -1, NULL);
    info("finetune: %s from epoch %d started (pid %ld): %s", j->spec.task, j->spec.epoch,
         (long)j->pid, cmd);
  }
  free(cmd);
}

int coord_running(const Coordinator *c) {
  int n = 0;
  for (int i = 0; i < c->njobs; i++) n += c->jobs[i].state == J_RUNNING;
  return n;
}

int coord_outstanding(const Coordinator *c) {
  int n = 0;
  for (int i = 0; i < c->njobs; i++) n += c->jobs[i].state < J_DONE;
  return n;
}

static void process_poll(Coordinator *c) {
  for (int i = 0; i < c->njobs; i++) {
    CJob *j = &c->jobs[i];
    if (j->state != J_RUNNING) continue;
    int st;
    pid_t r = waitpid(j->pid, &st, WNOHANG);
    if (r == 0 || (r < 0 && errno == EINTR)) continue;
    if (r < 0) {
      coord_job_finished(c, j, 127, "its process could not be followed (waitpid failed)");
    } else if (WIFEXITED(st)) {
      coord_job_finished(c, j, WEXITSTATUS(st), NULL);
    } else {
      char why[64];
      path_fmt(why, sizeof why, "killed by signal %d", WTERMSIG(st));
      coord_job_finished(c, j, 128 + WTERMSIG(st), why);
    }
  }
  for (int i = 0; i < c->njobs && coord_running(c) < c->max_parallel; i++)
    if (c->jobs[i].state == J_QUEUED) process_start(c, &c->jobs[i]);
}

/* 1 when process pid's command line mentions text (so a pid reused by an
 * unrelated process is left alone). */
static int cmdline_has(long pid, const char *text) {
  char path[64], buf[16384];
  snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  for (size_t i = 0; i < n; i++)
    if (buf[i] == '\0') buf[i] = ' ';
  buf[n] = '\0';
  return strstr(buf, text) != NULL;
}

static void sleep_s(double s);

/* A process job still running from an earlier start that was killed (its
 * coordinator gone, the job orphaned) on this machine: ended before the job
 * starts again in the same directory. */
static void end_orphan(const Coordinator *c, const CJob *j, const JobStatus *s) {
  char host[256] = "";
  if (!c->writer || s->pid <= 0 || gethostname(host, sizeof host) != 0 || strcmp(host, s->host) != 0)
    return;
  if (kill((pid_t)s->pid, 0) != 0 || !cmdline_has(s->pid, j->spec.out)) return;
  info("finetune: ending the earlier start's job still running for %s (process group %ld)",
       j->spec.out, s->pid);
  kill(-(pid_t)s->pid, SIGTERM);
  for (int i = 0; i < 100 && kill(-(pid_t)s->pid, 0) == 0; i++) sleep_s(0.1);
  kill(-(pid_t)s->pid, SIGKILL);
}

/* What an earlier start of this run left in a job's directory: a done job
 * is not repeated, a Slurm job submitted then is followed again (it runs on
 * regardless of pre-training), and anything else (queued, running when the
 * run stopped, failed) starts afresh. Returns 1 when the job needs no start. */
static int adopt_earlier(Coordinator *c, CJob *j) {
  JobStatus s;
  job_status_init(&s);
  if (!job_status_read(j->spec.out, &s)) return 0;
  if (strcmp(s.state, "done") == 0) {
    info("finetune: %s from epoch %d is already done (%s); not repeated", j->spec.task,
         j->spec.epoch, j->spec.out);
    j->state = J_DONE;
    return 1;
  }
  int live = strcmp(s.state, "submitted") == 0 || strcmp(s.state, "running") == 0;
  if (c->launcher == L_SLURM && live && s.job_id[0]) {
    path_fmt(j->job_id, sizeof j->job_id, "%s", s.job_id);
    j->state = J_SUBMITTED;
    info("finetune: %s from epoch %d: following Slurm job %s again", j->spec.task, j->spec.epoch,
         j->job_id);
    return 1;
  }
  info("finetune: %s from epoch %d was left %s by an earlier start of the run; starting it again",
       j->spec.task, j->spec.epoch, s.state);
  if (c->launcher == L_PROCESS && live) end_orphan(c, j, &s);
  return 0;
}

static CJob *add_job(Coordinator *c, const char *checkpoint, int epoch, const TaskSpec *t) {
  grow((void **)&c->jobs, &c->cap, (size_t)c->njobs + 1, sizeof *c->jobs);
  CJob *j = &c->jobs[c->njobs++];
  memset(j, 0, sizeof *j);
  j->spec.epoch = epoch;
  j->spec.seed = c->seed + epoch;
  path_fmt(j->spec.task, sizeof j->spec.task, "%s", t->task);
  path_fmt(j->spec.data, sizeof j->spec.data, "%s", t->data);
  path_fmt(j->spec.checkpoint, sizeof j->spec.checkpoint, "%s", checkpoint);
  job_dir(j->spec.out, sizeof j->spec.out, c->run_dir, epoch, c->ntasks > 1 ? t->task : NULL);
  path_fmt(j->spec.log, sizeof j->spec.log, "%s/" JOB_LOG_FILE, j->spec.out);
  return j;
}

void coord_milestone(Coordinator *c, const char *checkpoint, int epoch, double wall_seconds,
                     long global_step) {
  if (c->launcher == L_NONE) return;
  char dir[PATH_MAX];
  job_dir(dir, sizeof dir, c->run_dir, epoch, NULL);
  if (c->writer) {
    make_dirs(dir);
    Milestone m = {epoch, global_step, wall_seconds, ""};
    path_in_run(m.checkpoint, sizeof m.checkpoint, c->run_dir, checkpoint);
    milestone_write(dir, &m);
  }
  for (int t = 0; t < c->ntasks; t++) {
    CJob *j = add_job(c, checkpoint, epoch, &c->tasks[t]);
    if (adopt_earlier(c, j)) continue;
    if (c->writer) make_dirs(j->spec.out);
    coord_write_status(c, j, -1, NULL);
    if (c->launcher == L_SLURM && c->writer) slurm_submit(c, j);
  }
  if (c->launcher == L_PROCESS && c->writer) process_poll(c);
  coord_report_request(c);
}

void coord_baseline(Coordinator *c, const ParamTable *t, const float *host, const Config *cfg,
                    const Vocab *vocab) {
  if (c->launcher == L_NONE || !c->baseline) return;
  char dir[PATH_MAX], path[PATH_MAX + 32];
  path_fmt(dir, sizeof dir, "%s/checkpoints", c->run_dir);
  path_fmt(path, sizeof path, "%s/epoch-0000.h5", dir);
  /* A resumed run must not replace the initial weights with its current ones. */
  if (c->writer && !file_exists(path)) {
    make_dirs(dir);
    weights_save(path, t, host, cfg, vocab);
  }
  coord_milestone(c, path, 0, 0.0, 0);
}

void coord_poll(Coordinator *c) {
  if (!c->writer) return;
  if (c->launcher == L_PROCESS) process_poll(c);
  if (c->launcher == L_SLURM) slurm_poll(c, 0);
  report_reap(c, 0);
}

int coord_next_inline(Coordinator *c, CoordJob *job) {
  if (c->launcher != L_INLINE) return 0;
  for (int i = 0; i < c->njobs; i++) {
    CJob *j = &c->jobs[i];
    if (j->state != J_QUEUED) continue;
    j->state = J_RUNNING;
    coord_write_status(c, j, -1, NULL);
    *job = j->spec;
    return 1;
  }
  return 0;
}

void coord_job_done(Coordinator *c, const CoordJob *job, int exit_code) {
  for (int i = 0; i < c->njobs; i++) {
    CJob *j = &c->jobs[i];
    if (j->state == J_RUNNING && j->spec.epoch == job->epoch && strcmp(j->spec.task, job->task) == 0) {
      coord_job_finished(c, j, exit_code, NULL);
      return;
    }
  }
  die("coord_job_done: no running job for %s at epoch %d", job->task, job->epoch);
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* ---- stopping and resuming ---- */

static int epoch_dir_name(const char *name, int *epoch) {
  char tail;
  return sscanf(name, "epoch-%d%c", epoch, &tail) == 1 && *epoch >= 0;
}

static int milestone_unfinished(const Coordinator *c, int epoch) {
  for (int t = 0; t < c->ntasks; t++) {
    char out[PATH_MAX];
    JobStatus s;
    job_status_init(&s);
    job_dir(out, sizeof out, c->run_dir, epoch, c->ntasks > 1 ? c->tasks[t].task : NULL);
    if (!job_status_read(out, &s) || strcmp(s.state, "done") != 0) return 1;
  }
  return 0;
}

static int by_epoch(const void *a, const void *b) {
  return ((const Milestone *)a)->epoch - ((const Milestone *)b)->epoch;
}

int coord_unfinished(const Coordinator *c, int last_epoch, Milestone **out) {
  *out = NULL;
  if (c->launcher == L_NONE || !c->writer) return 0;
  char dir[PATH_MAX];
  path_fmt(dir, sizeof dir, "%s/finetune", c->run_dir);
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  size_t cap = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    int epoch;
    char mdir[PATH_MAX];
    Milestone m;
    if (!epoch_dir_name(e->d_name, &epoch) || epoch > last_epoch) continue;
    job_dir(mdir, sizeof mdir, c->run_dir, epoch, NULL);
    if (!milestone_read(mdir, &m) || m.epoch != epoch || !milestone_unfinished(c, epoch)) continue;
    grow((void **)out, &cap, (size_t)n + 1, sizeof **out);
    (*out)[n] = m;
    path_from_run((*out)[n].checkpoint, sizeof m.checkpoint, c->run_dir, m.checkpoint);
    n++;
  }
  closedir(d);
  if (n) qsort(*out, (size_t)n, sizeof **out, by_epoch);
  return n;
}

/* The report from the final state: after any refresh under way, one more,
 * waited for. */
static void final_report(Coordinator *c) {
  c->report_dirty = 0;
  report_reap(c, 1);
  report_start(c);
  report_reap(c, 1);
}

/* SIGTERM to the job's process group, SIGKILL after grace seconds. */
static void end_process(pid_t pid, double grace) {
  kill(-pid, SIGTERM);
  for (double waited = 0; waited < grace; waited += 0.1) {
    pid_t r = waitpid(pid, NULL, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) return;
    sleep_s(0.1);
  }
  kill(-pid, SIGKILL);
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
  }
}

void coord_stop(Coordinator *c) {
  if (!c->writer) return;
  int ended = 0, left = 0;
  for (int i = 0; i < c->njobs; i++) {
    CJob *j = &c->jobs[i];
    if (c->launcher == L_PROCESS && j->state == J_RUNNING) {
      end_process(j->pid, 10);
      j->state = J_QUEUED;
      j->pid = 0;
      coord_write_status(c, j, -1, "ended when pre-training stopped; the next start runs it again");
      ended++;
    }
    left += j->state < J_DONE;
  }
  if (ended) info("finetune: ended %d running fine-tuning job(s)", ended);
  if (left && c->launcher == L_SLURM)
    info("finetune: %d fine-tuning job(s) stay with Slurm; the next start follows them", left);
  else if (left)
    info("finetune: %d fine-tuning job(s) not finished; the next start of the run runs them", left);
  final_report(c);
}

void coord_stop_flag(Coordinator *c, volatile sig_atomic_t *flag) { c->stop_flag = flag; }

int coord_finish(Coordinator *c) {
  if (c->launcher == L_PROCESS && c->writer) {
    if (coord_outstanding(c)) info("finetune: waiting for %d fine-tuning job(s)", coord_outstanding(c));
    while (coord_outstanding(c)) {
      if (c->stop_flag && *c->stop_flag) {
        coord_stop(c);
        return 1;
      }
      process_poll(c);
      report_reap(c, 0);
      if (coord_outstanding(c)) sleep_s(0.05);
    }
  }
  if (c->launcher == L_SLURM && c->writer) {
    slurm_poll(c, 1);
    int n = coord_outstanding(c);
    if (n) {
      char ids[1024] = "";
      size_t used = 0;
      for (int i = 0; i < c->njobs; i++) {
        const char *id = c->jobs[i].job_id;
        if (c->jobs[i].state >= J_DONE || !id[0] || used + strlen(id) + 2 >= sizeof ids) continue;
        used += (size_t)snprintf(ids + used, sizeof ids - used, "%s%s", used ? "," : "", id);
      }
      info("finetune: %d fine-tuning job(s) still in Slurm (squeue -j %s); when they have ended, "
           "'bertrain report %s' adds them to the metrics and the report", n, ids, c->run_dir);
    }
  }
  if (c->launcher == L_INLINE) {
    int n = 0;
    for (int i = 0; i < c->njobs; i++) n += c->jobs[i].state == J_QUEUED;
    if (n && c->writer) warn("finetune: %d inline fine-tuning job(s) were never run", n);
  }
  if (!c->writer) return 0;
  final_report(c);
  info("report: %s/report/Report.md", c->run_dir);
  return 0;
}
