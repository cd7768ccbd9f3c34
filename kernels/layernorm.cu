/* LayerNorm over the last dimension. Row statistics: one warp per row
 * with fixed-shape warp sums in double (as the CPU backend sums in double).
 * dgamma / dbeta: column sums over fixed row chunks, then the chunk
 * partials in order. Activations (x, out, sum, y, res, dx, dy, dbranch) are
 * fp32 or bf16 (T; activations.cu); gamma, beta, their gradients and the
 * row statistics are fp32. */
#include "ops_cuda_internal.cuh"

/* LayerNorm of row r (xr) into o, with its mean and rstd; every lane of the
 * row's warp calls it. */
template <class T>
__device__ static void layernorm_row(T *o, float *mean, float *rstd, const T *xr,
                                     const float *gamma, const float *beta, int c, float eps,
                                     size_t r) {
  double s = 0.0;
  row_each(xr, c, [&](int, float v) { s += v; });
  double mu = warp_sum(s) / c, ss = 0.0;
  row_each(xr, c, [&](int, float v) { ss += (v - mu) * (v - mu); });
  ss = warp_sum(ss);
  float m = (float)mu, rs = (float)(1.0 / sqrt(ss / c + eps));
  row_put(o, c, [&](int j) { return (ldf(&xr[j]) - m) * rs * gamma[j] + beta[j]; });
  if (threadIdx.x % 32 == 0) {
    mean[r] = m;
    rstd[r] = rs;
  }
}

template <class T>
static __global__ void layernorm_fwd_kernel(T *out, float *mean, float *rstd, const T *x,
                                            const float *gamma, const float *beta, int c,
                                            float eps, size_t n) {
  const size_t r = warp_row();
  if (r >= n) return;
  layernorm_row(out + r * c, mean, rstd, x + r * c, gamma, beta, c, eps, r);
}

/* One warp per row: sum = dropout(y) + res, then its LayerNorm (of sum as
 * stored). The product and the add are rounded one at a time (no FMA), as
 * the CPU's separate passes round them. Each thread reads back only the
 * elements of sum it wrote, so sum may be y. */
template <class T>
static __global__ void residual_ln_kernel(T *out, T *sum, float *mean, float *rstd, const T *y,
                                          const T *res, const float *gamma, const float *beta,
                                          int c, float eps, float p, float s, DropoutKey k,
                                          size_t n) {
  const size_t r = warp_row(), base = r * c;
  if (r >= n) return;
  DropoutWalk walk;
  walk.key = k, walk.p = p;
  row_map2(sum + base, y + base, res + base, c, [&](int j, float v, float rv) {
    if (p > 0.0f) v = walk.keep(k.elem_offset + base + j) ? __fmul_rn(v, s) : 0.0f;
    return __fadd_rn(v, rv);
  });
  __syncwarp(); /* the LayerNorm may read elements of sum other lanes wrote */
  layernorm_row(out + base, mean, rstd, sum + base, gamma, beta, c, eps, r);
}

/* Per chunk of ROW_CHUNK rows: sums of dy * xhat (for dgamma) and dy. */
template <class T>
static __global__ void ln_param_part_kernel(double *pg, double *pb, const T *dy, const T *x,
                                            const float *mean, const float *rstd, int n, int c) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= c) return;
  int r0 = blockIdx.y * ROW_CHUNK, r1 = min(n, r0 + ROW_CHUNK);
  double sg = 0.0, sb = 0.0;
  for (int r = r0; r < r1; r++) {
    size_t i = (size_t)r * c + j;
    float d = ldf(&dy[i]);
    sg += d * ((ldf(&x[i]) - mean[r]) * rstd[r]);
    sb += d;
  }
  pg[(size_t)blockIdx.y * c + j] = sg;
  pb[(size_t)blockIdx.y * c + j] = sb;
}

