/* Calls finetune_run the way pre-training's inline launcher does (one
 * process, one job after another, every rank the same calls), for
 * test_finetune_mpi.sh:
 *   finetune_driver CONFIG CHECKPOINT TASK JOB...
 * CONFIG is the pre-training configuration, the Config the launcher holds.
 * JOB is OUT=DATA: fine-tune CHECKPOINT on the GLUE directory DATA into OUT,
 * rank 0's output into OUT/finetune.log. DATA may be "D0|D1|...": rank r
 * reads the r-th (to make the ranks disagree); without "|" every rank reads DATA.
 * Rank 0 prints "job OUT: rc N" for each job with the heap in use
 * (mallinfo2), open file descriptors and threads of the process, then
 * "resources: heap +H bytes, fds +F, threads +T": after the last job minus
 * after the second (the first two warm up the libraries' one-time state).
 * Pre-training goes on in the same process, so a job must leave nothing
 * behind, failed or not. Run it with GLIBC_TUNABLES=glibc.malloc.tcache_count=0:
 * malloc's thread cache counts as in use. Exits 0 once every job has run. */
#define _GNU_SOURCE
#include <dirent.h>
#include <hdf5.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "config.h"
#include "finetune.h"
#include "util.h"

typedef struct Usage {
  long heap, fds, threads;
} Usage;

static long count_entries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) die("cannot list %s", dir);
  long n = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

static Usage usage_now(void) {
  H5garbage_collect(); /* HDF5's free lists keep freed blocks for reuse */
  Usage u = {(long)mallinfo2().uordblks, count_entries("/proc/self/fd"),
             count_entries("/proc/self/task")};
  return u;
}

/* The r-th '|'-separated item of s (s itself without '|'), in buf. */
static const char *item(const char *s, int r, char *buf, size_t n) {
  for (int i = 0; i < r && strchr(s, '|'); i++) {
    const char *bar = strchr(s, '|');
    if (!bar) die("finetune_driver: no item %d in '%s'", r, s);
    s = bar + 1;
  }
  size_t len = strcspn(s, "|");
  snprintf(buf, n, "%.*s", (int)len, s);
  return buf;
}

int main(int argc, char **argv) {
  mpi_start(&argc, &argv);
  if (argc < 5) die("usage: finetune_driver CONFIG CHECKPOINT TASK OUT=DATA...");
  CommInfo ci = comm_init();
  Config cfg;
  config_defaults(&cfg);
  config_load_file(&cfg, argv[1]);
  Usage first = {0}, last = {0};
  for (int i = 4; i < argc; i++) {
    char out[1024], data[1024], log[1100];
    const char *eq = strchr(argv[i], '=');
    if (!eq) die("finetune_driver: a job is OUT=DATA, not '%s'", argv[i]);
    snprintf(out, sizeof out, "%.*s", (int)(eq - argv[i]), argv[i]);
    item(eq + 1, ci.rank, data, sizeof data);
    snprintf(log, sizeof log, "%s/finetune.log", out);
    FinetuneArgs a = {.checkpoint = argv[2], .task = argv[3], .data = data, .out = out,
                      .seed = -1, .log = log};
    int rc = finetune_run(&cfg, &a);
    Usage u = usage_now();
    if (i <= 5) first = u;
    last = u;
    if (ci.rank == 0) {
      printf("job %s: rc %d  (heap %ld, fds %ld, threads %ld)\n", out, rc, u.heap, u.fds,
             u.threads);
      fflush(stdout);
    }
  }
  if (ci.rank == 0)
    printf("resources: heap %+ld bytes, fds %+ld, threads %+ld\n", last.heap - first.heap,
           last.fds - first.fds, last.threads - first.threads);
  config_free(&cfg);
  mpi_stop();
  return 0;
}
