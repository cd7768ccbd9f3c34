/* A tiny test harness: CHECK macros that count, and death tests that run a
 * function in a child process and check its exit status and stderr. */
#ifndef BERTRAIN_TEST_UTIL_H
#define BERTRAIN_TEST_UTIL_H

#include <stdio.h>
#include <string.h>

extern int t_passed, t_failed;

#define CHECK(cond)                                                             \
  do {                                                                          \
    if (cond) t_passed++;                                                       \
    else { t_failed++; fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } \
  } while (0)

#define CHECK_INT(a, b)                                                         \
  do {                                                                          \
    long long _a = (long long)(a), _b = (long long)(b);                         \
    if (_a == _b) t_passed++;                                                   \
    else { t_failed++; fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, _a, _b); } \
  } while (0)

#define CHECK_STR(a, b)                                                         \
  do {                                                                          \
    const char *_a = (a), *_b = (b);                                            \
    if (_a && _b && strcmp(_a, _b) == 0) t_passed++;                            \
    else { t_failed++; fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, _a ? _a : "(null)", _b ? _b : "(null)"); } \
  } while (0)

/* Runs fn(arg) in a child; checks it exits non-zero and that its stderr
 * contains every string of expect (NULL-terminated). Returns 1 when it did. */
int expect_death(const char *what, void (*fn)(void *), void *arg, const char *const *expect);

/* Prints "N passed, M failed" and returns the exit status for main(). */
int test_finish(void);

/* Path of a file under the source tree ($SRC or "..") in a static buffer. */
const char *src_path(const char *rel);

#endif
