/* Optimizer steps and the gradient norm. Sums are taken over fixed
 * SUM_BLOCK-element blocks and the block partials added in block order, so
 * norms (and so LAMB's trust ratios) do not depend on the thread count. */
#include <math.h>
#include <stdlib.h>

#include "ops_cpu_internal.h"
#include "optim_moments.h"
#include "util.h"

static inline void update_moments(const Moments *k, float g, float *m, float *v) {
  g *= k->gs;
  *m = k->b1 * *m + k->one_b1 * g;
  *v = k->b2 * *v + k->one_b2 * g * g;
}

/* The clipping of OptParams.grad_sumsq into k's gradient scale (the CPU
 * backend's memory is the host's); 0 when the step is skipped. */
static int clip(Moments *k, const OptParams *o) {
  if (!o->grad_sumsq) return 1;
  const float f = optim_clip_factor(*o->grad_sumsq, o->max_norm);
  if (f < 0.0f) return 0;
  k->gs *= f;
  return 1;
}

void cpu_adamw(float *w, const float *g, float *m, float *v, const ParamRange *r, int nr,
               const OptParams *o) {
  Moments k = optim_moments(o, "adamw");
  optim_check_ranges("adamw", r, nr);
  if (!clip(&k, o)) return;
  const float step_size = (float)((double)o->lr / k.c1), sqrt_c2 = sqrtf(k.c2), eps = o->eps;
  const float shrink = 1.0f - o->lr * o->weight_decay;
  for (int t = 0; t < nr; t++) {
    float *wt = w + r[t].offset, *mt = m + r[t].offset, *vt = v + r[t].offset;
    const float *gt = g + r[t].offset;
    const float keep = r[t].decay ? shrink : 1.0f; /* w * 1 is w: no branch in the loop */
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < r[t].count; i++) {
      update_moments(&k, gt[i], &mt[i], &vt[i]);
      wt[i] = wt[i] * keep - step_size * (mt[i] / (sqrtf(vt[i]) / sqrt_c2 + eps));
    }
  }
}

static inline float lamb_update(const Moments *k, float m, float v, float w, float eps, float wd) {
  return (m / k->c1) / (sqrtf(v / k->c2) + eps) + wd * w;
}

void cpu_lamb(float *w, const float *g, float *m, float *v, const ParamRange *r, int nr,
              const OptParams *o) {
  Moments k = optim_moments(o, "lamb");
  optim_check_ranges("lamb", r, nr);
  if (!clip(&k, o)) return;
  size_t most = 0;
  for (int t = 0; t < nr; t++) most = r[t].count > most ? r[t].count : most;
  double *part = xmalloc(2 * (n_blocks(most, SUM_BLOCK) + 1) * sizeof *part);
  for (int t = 0; t < nr; t++) {
    float *wt = w + r[t].offset, *mt = m + r[t].offset, *vt = v + r[t].offset;
    const float *gt = g + r[t].offset;
    const size_t n = r[t].count, nb = n_blocks(n, SUM_BLOCK);
    const float wd = r[t].decay ? o->weight_decay : 0.0f;
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < nb; b++) {
      double sw = 0.0, su = 0.0;
      for (size_t i = b * SUM_BLOCK; i < min_size(n, (b + 1) * SUM_BLOCK); i++) {
        update_moments(&k, gt[i], &mt[i], &vt[i]);
        float u = lamb_update(&k, mt[i], vt[i], wt[i], o->eps, wd);
        sw += (double)wt[i] * wt[i];
        su += (double)u * u;
      }
      part[2 * b] = sw;
      part[2 * b + 1] = su;
    }
    double sw = 0.0, su = 0.0;
    for (size_t b = 0; b < nb; b++) sw += part[2 * b], su += part[2 * b + 1];
    float ratio = r[t].decay && sw > 0.0 && su > 0.0 ? (float)(sqrt(sw) / sqrt(su)) : 1.0f;
    const float step = o->lr * ratio;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) wt[i] -= step * lamb_update(&k, mt[i], vt[i], wt[i], o->eps, wd);
  }
  free(part);
}

void cpu_sumsq(float *out, const float *x, size_t n) {
  const size_t nb = n_blocks(n, SUM_BLOCK);
  double *part = xmalloc((nb + 1) * sizeof *part);
#pragma omp parallel for schedule(static)
  for (size_t b = 0; b < nb; b++) {
    double s = 0.0;
    for (size_t i = b * SUM_BLOCK; i < min_size(n, (b + 1) * SUM_BLOCK); i++) s += (double)x[i] * x[i];
    part[b] = s;
  }
  double total = 0.0;
  for (size_t b = 0; b < nb; b++) total += part[b];
  out[0] = (float)total;
  free(part);
}
