/* AdamW, LAMB and the sum of squares. The per-element formulas are the CPU
 * backend's, with the per-step constants computed on the host the same way.
 * Norms: fixed SUM_CHUNK-element blocks give double partials, which one
 * block then adds in a fixed order, so they are bit-identical run to run. */
#include <math.h>

#include "ops_cuda_internal.cuh"

extern "C" {
#include "optim_moments.h"
}

__device__ static inline void update_moments(const Moments &k, float g, float *m, float *v) {
  g *= k.gs;
  *m = k.b1 * *m + k.one_b1 * g;
  *v = k.b2 * *v + k.one_b2 * g * g;
}

static __global__ void adamw_kernel(float *w, const float *g, float *m, float *v, size_t n,
                                    Moments k, float step_size, float sqrt_c2, float eps,
                                    float shrink, int decay) {
  GRID_STRIDE(i, n) {
    update_moments(k, g[i], &m[i], &v[i]);
    float wi = decay ? w[i] * shrink : w[i];
    w[i] = wi - step_size * (m[i] / (sqrtf(v[i]) / sqrt_c2 + eps));
  }
}

void cuda_adamw(float *w, const float *g, float *m, float *v, const ParamRange *r, int nr,
                const OptParams *o) {
  Moments k = optim_moments(o, "adamw");
  const float step_size = (float)((double)o->lr / k.c1), sqrt_c2 = sqrtf(k.c2), eps = o->eps;
  const float shrink = 1.0f - o->lr * o->weight_decay;
  for (int t = 0; t < nr; t++) {
    size_t off = r[t].offset, n = r[t].count;
    if (!n) continue;
    adamw_kernel<<<grid_for(n, THREADS), THREADS>>>(w + off, g + off, m + off, v + off, n, k,
                                                    step_size, sqrt_c2, eps, shrink, r[t].decay);
    LAUNCH_CHECK("adamw (range %d: offset=%zu count=%zu)", t, off, n);
  }
}

__device__ static inline float lamb_update(const Moments &k, float m, float v, float w, float eps,
                                           float wd) {
  return (m / k.c1) / (sqrtf(v / k.c2) + eps) + wd * w;
}

/* Block b: moments of elements [b SUM_CHUNK, (b+1) SUM_CHUNK), and the
 * partial sums of w^2 and u^2 into part[2b], part[2b+1]. */
static __global__ void lamb_moments_kernel(double *part, const float *w, const float *g, float *m,
                                           float *v, size_t n, Moments k, float eps, float wd) {
  size_t lo = (size_t)blockIdx.x * SUM_CHUNK, hi = min(n, lo + SUM_CHUNK);
  double sw = 0.0, su = 0.0;
  for (size_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    update_moments(k, g[i], &m[i], &v[i]);
    float u = lamb_update(k, m[i], v[i], w[i], eps, wd);
    sw += (double)w[i] * w[i];
    su += (double)u * u;
  }
  sw = block_sum(sw);
  su = block_sum(su);
  if (threadIdx.x == 0) {
    part[2 * blockIdx.x] = sw;
    part[2 * blockIdx.x + 1] = su;
  }
}

/* One block: the norms from the partials, then *step = lr * trust ratio. */
static __global__ void lamb_ratio_kernel(float *step, const double *part, size_t nb, int decay,
                                         float lr) {
  double sw = 0.0, su = 0.0;
  for (size_t b = threadIdx.x; b < nb; b += blockDim.x) sw += part[2 * b], su += part[2 * b + 1];
  sw = block_sum(sw);
  su = block_sum(su);
  if (threadIdx.x == 0) {
    float ratio = decay && sw > 0.0 && su > 0.0 ? (float)(sqrt(sw) / sqrt(su)) : 1.0f;
    *step = lr * ratio;
  }
}

static __global__ void lamb_apply_kernel(float *w, const float *m, const float *v, size_t n,
                                         Moments k, float eps, float wd, const float *step) {
  const float s = *step;
  GRID_STRIDE(i, n) w[i] -= s * lamb_update(k, m[i], v[i], w[i], eps, wd);
}

void cuda_lamb(float *w, const float *g, float *m, float *v, const ParamRange *r, int nr,
               const OptParams *o) {
  Moments k = optim_moments(o, "lamb");
  for (int t = 0; t < nr; t++) {
    size_t off = r[t].offset, n = r[t].count, nb = ceil_div(n, SUM_CHUNK);
    if (!n) continue;
    if (nb > 0x7fffffffu) die("ops: lamb: range %d has too many elements (%zu)", t, n);
    const float wd = r[t].decay ? o->weight_decay : 0.0f;
    double *part = (double *)cuda_scratch((2 * nb + 1) * sizeof(double));
    float *step = (float *)(part + 2 * nb);
    lamb_moments_kernel<<<(unsigned)nb, THREADS>>>(part, w + off, g + off, m + off, v + off, n, k,
                                                   o->eps, wd);
    LAUNCH_CHECK("lamb moments (range %d: offset=%zu count=%zu)", t, off, n);
    lamb_ratio_kernel<<<1, THREADS>>>(step, part, nb, r[t].decay, o->lr);
    LAUNCH_CHECK("lamb ratio (range %d: offset=%zu count=%zu)", t, off, n);
    lamb_apply_kernel<<<grid_for(n, THREADS), THREADS>>>(w + off, m + off, v + off, n, k, o->eps,
                                                         wd, step);
    LAUNCH_CHECK("lamb apply (range %d: offset=%zu count=%zu)", t, off, n);
  }
}

static __global__ void sumsq_part_kernel(double *part, const float *x, size_t n) {
  size_t lo = (size_t)blockIdx.x * SUM_CHUNK, hi = min(n, lo + SUM_CHUNK);
  double s = 0.0;
  for (size_t i = lo + threadIdx.x; i < hi; i += blockDim.x) s += (double)x[i] * x[i];
  s = block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

static __global__ void sumsq_total_kernel(float *out, const double *part, size_t nb) {
  double s = 0.0;
  for (size_t b = threadIdx.x; b < nb; b += blockDim.x) s += part[b];
  s = block_sum(s);
  if (threadIdx.x == 0) out[0] = (float)s;
}

void cuda_sumsq(float *out, const float *x, size_t n) {
  size_t nb = ceil_div(n, SUM_CHUNK);
  if (nb > 0x7fffffffu) die("ops: sumsq: too many elements (%zu)", n);
  double *part = (double *)cuda_scratch((nb + 1) * sizeof(double));
  if (nb) {
    sumsq_part_kernel<<<(unsigned)nb, THREADS>>>(part, x, n);
    LAUNCH_CHECK("sumsq part (n=%zu)", n);
  }
  sumsq_total_kernel<<<1, THREADS>>>(out, part, nb);
  LAUNCH_CHECK("sumsq total (n=%zu)", n);
}
