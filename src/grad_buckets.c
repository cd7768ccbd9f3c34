#include "grad_buckets.h"

#include "comm.h"
#include "util.h"

static void start_open(GradBuckets *b) {
  if (b->hi == b->lo) return;
  comm_allreduce_start_f32(b->grads + b->lo, b->hi - b->lo);
  b->buckets++;
  b->lo = b->hi = 0;
}

/* Parts come from the end of the buffer towards its start, each adjacent
 * to the one before: a bucket grows downwards. */
static void on_ready(void *ctx, size_t offset, size_t count) {
  GradBuckets *b = ctx;
  if (b->hi == b->lo) b->hi = offset + count;
  else if (offset + count != b->lo)
    die("gradient buckets: part [%zu, %zu) does not end where the open bucket [%zu, %zu) starts",
        offset, offset + count, b->lo, b->hi);
  b->lo = offset;
  if (b->hi - b->lo >= b->min) start_open(b);
}

void grad_buckets_begin(GradBuckets *b, Model *m, double bucket_mb) {
  b->grads = model_grads_dev(m);
  b->min = (size_t)(bucket_mb * 1e6 / sizeof(float));
  if (b->min < 1) b->min = 1;
  b->lo = b->hi = 0;
  b->buckets = 0;
  model_set_grad_hook(m, on_ready, b);
}

void grad_buckets_end(GradBuckets *b, Model *m) {
  start_open(b);
  model_set_grad_hook(m, NULL, NULL);
  comm_allreduce_wait();
}
