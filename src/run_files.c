#define _XOPEN_SOURCE 700
#include "run_files.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void job_status_init(JobStatus *s) {
  memset(s, 0, sizeof *s);
  s->exit_code = -1;
  s->seed = -1;
  s->pid = -1;
}

static void put(FILE *f, const char *key, const char *value) {
  if (value[0]) fprintf(f, "%s=%s\n", key, value);
}

void job_status_write(const char *dir, const JobStatus *s) {
  char *text = NULL, path[PATH_MAX];
  size_t len = 0;
  FILE *m = open_memstream(&text, &len);
  if (!m) die("out of memory writing a job status");
  fprintf(m, "state=%s\n", s->state);
  if (s->exit_code >= 0) fprintf(m, "exit_code=%d\n", s->exit_code);
  put(m, "reason", s->reason);
  put(m, "log", s->log);
  put(m, "task", s->task);
  put(m, "data", s->data);
  put(m, "checkpoint", s->checkpoint);
  put(m, "launcher", s->launcher);
  if (s->seed >= 0) fprintf(m, "seed=%ld\n", s->seed);
  put(m, "job_id", s->job_id);
  if (s->pid > 0) fprintf(m, "pid=%ld\n", s->pid);
  put(m, "host", s->host);
  fclose(m);
  snprintf(path, sizeof path, "%s/" JOB_STATUS_FILE, dir);
  write_file_atomic(path, text, len);
  free(text);
}

/* Calls fn(key, value, ctx) for each "key=value" line of path; returns 0 when
 * the file cannot be opened. */
static int read_pairs(const char *path, void (*fn)(const char *, const char *, void *),
                      void *ctx) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[PATH_MAX + 64];
  int no = 0;
  while (fgets(line, sizeof line, f)) {
    no++;
    line[strcspn(line, "\r\n")] = '\0';
    if (!line[0] || line[0] == '#') continue;
    char *eq = strchr(line, '=');
    if (!eq) {
      warn("%s:%d: expected key=value, skipped", path, no);
      continue;
    }
    *eq = '\0';
    fn(line, eq + 1, ctx);
  }
  fclose(f);
  return 1;
}

static void copy(char *dst, size_t n, const char *src) { snprintf(dst, n, "%s", src); }

static void status_pair(const char *k, const char *v, void *ctx) {
  JobStatus *s = ctx;
  long l;
  if (strcmp(k, "state") == 0) copy(s->state, sizeof s->state, v);
  else if (strcmp(k, "exit_code") == 0 && parse_long(v, &l) == 0) s->exit_code = (int)l;
  else if (strcmp(k, "seed") == 0 && parse_long(v, &l) == 0) s->seed = l;
  else if (strcmp(k, "reason") == 0) copy(s->reason, sizeof s->reason, v);
  else if (strcmp(k, "log") == 0) copy(s->log, sizeof s->log, v);
  else if (strcmp(k, "task") == 0) copy(s->task, sizeof s->task, v);
  else if (strcmp(k, "data") == 0) copy(s->data, sizeof s->data, v);
  else if (strcmp(k, "checkpoint") == 0) copy(s->checkpoint, sizeof s->checkpoint, v);
  else if (strcmp(k, "launcher") == 0) copy(s->launcher, sizeof s->launcher, v);
  else if (strcmp(k, "job_id") == 0) copy(s->job_id, sizeof s->job_id, v);
  else if (strcmp(k, "pid") == 0 && parse_long(v, &l) == 0) s->pid = l;
  else if (strcmp(k, "host") == 0) copy(s->host, sizeof s->host, v);
}

int job_status_read(const char *dir, JobStatus *s) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/" JOB_STATUS_FILE, dir);
  return read_pairs(path, status_pair, s);
}

void milestone_write(const char *dir, const Milestone *m) {
  char text[PATH_MAX + 256], path[PATH_MAX + 32], wall[32];
  format_double(wall, sizeof wall, m->pretrain_wall_s);
  int len = snprintf(text, sizeof text, "epoch=%d\nglobal_step=%ld\npretrain_wall_s=%s\n"
                     "checkpoint=%s\n", m->epoch, m->global_step, wall, m->checkpoint);
  snprintf(path, sizeof path, "%s/" MILESTONE_FILE, dir);
  write_file_atomic(path, text, (size_t)len);
}

