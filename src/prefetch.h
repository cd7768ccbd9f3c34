/* Reads micro-batches from a BatchLoader on a background thread, so the
 * next one is read from the shards while the current one computes.
 *
 * Two buffers: after prefetch_take returns one, prefetch_request starts
 * filling the other, so the batch taken stays valid until the second
 * prefetch_request after that take. The loader belongs to the thread from prefetch_new to
 * prefetch_free: do not use it meanwhile. Signals are blocked on the
 * thread, so the main thread gets them. */
#ifndef BERTRAIN_PREFETCH_H
#define BERTRAIN_PREFETCH_H

#include <stdint.h>

#include "batch_loader.h"

typedef struct Prefetcher Prefetcher;

/* Buffers for micro-batches of up to max_n samples. */
Prefetcher *prefetch_new(BatchLoader *l, int max_n);
/* Starts reading stream positions [first, first + n) (loader_read). At most
 * one request may be outstanding: take it before requesting again. */
void prefetch_request(Prefetcher *p, uint64_t first, int n);
/* Waits for the outstanding request; adds the seconds waited to *wait_s
 * (if not NULL). */
const LoadedBatch *prefetch_take(Prefetcher *p, double *wait_s);
/* Waits for any outstanding read, then stops the thread. */
void prefetch_free(Prefetcher *p);

#endif
