/* AdamW, LAMB and the sum of squares. The per-element formulas are the CPU
 * backend's, with the per-step constants computed on the host the same way.
 * The optimizers are multi-tensor: one launch per step phase covers up to
 * CHUNK_RANGES parameter ranges. Norms: fixed-size blocks give double
 * partials, which are then added in a fixed order, so they are
 * bit-identical run to run. */
#include <math.h>

#include "ops_cuda_internal.cuh"

extern "C" {
#include "optim_moments.h"
}

/* ---- the ranges of one launch ----
 * Every range is cut into SUM_CHUNK-element tiles, one block per tile, so a
 * launch covers many ranges (about 80 for BERT-mini, 200 for BERT-base)
 * instead of one, and LAMB's norm partials are the same per-tile sums in the
 * same order as with a launch per range. The range table travels by value in
 * the kernel parameters (no host-to-device copy per step); CHUNK_RANGES
 * ranges keep it under 3 KB, inside the 4 KB parameter limit of every CUDA
 * version, and more ranges take a launch per CHUNK_RANGES. */
#define CHUNK_RANGES 128

struct RangeChunk {
  int n;                             /* ranges, none of them empty */
  unsigned first[CHUNK_RANGES + 1];  /* range t has tiles [first[t], first[t+1]) */
  size_t offset[CHUNK_RANGES], count[CHUNK_RANGES];
  unsigned char decay[CHUNK_RANGES];
};
static_assert(sizeof(RangeChunk) <= 3072, "range table too large for the kernel parameters");

/* Elements [lo, hi) of range t in the flat buffers. */
struct Tile {
  int t;
  size_t lo, hi;
};

/* This block's tile: the range is the last t with first[t] <= blockIdx.x
 * (ranges are not empty, so first[] is strictly increasing). The search is
 * the same in every thread of the block, so the table reads broadcast. */
__device__ static inline Tile block_tile(const RangeChunk &c) {
  const unsigned b = blockIdx.x;
  int lo = 0, hi = c.n - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (c.first[mid] <= b) lo = mid;
    else hi = mid - 1;
  }
  size_t start = (size_t)(b - c.first[lo]) * SUM_CHUNK;
  Tile s = {lo, c.offset[lo] + start, c.offset[lo] + min(c.count[lo], start + SUM_CHUNK)};
  return s;
}

/* Fills c with the non-empty ranges from *next on: up to CHUNK_RANGES, and
 * as many tiles as one grid takes. Advances *next past them; returns the
 * tiles (0 when no ranges are left). */
static unsigned next_chunk(RangeChunk *c, const char *op, const ParamRange *r, int nr, int *next) {
  const size_t max_tiles = 0x7fffffffu; /* grid.x limit */
  size_t tiles = 0;
  c->n = 0;
  for (; *next < nr && c->n < CHUNK_RANGES; ++*next) {
    const ParamRange *p = &r[*next];
    size_t nt = ceil_div(p->count, SUM_CHUNK);
    if (!nt) continue;
    if (nt > max_tiles) die("ops: %s: range %d has too many elements (%zu)", op, *next, p->count);
    if (tiles + nt > max_tiles) break;
    c->first[c->n] = (unsigned)tiles;
    c->offset[c->n] = p->offset;
    c->count[c->n] = p->count;
    c->decay[c->n] = p->decay != 0;
    c->n++;
    tiles += nt;
  }
  c->first[c->n] = (unsigned)tiles;
  return (unsigned)tiles;
}

/* ---- clipping on the device (OptParams.grad_sumsq) ---- */

struct Clip {
  const float *sumsq; /* NULL: none */
  float max_norm;
};

static Clip clip_of(const OptParams *o) { return Clip{o->grad_sumsq, o->max_norm}; }

/* k with the clipping's factor in its gradient scale; false when the step
 * is skipped (the norm is not finite). Every thread reads the one value. */
__device__ static inline bool clipped(Moments &k, const Clip &c) {
  if (!c.sumsq) return true;
  const float f = optim_clip_factor(*c.sumsq, c.max_norm);
  k.gs *= f;
  return f >= 0.0f;
}

