#define _XOPEN_SOURCE 700
#include "run_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "run_files.h"
#include "util.h"

/* How long a job waits for a lock held from another machine, and how
 * often it asks. */
#define LOCK_WAIT_S 180
#define LOCK_POLL_S 5

/* What the file says of its holder, without the trailing newline. */
static void read_holder(int fd, char *buf, size_t n) {
  ssize_t got = pread(fd, buf, n - 1, 0);
  buf[got > 0 ? got : 0] = '\0';
  buf[strcspn(buf, "\n")] = '\0';
}

static void write_holder(int fd, const char *path) {
  char host[256] = "?", when[64] = "?";
  if (gethostname(host, sizeof host) != 0) strcpy(host, "?");
  host[sizeof host - 1] = '\0';
  time_t now = time(NULL);
  struct tm tm;
  if (localtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
  char text[512];
  int len = snprintf(text, sizeof text, "pid %ld on %s since %s\n", (long)getpid(), host, when);
  if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)len, 0) != len)
    warn("cannot write %s: %s", path, strerror(errno));
}

/* 1 when the holder is a live process of this machine: then waiting is
 * pointless. A holder elsewhere may be a crashed node whose lock the file
 * server keeps until its lease runs out (NFSv4: 90 s by default), which a
 * job requeued after the crash must outwait rather than fail on. */
static int holder_alive_here(const char *who) {
  long pid;
  char host[256], mine[256];
  if (sscanf(who, "pid %ld on %255s", &pid, host) != 2 || gethostname(mine, sizeof mine) != 0)
    return 0;
  mine[sizeof mine - 1] = '\0';
  return strcmp(host, mine) == 0 && pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

static int try_lock(int fd) {
  struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  return fcntl(fd, F_SETLK, &l);
}

void run_lock(const char *run_dir) {
  char path[PATH_MAX];
  path_fmt(path, sizeof path, "%s/pretrain.lock", run_dir);
  /* Never closed: closing any descriptor of the file would drop the lock. */
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) die("cannot open %s: %s", path, strerror(errno));
  char who[256] = "";
  for (int waited = 0; try_lock(fd) != 0; waited += LOCK_POLL_S) {
    if (errno != EACCES && errno != EAGAIN) {
      warn("cannot lock %s (%s): nothing keeps a second job from using %s at the same time",
           path, strerror(errno), run_dir);
      close(fd);
      return;
    }
    read_holder(fd, who, sizeof who);
    if (holder_alive_here(who) || waited >= LOCK_WAIT_S)
      die("%s is in use by another bertrain pretrain (%s, %s): two jobs in one run directory "
          "would overwrite each other's checkpoints and metrics. Wait for it to end (or stop "
          "it: it writes latest.h5 on SIGUSR1), or choose another run.dir", run_dir,
          who[0] ? who : "holder unknown", path);
    if (waited == 0)
      warn("%s is locked by %s; waiting up to %d s for it to be released (the lock of a node "
           "that crashed lasts until the file server notices)", run_dir, who[0] ? who : "another job",
           LOCK_WAIT_S);
    sleep(LOCK_POLL_S);
  }
  write_holder(fd, path);
}
