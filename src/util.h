/* Small helpers shared by every command: errors that end the whole job,
 * checked allocation, temporary files that vanish on failure. */
#ifndef BERTRAIN_UTIL_H
#define BERTRAIN_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#define NORETURN __attribute__((noreturn))
#else
#define PRINTF_LIKE(f, a)
#define NORETURN
#endif

/* Print "bertrain: error: ..." (with the MPI rank when running under MPI),
 * remove registered temporary files and end the job with status 1.
 * Under MPI this aborts every rank, so no rank is left waiting. */
NORETURN void die(const char *fmt, ...) PRINTF_LIKE(1, 2);
void warn(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* While a handler is set (per thread), die() passes it the message instead
 * of ending the job, for code that can recover from a bad input (e.g. a
 * damaged checkpoint with an older one to fall back on). The handler must
 * not return: it longjmps. It is cleared before it is called. Returns the
 * previous handler. */
typedef void (*DieHandler)(const char *msg);
DieHandler die_set_handler(DieHandler h);
/* Runs fn(arg) with die() caught: returns 0 when fn returned, or -1 with
 * die's message in msg (n bytes) when it died. fn must keep whatever it
 * allocates reachable from arg, for the caller to free after a failure.
 * Nests; per thread. */
int die_catch(void (*fn)(void *arg), void *arg, char *msg, size_t n);
/* Progress and information: printed on stderr by rank 0 only. */
void info(const char *fmt, ...) PRINTF_LIKE(1, 2);

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* Grow *buf (holding *cap elements of elem bytes) to at least need elements. */
void grow(void **buf, size_t *cap, size_t need, size_t elem);

/* MPI context, set once by mpi_start(); rank 0 / size 1 without MPI. */
extern int g_rank, g_size;
void mpi_start(int *argc, char ***argv);
void mpi_stop(void);
int mpi_active(void);

/* A file written under a temporary name and renamed into place on success.
 * While open, its temporary name is removed if the process dies. */
void tmpfile_register(const char *path);
void tmpfile_forget(const char *path);

/* mkdir -p; dies naming the path on failure. */
void make_dirs(const char *path);
int file_exists(const char *path);
/* Write the whole of data to path via path.tmp + fsync + rename. */
void write_file_atomic(const char *path, const char *data, size_t len);
/* Rename tmp over path after fsync; dies naming both on failure. */
void commit_file(const char *tmp, const char *path);

double now_seconds(void);
/* Parse helpers: return 0 on success, -1 on a malformed or out-of-range value. */
int parse_long(const char *s, long *out);
int parse_double(const char *s, double *out);
int parse_bool(const char *s, int *out);

/* FNV-1a 64-bit, used for vocab fingerprints and hash tables. */
uint64_t fnv1a64(const void *data, size_t len, uint64_t h);
#define FNV1A64_INIT 0xcbf29ce484222325ULL

#endif
