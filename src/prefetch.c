#define _POSIX_C_SOURCE 200809L
#include "prefetch.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct Prefetcher {
  BatchLoader *loader;
  LoadedBatch buf[2];
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int pending;   /* a request waits for the thread */
  int ready;     /* the requested batch is in buf[slot] */
  int quit;
  int slot;      /* where the current request goes */
  uint64_t first;
  int n;
};

static void lock(Prefetcher *p) {
  if (pthread_mutex_lock(&p->mu) != 0) die("prefetch: cannot lock a mutex");
}

static void unlock(Prefetcher *p) {
  if (pthread_mutex_unlock(&p->mu) != 0) die("prefetch: cannot unlock a mutex");
}

static void wait_cv(Prefetcher *p) {
  if (pthread_cond_wait(&p->cv, &p->mu) != 0) die("prefetch: cannot wait on a condition");
}

static void wake(Prefetcher *p) {
  if (pthread_cond_broadcast(&p->cv) != 0) die("prefetch: cannot signal a condition");
}

static void *worker(void *arg) {
  Prefetcher *p = arg;
  lock(p);
  for (;;) {
    while (!p->pending && !p->quit) wait_cv(p);
    if (p->quit) break;
    uint64_t first = p->first;
    int n = p->n;
    LoadedBatch *b = &p->buf[p->slot];
    unlock(p);
    loader_read(p->loader, first, n, b); /* dies naming the shard on errors */
    lock(p);
    p->pending = 0;
    p->ready = 1;
    wake(p);
  }
  unlock(p);
  return NULL;
}

Prefetcher *prefetch_new(BatchLoader *l, int max_n) {
  Prefetcher *p = xcalloc(1, sizeof *p);
  p->loader = l;
  for (int i = 0; i < 2; i++)
    loaded_batch_alloc(&p->buf[i], max_n, loader_seq_length(l), loader_max_predictions(l));
  if (pthread_mutex_init(&p->mu, NULL) != 0 || pthread_cond_init(&p->cv, NULL) != 0)
    die("prefetch: cannot create a mutex");
  /* The thread inherits this mask: termination requests go to the main
   * thread, which finishes the step before it stops. */
  sigset_t all, old;
  sigfillset(&all);
  if (pthread_sigmask(SIG_BLOCK, &all, &old) != 0) die("prefetch: cannot block signals");
  int rc = pthread_create(&p->thread, NULL, worker, p);
  if (pthread_sigmask(SIG_SETMASK, &old, NULL) != 0) die("prefetch: cannot restore signals");
  if (rc != 0) die("prefetch: cannot start the data thread: %s", strerror(rc));
  return p;
}

void prefetch_request(Prefetcher *p, uint64_t first, int n) {
  lock(p);
  if (p->pending || p->ready) die("prefetch: internal error: a request is already outstanding");
  p->slot ^= 1;
  p->first = first;
  p->n = n;
  p->pending = 1;
  wake(p);
  unlock(p);
}

const LoadedBatch *prefetch_take(Prefetcher *p, double *wait_s) {
  double t0 = now_seconds();
  lock(p);
  if (!p->pending && !p->ready) die("prefetch: internal error: nothing was requested");
  while (!p->ready) wait_cv(p);
  p->ready = 0;
  const LoadedBatch *b = &p->buf[p->slot];
  unlock(p);
  if (wait_s) *wait_s += now_seconds() - t0;
  return b;
}

void prefetch_free(Prefetcher *p) {
  if (!p) return;
  lock(p);
  while (p->pending) wait_cv(p);
  p->quit = 1;
  wake(p);
  unlock(p);
  if (pthread_join(p->thread, NULL) != 0) die("prefetch: cannot join the data thread");
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  for (int i = 0; i < 2; i++) loaded_batch_free(&p->buf[i]);
  free(p);
}
