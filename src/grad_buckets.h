/* Overlapping the gradient all-reduce with the backward: while a step's
 * last micro-batch runs backward, the model's gradient hook
 * (model_set_grad_hook) hands over each finished part of the gradient
 * buffer; parts are gathered into buckets of at least the given size, and
 * each bucket's all-reduce (comm_allreduce_start_f32) starts as soon as it
 * is full, while the backward of the earlier layers goes on. */
#ifndef BERTRAIN_GRAD_BUCKETS_H
#define BERTRAIN_GRAD_BUCKETS_H

#include <stddef.h>

#include "model.h"

typedef struct GradBuckets {
  float *grads;    /* the model's gradient buffer (device) */
  size_t min;      /* floats a bucket holds at least */
  size_t lo, hi;   /* the open bucket [lo, hi); empty when lo == hi */
  int buckets;     /* started this step */
} GradBuckets;

/* Before the last micro-batch's backward: sets m's gradient hook. */
void grad_buckets_begin(GradBuckets *b, Model *m, double bucket_mb);
/* After it: starts the last bucket, removes the hook and waits for every
 * bucket's sum. */
void grad_buckets_end(GradBuckets *b, Model *m);

#endif
