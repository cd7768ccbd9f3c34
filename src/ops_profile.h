/* A profiling ops table: every op of an inner table, timed from the host
 * with the device synchronised before and after, and added up per op and
 * shape. The syncs cost time of their own (each op waits for the last), so
 * the totals show where the time goes, not the speed of an unprofiled run.
 * Used by bench --profile. */
#ifndef BERTRAIN_OPS_PROFILE_H
#define BERTRAIN_OPS_PROFILE_H

#include <stdio.h>

#include "ops.h"

/* The profiling table over inner (one at a time per process). */
const Ops *ops_profiled(const Ops *inner);
/* Forgets the times so far (after warm-up steps). */
void ops_profile_reset(void);
/* The table: per op and shape, ms per step, share, calls per step; the
 * slowest first. */
void ops_profile_print(FILE *f, int steps);

#endif