/* ---- AdamW ---- */

__device__ static inline void update_moments(const Moments &k, float g, float *m, float *v) {
  g *= k.gs;
  *m = k.b1 * *m + k.one_b1 * g;
  *v = k.b2 * *v + k.one_b2 * g * g;
}

/* The per-step constants, computed on the host as the CPU backend does. */
struct AdamwStep {
  Moments k;
  float step_size, sqrt_c2, eps, shrink;
  Clip clip;
};

/* One element's step, in the CPU backend's order of operations. */
__device__ static inline void adamw_one(const AdamwStep &a, int decay, float g, float *w, float *m,
                                        float *v) {
  update_moments(a.k, g, m, v);
  float wi = decay ? *w * a.shrink : *w;
  *w = wi - a.step_size * (*m / (sqrtf(*v) / a.sqrt_c2 + a.eps));
}

/* w16: the bf16 copy of w to keep up to date (params_bf16.cu), or NULL.
 * Four elements a thread and step (16-byte accesses) where the tile's
 * start allows, as it does for ranges at PARAM_ALIGN offsets; the rest one
 * at a time. */
static __global__ void adamw_kernel(float *w, __nv_bfloat16 *w16, const float *g, float *m,
                                    float *v, RangeChunk c, AdamwStep a) {
  if (!clipped(a.k, a.clip)) return;
  const Tile s = block_tile(c);
  const int decay = c.decay[s.t];
  size_t lo = s.lo;
  if (aligned16(w + lo) && aligned16(g + lo) && aligned16(m + lo) && aligned16(v + lo)) {
    const size_t quads = (s.hi - lo) / 4;
    for (size_t q = threadIdx.x; q < quads; q += blockDim.x) {
      const size_t i = lo + 4 * q;
      float4 W = *reinterpret_cast<float4 *>(w + i), M = *reinterpret_cast<float4 *>(m + i);
      float4 V = *reinterpret_cast<float4 *>(v + i);
      const float4 G = *reinterpret_cast<const float4 *>(g + i);
      adamw_one(a, decay, G.x, &W.x, &M.x, &V.x);
      adamw_one(a, decay, G.y, &W.y, &M.y, &V.y);
      adamw_one(a, decay, G.z, &W.z, &M.z, &V.z);
      adamw_one(a, decay, G.w, &W.w, &M.w, &V.w);
      *reinterpret_cast<float4 *>(w + i) = W;
      *reinterpret_cast<float4 *>(m + i) = M;
      *reinterpret_cast<float4 *>(v + i) = V;
      if (w16) {
        w16[i] = __float2bfloat16(W.x), w16[i + 1] = __float2bfloat16(W.y);
        w16[i + 2] = __float2bfloat16(W.z), w16[i + 3] = __float2bfloat16(W.w);
      }
    }
    lo += 4 * quads;
  }
  for (size_t i = lo + threadIdx.x; i < s.hi; i += blockDim.x) {
    adamw_one(a, decay, g[i], &w[i], &m[i], &v[i]);
    if (w16) w16[i] = __float2bfloat16(w[i]);
  }
}

/* An optimizer step's checks and what it writes: w, m and v up to the end
 * of the last range. Returns the weights' bf16 copy to update along with w
 * (params_bf16.cu), or NULL. */
static __nv_bfloat16 *optimizer_begin(const char *op, const float *w, const float *m,
                                      const float *v, const ParamRange *r, int nr) {
  optim_check_ranges(op, r, nr);
  size_t extent = 0;
  for (int i = 0; i < nr; i++)
    if (r[i].offset + r[i].count > extent) extent = r[i].offset + r[i].count;
  WRITES(m, extent);
  WRITES(v, extent);
  return params_bf16_for_update(w, extent);
}