static __global__ void ln_param_finish_kernel(float *dgamma, float *dbeta, const double *pg,
                                              const double *pb, int nchunks, int c) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= c) return;
  double sg = 0.0, sb = 0.0;
  for (int ch = 0; ch < nchunks; ch++) {
    sg += pg[(size_t)ch * c + j];
    sb += pb[(size_t)ch * c + j];
  }
  if (dgamma) dgamma[j] += (float)sg;
  if (dbeta) dbeta[j] += (float)sb;
}

/* With dbranch (residual_ln_bwd): also dbranch = dropout'(dx), the
 * gradient of the sub-block's branch output, from the same registers. */
struct BranchDropout {
  float p, s;
  DropoutKey key;
};

/* dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy gamma. Every thread
 * reads its elements of dy before the warp sums and writes only its own
 * elements after them, so dx may be dy. dbranch: NULL for none. */
template <class T>
static __global__ void ln_dx_kernel(T *dx, T *dbranch, const T *dy, const T *x, const float *mean,
                                    const float *rstd, const float *gamma, int c,
                                    BranchDropout bd, size_t n) {
  const size_t r = warp_row();
  if (r >= n) return;
  const T *xr = x + r * c, *dr = dy + r * c;
  float m = mean[r], rs = rstd[r];
  double s1 = 0.0, s2 = 0.0;
  row_each2(dr, xr, c, [&](int j, float d, float v) {
    float g = d * gamma[j];
    s1 += g;
    s2 += g * ((v - m) * rs);
  });
  float a = (float)(warp_sum(s1) / c), b = (float)(warp_sum(s2) / c);
  __syncwarp(); /* dx may be dy: every lane's reads above come before any write */
  auto grad = [&](int j) {
    float g = ldf(&dr[j]) * gamma[j];
    return rs * (g - a - ((ldf(&xr[j]) - m) * rs) * b);
  };
  /* dbranch first: it recomputes dx from dy, which dx may overwrite */
  if (dbranch) {
    DropoutWalk walk;
    walk.key = bd.key, walk.p = bd.p;
    row_put(dbranch + r * c, c, [&](int j) {
      float d = grad(j);
      return bd.p == 0.0f ? d : walk.keep(bd.key.elem_offset + r * c + j) ? __fmul_rn(d, bd.s) : 0.0f;
    });
  }
  row_put(dx + r * c, c, grad);
}

void cuda_layernorm_fwd(float *out, float *mean, float *rstd, const float *x,
                        const float *gamma, const float *beta, int n, int c, float eps) {
  if (ops_no_work("layernorm_fwd", n, c, 1)) return;
  WRITES(out, (size_t)n * c);
  WRITES(mean, n);
  WRITES(rstd, n);
  by_act("layernorm_fwd", {out, x}, [&](auto t) {
    using T = decltype(t);
    layernorm_fwd_kernel<T><<<warp_rows_grid("layernorm_fwd", (size_t)n), THREADS>>>(
        tp<T>(out), mean, rstd, tp<T>(x), gamma, beta, c, eps, (size_t)n);
  });
  LAUNCH_CHECK("layernorm_fwd (n=%d c=%d)", n, c);
}

void cuda_residual_ln_fwd(float *out, float *sum, float *mean, float *rstd, const float *y,
                          const float *res, const float *gamma, const float *beta, int n, int c,
                          float eps, float p, DropoutKey key) {
  ops_check_dropout("residual_ln_fwd", p);
  if (ops_no_work("residual_ln_fwd", n, c, 1)) return;
  const float s = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
  WRITES(out, (size_t)n * c);
  WRITES(sum, (size_t)n * c);
  WRITES(mean, n);
  WRITES(rstd, n);
  by_act("residual_ln_fwd", {out, sum, y, res}, [&](auto t) {
    using T = decltype(t);
    residual_ln_kernel<T><<<warp_rows_grid("residual_ln_fwd", (size_t)n), THREADS>>>(
        tp<T>(out), tp<T>(sum), mean, rstd, tp<T>(y), tp<T>(res), gamma, beta, c, eps, p, s,
        key, (size_t)n);
  });
  LAUNCH_CHECK("residual_ln_fwd (n=%d c=%d p=%g)", n, c, p);
}

