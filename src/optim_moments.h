/* The per-step constants of AdamW and LAMB (ops.h's OptParams), computed on
 * the host once per step, the same way for the CPU and the CUDA backends so
 * that both apply the same bias correction. C and C++ (CUDA) alike; in C++
 * include it inside extern "C" {} after <math.h>. */
#ifndef BERTRAIN_OPTIM_MOMENTS_H
#define BERTRAIN_OPTIM_MOMENTS_H

#include <math.h>

#include "ops.h"
#include "util.h"

#ifdef __CUDACC__
#define OPTIM_FN __host__ __device__ static inline
#else
#define OPTIM_FN static inline
#endif

/* The factor that clips a gradient whose sum of squares is sumsq to the
 * norm max_norm (0: no clipping); -1 when the norm is not finite (the step
 * is skipped). The same arithmetic on the host and the device. */
OPTIM_FN float optim_clip_factor(float sumsq, float max_norm) {
  const float norm = sqrtf(sumsq);
  if (!isfinite(norm)) return -1.0f;
  if (max_norm > 0.0f && norm > max_norm) return (float)((double)max_norm / (double)norm);
  return 1.0f;
}

typedef struct Moments {
  float b1, b2, one_b1, one_b2, gs, c1, c2;
} Moments;

/* Dies naming op on a step below 1 (with bias correction) or a grad_scale
 * that is not positive. */
static inline Moments optim_moments(const OptParams *o, const char *op) {
  if (o->bias_correction && o->step < 1) die("ops: %s: step must be at least 1 (got %d)", op, o->step);
  if (!(o->grad_scale > 0.0f))
    die("ops: %s: grad_scale must be positive (got %g; 1 = no scaling)", op, o->grad_scale);
  Moments k;
  k.b1 = o->beta1;
  k.b2 = o->beta2;
  k.one_b1 = 1.0f - o->beta1;
  k.one_b2 = 1.0f - o->beta2;
  k.gs = o->grad_scale;
  k.c1 = o->bias_correction ? (float)(1.0 - pow(o->beta1, o->step)) : 1.0f;
  k.c2 = o->bias_correction ? (float)(1.0 - pow(o->beta2, o->step)) : 1.0f;
  return k;
}

/* Dies naming op unless the non-empty ranges are ascending and disjoint (the
 * CUDA backend updates them all in one launch, where an overlap would race). */
static inline void optim_check_ranges(const char *op, const ParamRange *r, int nr) {
  size_t end = 0;
  int prev = -1;
  for (int t = 0; t < nr; t++) {
    if (!r[t].count) continue;
    if (prev >= 0 && r[t].offset < end)
      die("ops: %s: range %d (offset %zu) starts before range %d ends (%zu): ranges must be "
          "ascending and disjoint", op, t, r[t].offset, prev, end);
    end = r[t].offset + r[t].count, prev = t;
  }
}

#endif