void cuda_adamw(float *w, const float *g, float *m, float *v, const ParamRange *r, int nr,
                const OptParams *o) {
  AdamwStep a;
  a.k = optim_moments(o, "adamw");
  a.step_size = (float)((double)o->lr / a.k.c1);
  a.sqrt_c2 = sqrtf(a.k.c2);
  a.eps = o->eps;
  a.shrink = 1.0f - o->lr * o->weight_decay;
  a.clip = clip_of(o);
  __nv_bfloat16 *w16 = optimizer_begin("adamw", w, m, v, r, nr);
  RangeChunk c;
  for (int next = 0, from = 0; next < nr; from = next) {
    unsigned tiles = next_chunk(&c, "adamw", r, nr, &next);
    if (!tiles) break;
    adamw_kernel<<<tiles, THREADS>>>(w, w16, g, m, v, c, a);
    LAUNCH_CHECK("adamw (ranges %d..%d of %d: %d non-empty, %u blocks)", from, next - 1, nr, c.n,
                 tiles);
  }
}

/* ---- LAMB ---- */

__device__ static inline float lamb_update(const Moments &k, float m, float v, float w, float eps,
                                           float wd) {
  return (m / k.c1) / (sqrtf(v / k.c2) + eps) + wd * w;
}

/* Block b: the moments of tile b, and its partial sums of w^2 and u^2 into
 * part[2b], part[2b+1]. */