static void milestone_pair(const char *k, const char *v, void *ctx) {
  Milestone *m = ctx;
  long l;
  double d;
  if (strcmp(k, "epoch") == 0 && parse_long(v, &l) == 0) m->epoch = (int)l;
  else if (strcmp(k, "global_step") == 0 && parse_long(v, &l) == 0) m->global_step = l;
  else if (strcmp(k, "pretrain_wall_s") == 0 && parse_double(v, &d) == 0) m->pretrain_wall_s = d;
  else if (strcmp(k, "checkpoint") == 0) copy(m->checkpoint, sizeof m->checkpoint, v);
}

int milestone_read(const char *dir, Milestone *m) {
  char path[PATH_MAX];
  memset(m, 0, sizeof *m);
  m->epoch = -1;
  m->global_step = -1;
  m->pretrain_wall_s = -1;
  snprintf(path, sizeof path, "%s/" MILESTONE_FILE, dir);
  return read_pairs(path, milestone_pair, m);
}

void job_dir(char *buf, size_t n, const char *run_dir, int epoch, const char *task) {
  if (task) snprintf(buf, n, "%s/finetune/epoch-%04d/%s", run_dir, epoch, task);
  else snprintf(buf, n, "%s/finetune/epoch-%04d", run_dir, epoch);
}

/* rest when path is dir/rest, else NULL. */
static const char *under(const char *dir, const char *path) {
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/') n--;
  if (strncmp(path, dir, n) != 0 || path[n] != '/') return NULL;
  const char *rest = path + n;
  while (*rest == '/') rest++;
  return *rest ? rest : NULL;
}

void path_in_run(char *buf, size_t n, const char *run_dir, const char *path) {
  const char *rest = under(run_dir, path);
  if (!rest) {
    char *rd = realpath(run_dir, NULL), *rp = realpath(path, NULL);
    if (rd && rp && (rest = under(rd, rp)) != NULL) {
      snprintf(buf, n, "%s", rest);
      free(rd);
      free(rp);
      return;
    }
    /* Outside the run directory: absolute, so that it never reads as relative to it. */
    snprintf(buf, n, "%s", rp ? rp : path);
    free(rd);
    free(rp);
    return;
  }
  snprintf(buf, n, "%s", rest);
}

void path_from_run(char *buf, size_t n, const char *run_dir, const char *path) {
  if (path[0] == '/' || !path[0]) snprintf(buf, n, "%s", path);
  else snprintf(buf, n, "%s/%s", run_dir, path);
}

void shell_quote(char *buf, size_t n, const char *s) {
  int plain = *s != '\0';
  for (const char *p = s; *p && plain; p++)
    plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:=+,@%-", *p) != NULL;
  size_t k = 0;
  if (plain) {
    if (strlen(s) + 1 > n) die("argument too long for a command line: %.60s...", s);
    memcpy(buf, s, strlen(s) + 1);
    return;
  }
  /* Inside single quotes everything is literal but the quote itself: ' becomes '\''. */
  if (n < 3) die("argument too long for a command line: %.60s...", s);
  buf[k++] = '\'';
  for (const char *p = s; *p; p++) {
    if (k + 6 >= n) die("argument too long for a command line: %.60s...", s);
    if (*p == '\'') {
      memcpy(buf + k, "'\\''", 4);
      k += 4;
    } else {
      buf[k++] = *p;
    }
  }
  buf[k++] = '\'';
  buf[k] = '\0';
}

void path_fmt(char *buf, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(buf, n, fmt, ap);
  va_end(ap);
  if (len < 0 || (size_t)len >= n) die("path or command too long (over %zu bytes): %.80s...", n, buf);
}

void path_stem(char *buf, size_t n, const char *path) {
  const char *slash = strrchr(path, '/');
  const char *name = slash ? slash + 1 : path;
  const char *dot = strrchr(name, '.');
  path_fmt(buf, n, "%.*s", (int)(dot && dot != name ? dot - name : (long)strlen(name)), name);
}

void format_double(char *buf, size_t n, double v) {
  /* Whole numbers (steps, epochs) without an exponent. */
  if (v == floor(v) && fabs(v) < 1e15) {
    snprintf(buf, n, "%.0f", v);
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, n, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) return;
  }
}
