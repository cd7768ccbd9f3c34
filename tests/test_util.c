#define _POSIX_C_SOURCE 200809L
#include "test_util.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int t_passed, t_failed;

static char *read_all(int fd) {
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  ssize_t n;
  while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
    len += (size_t)n;
    if (len + 1 >= cap) buf = realloc(buf, cap *= 2);
  }
  buf[len] = '\0';
  return buf;
}

int expect_death(const char *what, void (*fn)(void *), void *arg, const char *const *expect) {
  int fds[2];
  if (pipe(fds) != 0) { perror("pipe"); exit(2); }
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    fn(arg);
    _exit(0);
  }
  close(fds[1]);
  char *err = read_all(fds[0]);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  int ok = WIFEXITED(status) && WEXITSTATUS(status) != 0;
  for (const char *const *e = expect; ok && e && *e; e++) ok = strstr(err, *e) != NULL;
  if (ok) t_passed++;
  else {
    t_failed++;
    fprintf(stderr, "death test '%s' failed: status %d, stderr:\n%s\n", what, status, err);
  }
  free(err);
  return ok;
}

int test_finish(void) {
  printf("%d passed, %d failed\n", t_passed, t_failed);
  return t_failed ? 1 : 0;
}

const char *src_path(const char *rel) {
  static char buf[4096];
  const char *src = getenv("SRC");
  snprintf(buf, sizeof buf, "%s/%s", src && *src ? src : "..", rel);
  return buf;
}