/* The column pass runs first, so the row pass may overwrite dy. */
template <class T>
static void layernorm_bwd_with(const char *op, T *dx, T *dbranch, float *dgamma, float *dbeta,
                               const T *dy, const T *x, const float *mean, const float *rstd,
                               const float *gamma, int n, int c, BranchDropout bd) {
  if (dgamma || dbeta) {
    int nchunks = (int)ceil_div((size_t)n, ROW_CHUNK);
    if (nchunks > 65535) die("ops: %s: %d rows are too many for the column sum", op, n);
    double *pg = (double *)cuda_scratch(2 * (size_t)nchunks * c * sizeof(double));
    double *pb = pg + (size_t)nchunks * c;
    dim3 grid((unsigned)ceil_div((size_t)c, THREADS), (unsigned)nchunks);
    ln_param_part_kernel<T><<<grid, THREADS>>>(pg, pb, dy, x, mean, rstd, n, c);
    LAUNCH_CHECK("%s param part (n=%d c=%d)", op, n, c);
    ln_param_finish_kernel<<<(unsigned)ceil_div((size_t)c, THREADS), THREADS>>>(dgamma, dbeta, pg,
                                                                              pb, nchunks, c);
    LAUNCH_CHECK("%s param finish (n=%d c=%d)", op, n, c);
  }
  ln_dx_kernel<T><<<warp_rows_grid(op, (size_t)n), THREADS>>>(dx, dbranch, dy, x, mean, rstd,
                                                              gamma, c, bd, (size_t)n);
  LAUNCH_CHECK("%s dx (n=%d c=%d)", op, n, c);
}

/* Both backward ops: what they write, then the kernels on their type. */
static void ln_backward(const char *op, float *dx, float *dbranch, float *dgamma, float *dbeta,
                        const float *dy, const float *x, const float *mean, const float *rstd,
                        const float *gamma, int n, int c, BranchDropout bd) {
  if (ops_no_work(op, n, c, 1)) return;
  WRITES(dx, (size_t)n * c);
  if (dbranch) WRITES(dbranch, (size_t)n * c);
  if (dgamma) WRITES(dgamma, c);
  if (dbeta) WRITES(dbeta, c);
  by_act(op, {dx, dbranch, dy, x}, [&](auto t) {
    using T = decltype(t);
    layernorm_bwd_with<T>(op, tp<T>(dx), dbranch ? tp<T>(dbranch) : NULL, dgamma, dbeta, tp<T>(dy),
                          tp<T>(x), mean, rstd, gamma, n, c, bd);
  });
}

void cuda_layernorm_bwd(float *dx, float *dgamma, float *dbeta, const float *dy,
                        const float *x, const float *mean, const float *rstd,
                        const float *gamma, int n, int c) {
  BranchDropout none = {0.0f, 1.0f, DropoutKey{0, 0, 0, 0}};
  ln_backward("layernorm_bwd", dx, NULL, dgamma, dbeta, dy, x, mean, rstd, gamma, n, c, none);
}

void cuda_residual_ln_bwd(float *dx, float *dbranch, float *dgamma, float *dbeta,
                          const float *dy, const float *sum, const float *mean,
                          const float *rstd, const float *gamma, int n, int c, float p,
                          DropoutKey key) {
  ops_check_dropout("residual_ln_bwd", p);
  BranchDropout bd = {p, p > 0.0f ? 1.0f / (1.0f - p) : 1.0f, key};
  ln_backward("residual_ln_bwd", dx, dbranch, dgamma, dbeta, dy, sum, mean, rstd, gamma, n, c, bd);
}
