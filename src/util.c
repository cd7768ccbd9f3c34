#define _POSIX_C_SOURCE 200809L
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int g_rank = 0, g_size = 1;
static int g_mpi_on = 0;

#define MAX_TMPFILES 64
static char *g_tmpfiles[MAX_TMPFILES];

static void remove_tmpfiles(void) {
  for (int i = 0; i < MAX_TMPFILES; i++) {
    if (g_tmpfiles[i]) {
      unlink(g_tmpfiles[i]);
      free(g_tmpfiles[i]);
      g_tmpfiles[i] = NULL;
    }
  }
}

void tmpfile_register(const char *path) {
  for (int i = 0; i < MAX_TMPFILES; i++) {
    if (!g_tmpfiles[i]) {
      g_tmpfiles[i] = xstrdup(path);
      return;
    }
  }
  die("too many temporary files open (while opening %s)", path);
}

void tmpfile_forget(const char *path) {
  for (int i = 0; i < MAX_TMPFILES; i++) {
    if (g_tmpfiles[i] && strcmp(g_tmpfiles[i], path) == 0) {
      free(g_tmpfiles[i]);
      g_tmpfiles[i] = NULL;
    }
  }
}

static void vmessage(const char *kind, const char *fmt, va_list ap) {
  char buf[4096];
  vsnprintf(buf, sizeof buf, fmt, ap);
  if (g_mpi_on && g_size > 1)
    fprintf(stderr, "bertrain: %s (rank %d): %s\n", kind, g_rank, buf);
  else
    fprintf(stderr, "bertrain: %s: %s\n", kind, buf);
  fflush(stderr);
}

static _Thread_local DieHandler g_die_handler;

DieHandler die_set_handler(DieHandler h) {
  DieHandler old = g_die_handler;
  g_die_handler = h;
  return old;
}

typedef struct Catch {
  jmp_buf jb;
  char *msg;
  size_t n;
} Catch;
static _Thread_local Catch *g_catch;

static void on_caught(const char *msg) {
  snprintf(g_catch->msg, g_catch->n, "%s", msg);
  longjmp(g_catch->jb, 1);
}

int die_catch(void (*fn)(void *arg), void *arg, char *msg, size_t n) {
  Catch c = {.msg = msg, .n = n};
  Catch *volatile outer = g_catch;
  volatile DieHandler old = die_set_handler(NULL);
  g_catch = &c;
  die_set_handler(on_caught);
  if (setjmp(c.jb) != 0) {
    g_catch = outer;
    die_set_handler(old);
    return -1;
  }
  fn(arg);
  g_catch = outer;
  die_set_handler(old);
  return 0;
}

static void print_message(const char *kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmessage(kind, fmt, ap);
  va_end(ap);
}

void die(const char *fmt, ...) {
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  DieHandler h = g_die_handler;
  g_die_handler = NULL;
  if (h) h(msg);
  print_message("error", "%s", msg);
  remove_tmpfiles();
  if (g_mpi_on && g_size > 1) MPI_Abort(MPI_COMM_WORLD, 1);
  exit(1);
}

void warn(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmessage("warning", fmt, ap);
  va_end(ap);
}

void info(const char *fmt, ...) {
  if (g_rank != 0) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
}

void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) die("out of memory allocating %zu bytes", n);
  return p;
}

void *xcalloc(size_t count, size_t size) {
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (!p) die("out of memory allocating %zu x %zu bytes", count, size);
  return p;
}

void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) die("out of memory reallocating to %zu bytes", n);
  return q;
}

char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = xmalloc(n);
  memcpy(p, s, n);
  return p;
}

void grow(void **buf, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return;
  size_t c = *cap ? *cap : 16;
  while (c < need) c *= 2;
  *buf = xrealloc(*buf, c * elem);
  *cap = c;
}

void mpi_start(int *argc, char ***argv) {
  int ok = MPI_Init(argc, argv);
  if (ok != MPI_SUCCESS) die("MPI_Init failed (code %d)", ok);
  g_mpi_on = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
}

void mpi_stop(void) {
  if (!g_mpi_on) return;
  MPI_Finalize();
  g_mpi_on = 0;
}

int mpi_active(void) { return g_mpi_on; }

void make_dirs(const char *path) {
  char buf[PATH_MAX];
  if (strlen(path) >= sizeof buf) die("path too long: %s", path);
  strcpy(buf, path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
      die("cannot create directory %s: %s", buf, strerror(errno));
    *p = '/';
  }
  if (mkdir(buf, 0777) != 0 && errno != EEXIST)
    die("cannot create directory %s: %s", buf, strerror(errno));
}

int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static void fsync_path(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) die("cannot open %s to flush it: %s", path, strerror(errno));
  if (fsync(fd) != 0) die("cannot flush %s to disk: %s", path, strerror(errno));
  close(fd);
}

void commit_file(const char *tmp, const char *path) {
  fsync_path(tmp);
  if (rename(tmp, path) != 0)
    die("cannot rename %s to %s: %s", tmp, path, strerror(errno));
  tmpfile_forget(tmp);
}

void write_file_atomic(const char *path, const char *data, size_t len) {
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  tmpfile_register(tmp);
  FILE *f = fopen(tmp, "wb");
  if (!f) die("cannot write %s: %s", tmp, strerror(errno));
  if (fwrite(data, 1, len, f) != len || fclose(f) != 0)
    die("cannot write %s: %s", tmp, strerror(errno));
  commit_file(tmp, path);
}

double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int parse_long(const char *s, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s) return -1;
  while (*end == ' ' || *end == '\t') end++;
  if (*end) return -1;
  *out = v;
  return 0;
}

int parse_double(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || !isfinite(v)) return -1;
  while (*end == ' ' || *end == '\t') end++;
  if (*end) return -1;
  *out = v;
  return 0;
}

int parse_bool(const char *s, int *out) {
  static const char *yes[] = {"1", "true", "yes", "on"};
  static const char *no[] = {"0", "false", "no", "off"};
  for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
    if (strcasecmp(s, yes[i]) == 0) { *out = 1; return 0; }
    if (strcasecmp(s, no[i]) == 0) { *out = 0; return 0; }
  }
  return -1;
}

uint64_t fnv1a64(const void *data, size_t len, uint64_t h) {
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}