static __global__ void lamb_moments_kernel(double *part, const float *w, const float *g, float *m,
                                           float *v, RangeChunk c, Moments k, Clip clip, float eps,
                                           float weight_decay) {
  if (!clipped(k, clip)) return;
  const Tile s = block_tile(c);
  const float wd = c.decay[s.t] ? weight_decay : 0.0f;
  double sw = 0.0, su = 0.0;
  for (size_t i = s.lo + threadIdx.x; i < s.hi; i += blockDim.x) {
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

/* Block t: range t's norms from its tiles' partials (a fixed order: thread
 * j takes tiles j, j + blockDim.x, ..., then block_sum), then
 * step[t] = lr * trust ratio. */
static __global__ void lamb_ratio_kernel(float *step, const double *part, RangeChunk c,
                                         float lr) {
  const int t = blockIdx.x;
  const double *p = part + 2 * (size_t)c.first[t];
  const unsigned nb = c.first[t + 1] - c.first[t];
  double sw = 0.0, su = 0.0;
  for (unsigned b = threadIdx.x; b < nb; b += blockDim.x) sw += p[2 * b], su += p[2 * b + 1];
  sw = block_sum(sw);
  su = block_sum(su);
  if (threadIdx.x == 0) {
    float ratio = c.decay[t] && sw > 0.0 && su > 0.0 ? (float)(sqrt(sw) / sqrt(su)) : 1.0f;
    step[t] = lr * ratio;
  }
}

static __global__ void lamb_apply_kernel(float *w, __nv_bfloat16 *w16, const float *m,
                                         const float *v, RangeChunk c, Moments k, Clip clip,
                                         float eps, float weight_decay, const float *step) {
  if (!clipped(k, clip)) return; /* the ratio kernel's steps are then unread */
  const Tile s = block_tile(c);
  const float wd = c.decay[s.t] ? weight_decay : 0.0f, st = step[s.t];
  for (size_t i = s.lo + threadIdx.x; i < s.hi; i += blockDim.x) {
    w[i] -= st * lamb_update(k, m[i], v[i], w[i], eps, wd);
    if (w16) w16[i] = __float2bfloat16(w[i]);
  }
}

void cuda_lamb(float *w, const float *g, float *m, float *v, const ParamRange *r, int nr,
               const OptParams *o) {
  Moments k = optim_moments(o, "lamb");
  __nv_bfloat16 *w16 = optimizer_begin("lamb", w, m, v, r, nr);
  RangeChunk c;
  for (int next = 0, from = 0; next < nr; from = next) {
    unsigned tiles = next_chunk(&c, "lamb", r, nr, &next);
    if (!tiles) break;
    /* the chunks run in stream order, so each may reuse the scratch */
    double *part = (double *)cuda_scratch(2 * (size_t)tiles * sizeof(double) +
                                          CHUNK_RANGES * sizeof(float));
    float *step = (float *)(part + 2 * (size_t)tiles);
    lamb_moments_kernel<<<tiles, THREADS>>>(part, w, g, m, v, c, k, clip_of(o), o->eps,
                                            o->weight_decay);
    LAUNCH_CHECK("lamb moments (ranges %d..%d of %d: %d non-empty, %u blocks)", from, next - 1,
                 nr, c.n, tiles);
    lamb_ratio_kernel<<<(unsigned)c.n, THREADS>>>(step, part, c, o->lr);
    LAUNCH_CHECK("lamb ratio (ranges %d..%d of %d: %d non-empty)", from, next - 1, nr, c.n);
    lamb_apply_kernel<<<tiles, THREADS>>>(w, w16, m, v, c, k, clip_of(o), o->eps, o->weight_decay,
                                          step);
    LAUNCH_CHECK("lamb apply (ranges %d..%d of %d: %d non-empty, %u blocks)", from, next - 1, nr,
                 c.n, tiles);
  }
}

/* ---- the sum of squares ----
 * Blocks of SUMSQ_CHUNK elements, 16-byte loads four deep, double partials;
 * the last block to finish adds them in block order (one launch: the
 * second, one-block launch that did this took 43 us of a BERT-base step on
 * an H100, its threads walking 100 partials each). */
#define SUMSQ_CHUNK 16384
#define SUMSQ_DEPTH 4

static __device__ double sumsq_quads(const float *x, size_t lo, size_t hi) {
  const float4 *q = reinterpret_cast<const float4 *>(x);
  double s = 0.0;
  for (size_t i = lo / 4 + threadIdx.x; i < hi / 4; i += SUMSQ_DEPTH * blockDim.x) {
    float4 f[SUMSQ_DEPTH];
#pragma unroll
    for (int u = 0; u < SUMSQ_DEPTH; u++)
      if (i + u * blockDim.x < hi / 4) f[u] = q[i + u * blockDim.x];
#pragma unroll
    for (int u = 0; u < SUMSQ_DEPTH; u++)
      if (i + u * blockDim.x < hi / 4)
        s += (double)f[u].x * f[u].x + (double)f[u].y * f[u].y + (double)f[u].z * f[u].z +
             (double)f[u].w * f[u].w;
  }
  return s;
}

static __global__ void sumsq_kernel(float *out, double *part, unsigned *arrived, const float *x,
                                    size_t n) {
  const size_t lo = (size_t)blockIdx.x * SUMSQ_CHUNK, hi = min(n, lo + SUMSQ_CHUNK);
  double s = 0.0;
  size_t from = lo;
  if (aligned16(x)) { /* lo is a multiple of 4, so are the quads' bounds */
    s = sumsq_quads(x, lo, hi);
    from = hi / 4 * 4;
  }
  for (size_t i = from + threadIdx.x; i < hi; i += blockDim.x) s += (double)x[i] * x[i];
  s = block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
  if (!last_to_arrive(arrived, gridDim.x)) return;
  double t = 0.0;
  for (unsigned b = threadIdx.x; b < gridDim.x; b += blockDim.x) t += __ldcg(&part[b]);
  t = block_sum(t);
  if (threadIdx.x == 0) out[0] = (float)t;
}

void cuda_sumsq(float *out, const float *x, size_t n) {
  static GrowBuffer counter;
  size_t nb = ceil_div(n, SUMSQ_CHUNK);
  if (nb > 0x7fffffffu) die("ops: sumsq: too many elements (%zu)", n);
  WRITES(out, 1);
  if (!nb) {
    CUDA_CHECK(cudaMemset(out, 0, sizeof(float)), "sumsq of nothing");
    return;
  }
  double *part = (double *)cuda_scratch(nb * sizeof(double));
  unsigned *arrived = arrival_counters(&counter, 1, "sumsq");
  sumsq_kernel<<<(unsigned)nb, THREADS>>>(out, part, arrived, x, n);
  LAUNCH_CHECK("sumsq (n=%zu)", n);
}
