/* A profiling ops table: every op of an inner table, timed alone on the
 * device's clock (timing marks 2 and 3 around it; the host waits for each
 * op), and added up per op and shape with its work: FLOPs of its products
 * and the bytes of its tensors read and written once (the floor of its
 * traffic), so the table shows each op's TFLOP/s and GB/s. Waiting per op
 * leaves the device idle between ops, so the total shows where the time
 * goes, not the speed of an unprofiled run. Used by bench --profile. */
#ifndef BERTRAIN_OPS_PROFILE_H
#define BERTRAIN_OPS_PROFILE_H

#include <stdio.h>

#include "ops.h"

/* The profiling table over inner (one at a time per process), whose
 * activation buffers hold act_bytes per element (4; 2 for bf16 on a GPU). */
const Ops *ops_profiled(const Ops *inner, int act_bytes);
/* Forgets the times so far (after warm-up steps). */
void ops_profile_reset(void);
/* The table: per op and shape, ms per step, share, calls per step; the
 * slowest first. */
void ops_profile_print(FILE *f, int steps);

#endif
