/* LayerNorm over the last dimension. Row statistics: one warp per row
 * with fixed-shape warp sums in double (as the CPU backend sums in double).
 * dgamma / dbeta: column sums over fixed row chunks, then the chunk
 * partials in a fixed shape. Activations (x, out, sum, y, res, dx, dy,
 * dbranch) are fp32 or bf16 (T; activations.cu); gamma, beta, their
 * gradients and the row statistics are fp32.
 *
 * Rows of whole aligned 16-byte packs, up to 8 packs per lane, are held in
 * registers (the *_regs kernels): each element is read once and written
 * once, where the general kernels walk the row in global memory once per
 * pass. Both own elements as row_each does and use the same expressions in
 * the same order. */
#include <type_traits>

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

/* ---- rows in registers ---- */

/* The loops over a lane's packs are unrolled (#pragma unroll) for its row
 * to stay in registers; nvcc leaves those with a dropout draw rolled unless
 * told. */

/* Elements of T in a 16-byte pack. */
template <class T> __host__ __device__ constexpr int pack_len() { return (int)(16 / sizeof(T)); }

/* This lane's packs of a row, q = lane + 32 i for i < P (row_each's
 * ownership), as floats; packs past the row's end are left 0. */
template <class T, int P> struct RowRegs {
  float v[P][pack_len<T>()];
};

/* Whether pack i of the lane lies in a row of np packs. */
__device__ inline bool lane_has(int i, int np) { return (int)(threadIdx.x % 32) + 32 * i < np; }

/* A lane's packs of a row as loaded (bf16: half the registers of
 * RowRegs), for a row fetched while another is worked on. */
template <class T, int P> struct RawRow {
  Pack<T> p[P];
};

template <class T, int P>
__device__ inline void fetch_row(RawRow<T, P> &x, const T *row, int np) {
#pragma unroll
  for (int i = 0; i < P; i++) {
    x.p[i] = Pack<T>{};
    if (lane_has(i, np)) x.p[i] = reinterpret_cast<const Pack<T> *>(row)[threadIdx.x % 32 + 32 * i];
  }
}

template <class T, int P>
__device__ inline void unpack_row(RowRegs<T, P> &x, const RawRow<T, P> &raw) {
#pragma unroll
  for (int i = 0; i < P; i++)
#pragma unroll
    for (int k = 0; k < pack_len<T>(); k++) x.v[i][k] = ldf(&raw.p[i].v[k]);
}

template <class T, int P>
__device__ inline void load_row(RowRegs<T, P> &x, const T *row, int np) {
  RawRow<T, P> raw;
  fetch_row(raw, row, np);
  unpack_row(x, raw);
}

/* o[k] = params[j] for the elements j of pack q of a row of T (fp32
 * parameters, 16-byte aligned, read as packs too). */
template <class T>
__device__ inline void load_params(float (&o)[pack_len<T>()], const float *params, int q) {
  const int per = pack_len<T>() / 4; /* fp32 packs per pack of T */
#pragma unroll
  for (int h = 0; h < per; h++) {
    const Pack<float> p = reinterpret_cast<const Pack<float> *>(params)[q * per + h];
#pragma unroll
    for (int k = 0; k < 4; k++) o[h * 4 + k] = p.v[k];
  }
}

/* LayerNorm of a row held by its warp (x) into o, with its mean and rstd;
 * layernorm_row's arithmetic on registers. */
template <class T, int P>
__device__ static void layernorm_regs(T *o, float *mean, float *rstd, const RowRegs<T, P> &x,
                                      const float *gamma, const float *beta, int c, float eps,
                                      size_t r) {
  const int N = pack_len<T>(), np = c / N;
  double s = 0.0, ss = 0.0;
#pragma unroll
  for (int i = 0; i < P; i++) {
    if (!lane_has(i, np)) continue;
#pragma unroll
    for (int k = 0; k < N; k++) s += x.v[i][k];
  }
  const double mu = warp_sum(s) / c;
#pragma unroll
  for (int i = 0; i < P; i++) {
    if (!lane_has(i, np)) continue;
#pragma unroll
    for (int k = 0; k < N; k++) ss += (x.v[i][k] - mu) * (x.v[i][k] - mu);
  }
  ss = warp_sum(ss);
  const float m = (float)mu, rs = (float)(1.0 / sqrt(ss / c + eps));
#pragma unroll
  for (int i = 0; i < P; i++) {
    if (!lane_has(i, np)) continue;
    const int q = threadIdx.x % 32 + 32 * i;
    float g[pack_len<T>()], b[pack_len<T>()];
    load_params<T>(g, gamma, q);
    load_params<T>(b, beta, q);
    Pack<T> p;
#pragma unroll
    for (int k = 0; k < N; k++) store_as(&p.v[k], (x.v[i][k] - m) * rs * g[k] + b[k]);
    reinterpret_cast<Pack<T> *>(o)[q] = p;
  }
  if (threadIdx.x % 32 == 0) {
    mean[r] = m;
    rstd[r] = rs;
  }
}

template <class T, int P>
static __global__ void layernorm_fwd_regs(T *out, float *mean, float *rstd, const T *x,
                                          const float *gamma, const float *beta, int c,
                                          float eps, size_t n) {
  const size_t r = warp_row();
  if (r >= n) return;
  RowRegs<T, P> xr;
  load_row(xr, x + r * c, c / pack_len<T>());
  layernorm_regs(out + r * c, mean, rstd, xr, gamma, beta, c, eps, r);
}

/* residual_ln_kernel on registers. The LayerNorm takes sum as stored (bf16:
 * rounded), so each value goes through its stored form. Each lane writes
 * only the packs it read, so sum may be y. */
template <class T, int P>
static __global__ void residual_ln_regs(T *out, T *sum, float *mean, float *rstd, const T *y,
                                        const T *res, const float *gamma, const float *beta,
                                        int c, float eps, float p, float s, const uint32_t *bits,
                                        size_t n) {
  const size_t r = warp_row(), base = r * c;
  if (r >= n) return;
  const int N = pack_len<T>(), np = c / N;
  RowRegs<T, P> yr, rr;
  load_row(yr, y + base, np);
  load_row(rr, res + base, np);
#pragma unroll
  for (int i = 0; i < P; i++) {
    if (!lane_has(i, np)) continue;
    const int q = threadIdx.x % 32 + 32 * i;
    Pack<T> ps;
    bool keep[pack_len<T>()];
    bit_keeps(bits, base + q * N, keep);
#pragma unroll
    for (int e = 0; e < N; e++) {
      float v = yr.v[i][e];
      if (p > 0.0f) v = keep[e] ? __fmul_rn(v, s) : 0.0f;
      store_as(&ps.v[e], __fadd_rn(v, rr.v[i][e]));
      yr.v[i][e] = ldf(&ps.v[e]);
    }
    reinterpret_cast<Pack<T> *>(sum + base)[q] = ps;
  }
  layernorm_regs(out + base, mean, rstd, yr, gamma, beta, c, eps, r);
}

/* Rows whose loads ln_param_part_kernel issues together: one row at a time
 * keeps too few bytes in flight per thread to reach the memory bandwidth. */
#define PART_ROWS 8

/* Per chunk of ROW_CHUNK rows: sums of dy * xhat (for dgamma) and dy, added
 * in row order (the loads go ahead in groups of PART_ROWS). */
template <class T>
static __global__ void ln_param_part_kernel(double *pg, double *pb, const T *dy, const T *x,
                                            const float *mean, const float *rstd, int n, int c) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= c) return;
  int r0 = blockIdx.y * ROW_CHUNK, r1 = min(n, r0 + ROW_CHUNK);
  double sg = 0.0, sb = 0.0;
  for (int r = r0; r < r1; r += PART_ROWS) {
    float d[PART_ROWS], xh[PART_ROWS];
#pragma unroll
    for (int u = 0; u < PART_ROWS; u++) {
      const int ru = min(r + u, r1 - 1); /* past the chunk: a row read again, not added */
      const size_t i = (size_t)ru * c + j;
      d[u] = ldf(&dy[i]);
      xh[u] = (ldf(&x[i]) - mean[ru]) * rstd[ru];
    }
#pragma unroll
    for (int u = 0; u < PART_ROWS && r + u < r1; u++) {
      sg += d[u] * xh[u];
      sb += d[u];
    }
  }
  pg[(size_t)blockIdx.y * c + j] = sg;
  pb[(size_t)blockIdx.y * c + j] = sb;
}

/* One warp per column: lane l adds chunks l, l + 32, ... in order, then the
 * warp's butterfly adds the lanes; a fixed shape, so the same sums every
 * run, with 32 loads in flight where one thread walked every chunk. */
static __global__ void ln_param_finish_kernel(float *dgamma, float *dbeta, const double *pg,
                                              const double *pb, int nchunks, int c) {
  const size_t j = warp_row();
  if (j >= (size_t)c) return;
  double sg = 0.0, sb = 0.0;
  for (int ch = threadIdx.x % 32; ch < nchunks; ch += 32) {
    sg += pg[(size_t)ch * c + j];
    sb += pb[(size_t)ch * c + j];
  }
  sg = warp_sum(sg);
  sb = warp_sum(sb);
  if (threadIdx.x % 32 == 0) {
    if (dgamma) dgamma[j] += (float)sg;
    if (dbeta) dbeta[j] += (float)sb;
  }
}

/* With dbranch (residual_ln_bwd): also dbranch = dropout'(dx), the
 * gradient of the sub-block's branch output, from the same registers. */
struct BranchDropout {
  float p, s;
  DropoutKey key;
  const uint32_t *bits; /* the register kernels': cuda_dropout_bits of key (p > 0) */
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

/* dx (and dbranch) of row r, whose dy (g) and x the warp holds: ln_dx_kernel
 * on registers. g becomes dy gamma. Each lane writes only the packs it
 * read, so dx may be dy. col(i, k, dy, xhat) sees each element of the
 * lane's packs before any write. */
template <class T, int P, class F>
__device__ static void ln_dx_row(T *dx, T *dbranch, RowRegs<T, P> &g, const RowRegs<T, P> &xr,
                                 float m, float rs, const float *gamma, int c,
                                 const BranchDropout &bd, size_t r, F col) {
  const int N = pack_len<T>(), np = c / N;
  double s1 = 0.0, s2 = 0.0;
#pragma unroll
  for (int i = 0; i < P; i++) {
    if (!lane_has(i, np)) continue;
    float gam[pack_len<T>()];
    load_params<T>(gam, gamma, threadIdx.x % 32 + 32 * i);
#pragma unroll
    for (int k = 0; k < N; k++) {
      const float xh = (xr.v[i][k] - m) * rs;
      col(i, k, g.v[i][k], xh);
      g.v[i][k] = g.v[i][k] * gam[k];
      s1 += g.v[i][k];
      s2 += g.v[i][k] * xh;
    }
  }
  const float a = (float)(warp_sum(s1) / c), b = (float)(warp_sum(s2) / c);
#pragma unroll
  for (int i = 0; i < P; i++) {
    if (!lane_has(i, np)) continue;
    const int q = threadIdx.x % 32 + 32 * i;
    Pack<T> pd, pb;
    bool keep[pack_len<T>()];
    bit_keeps(dbranch ? bd.bits : nullptr, r * c + q * N, keep);
#pragma unroll
    for (int k = 0; k < N; k++) {
      const float d = rs * (g.v[i][k] - a - ((xr.v[i][k] - m) * rs) * b);
      store_as(&pd.v[k], d);
      if (dbranch) store_as(&pb.v[k], bd.p == 0.0f ? d : keep[k] ? __fmul_rn(d, bd.s) : 0.0f);
    }
    reinterpret_cast<Pack<T> *>(dx + r * c)[q] = pd;
    if (dbranch) reinterpret_cast<Pack<T> *>(dbranch + r * c)[q] = pb;
  }
}

/* One warp per row, without dgamma and dbeta. */
template <class T, int P>
static __global__ void ln_dx_regs(T *dx, T *dbranch, const T *dy, const T *x, const float *mean,
                                  const float *rstd, const float *gamma, int c, BranchDropout bd,
                                  size_t n) {
  const size_t r = warp_row();
  if (r >= n) return;
  const int np = c / pack_len<T>();
  RowRegs<T, P> g, xr;
  load_row(g, dy + r * c, np);
  load_row(xr, x + r * c, np);
  ln_dx_row(dx, dbranch, g, xr, mean[r], rstd[r], gamma, c, bd, r, [](int, int, float, float) {});
}

/* With dgamma or dbeta, a block takes a chunk of ROW_CHUNK rows and its
 * warps WARP_ROWS consecutive rows each: a warp adds dy xhat and dy of its
 * rows, in order, for its lane's columns while it holds them, so dy and x
 * are read once for both. More rows per warp would leave too few warps to
 * fill the GPU; a chunk per warp, too many partials for the finish. */
#define WARP_ROWS (ROW_CHUNK / (THREADS / 32))
static_assert(WARP_ROWS * (THREADS / 32) == ROW_CHUNK, "a block's warps share its chunk evenly");

/* Rows of more elements per lane (bf16 rows past 1536) keep the general
 * column pass: with the column sums and gamma held too, they would spill. */
#define COLS_LANE_ELEMS 48

/* A lane's column sums over its warp's rows, for its packs of a row. Float:
 * 8 rows' terms, then double from the chunk on; doubles would take the
 * registers of another row. */
template <class T, int P> struct ColSums {
  float g[P][pack_len<T>()], b[P][pack_len<T>()];
};

/* Row ch of pg and pb: the warps' column sums added in warp (so row)
 * order, a slab of 32 packs of columns at a time. Every thread of the
 * block calls it. */
template <class T, int P>
__device__ static void put_chunk_sums(double *pg, double *pb, const ColSums<T, P> &acc, int c,
                                      size_t ch) {
  constexpr int N = pack_len<T>(), W = THREADS / 32, S = 32 * N;
  __shared__ double part[W][2][S];
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int i = 0; i < P; i++) {
    if (i * S >= c) break;
#pragma unroll
    for (int k = 0; k < N; k++) {
      part[w][0][lane * N + k] = acc.g[i][k];
      part[w][1][lane * N + k] = acc.b[i][k];
    }
    __syncthreads();
    for (int e = threadIdx.x; e < 2 * S; e += THREADS) {
      const int which = e / S, j = i * S + e % S;
      double s = 0.0;
      for (int u = 0; u < W; u++) s += part[u][which][e % S];
      if (j < c) (which ? pb : pg)[ch * c + j] = s;
    }
    __syncthreads(); /* the slab is read before the next one is written */
  }
}

/* ln_dx_regs with the chunk's column partials (pg, pb: [chunks, c]) for
 * ln_param_finish_kernel. */
template <class T, int P>
static __global__ void ln_dx_cols(T *dx, T *dbranch, double *pg, double *pb, const T *dy,
                                  const T *x, const float *mean, const float *rstd,
                                  const float *gamma, int c, BranchDropout bd, size_t n) {
  const int np = c / pack_len<T>();
  const size_t r0 = blockIdx.x * (size_t)ROW_CHUNK + threadIdx.x / 32 * WARP_ROWS;
  const size_t r1 = r0 + WARP_ROWS < n ? r0 + WARP_ROWS : n;
  ColSums<T, P> acc = {};
  /* row r + 1 is fetched while row r is worked on: a warp's rows are one
   * chain, and the loads would otherwise wait for each row's work */
  RawRow<T, P> gn, xn;
  float mn = 0.0f, rn = 0.0f;
  if (r0 < r1) {
    fetch_row(gn, dy + r0 * c, np), fetch_row(xn, x + r0 * c, np);
    mn = mean[r0], rn = rstd[r0];
  }
  for (size_t r = r0; r < r1; r++) {
    RowRegs<T, P> g, xr;
    unpack_row(g, gn), unpack_row(xr, xn);
    const float m = mn, rs = rn;
    if (r + 1 < r1) {
      fetch_row(gn, dy + (r + 1) * c, np), fetch_row(xn, x + (r + 1) * c, np);
      mn = mean[r + 1], rn = rstd[r + 1];
    }
    ln_dx_row(dx, dbranch, g, xr, m, rs, gamma, c, bd, r,
              [&](int i, int k, float d, float xh) {
                acc.g[i][k] += d * xh;
                acc.b[i][k] += d;
              });
  }
  put_chunk_sums(pg, pb, acc, c, blockIdx.x);
}

/* The register kernels' packs per lane for rows of c elements of T at ptrs
 * (gamma and beta among them; NULL ones skipped): the smallest instance
 * that holds the row, or 0 for the general kernels (rows of part packs, a
 * pointer not 16-byte aligned, or rows too long). */
template <class T>
static int lane_packs(int c, std::initializer_list<const void *> ptrs) {
  if (c % pack_len<T>() != 0) return 0;
  for (const void *p : ptrs)
    if (p && !aligned16(p)) return 0;
  const size_t need = ceil_div((size_t)(c / pack_len<T>()), 32);
  for (int P : {1, 2, 3, 4, 6, 8})
    if ((size_t)P >= need) return P;
  return 0;
}

/* f(std::integral_constant<int, P>) for P from lane_packs; false for 0. */
template <class F> static bool with_packs(int P, F f) {
  switch (P) {
  case 1: f(std::integral_constant<int, 1>{}); return true;
  case 2: f(std::integral_constant<int, 2>{}); return true;
  case 3: f(std::integral_constant<int, 3>{}); return true;
  case 4: f(std::integral_constant<int, 4>{}); return true;
  case 6: f(std::integral_constant<int, 6>{}); return true;
  case 8: f(std::integral_constant<int, 8>{}); return true;
  }
  return false;
}

void cuda_layernorm_fwd(float *out, float *mean, float *rstd, const float *x,
                        const float *gamma, const float *beta, int n, int c, float eps) {
  if (ops_no_work("layernorm_fwd", n, c, 1)) return;
  WRITES(out, (size_t)n * c);
  WRITES(mean, n);
  WRITES(rstd, n);
  by_act("layernorm_fwd", {out, x}, [&](auto t) {
    using T = decltype(t);
    const unsigned grid = warp_rows_grid("layernorm_fwd", (size_t)n);
    const int P = lane_packs<T>(c, {tp<T>(out), tp<T>(x), gamma, beta});
    if (!with_packs(P, [&](auto pk) {
          constexpr int K = decltype(pk)::value;
          layernorm_fwd_regs<T, K><<<grid, THREADS>>>(
              tp<T>(out), mean, rstd, tp<T>(x), gamma, beta, c, eps, (size_t)n);
        }))
      layernorm_fwd_kernel<T><<<grid, THREADS>>>(tp<T>(out), mean, rstd, tp<T>(x), gamma, beta,
                                                 c, eps, (size_t)n);
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
    const unsigned grid = warp_rows_grid("residual_ln_fwd", (size_t)n);
    const int P = lane_packs<T>(c, {tp<T>(out), tp<T>(sum), tp<T>(y), tp<T>(res), gamma, beta});
    if (!with_packs(P, [&](auto pk) {
          constexpr int K = decltype(pk)::value;
          const uint32_t *bits = p > 0.0f ? cuda_dropout_bits_kept((size_t)n * c, p, key) : NULL;
          residual_ln_regs<T, K><<<grid, THREADS>>>(
              tp<T>(out), tp<T>(sum), mean, rstd, tp<T>(y), tp<T>(res), gamma, beta, c, eps, p,
              s, bits, (size_t)n);
        }))
      residual_ln_kernel<T><<<grid, THREADS>>>(tp<T>(out), tp<T>(sum), mean, rstd, tp<T>(y),
                                               tp<T>(res), gamma, beta, c, eps, p, s, key,
                                               (size_t)n);
  });
  LAUNCH_CHECK("residual_ln_fwd (n=%d c=%d p=%g)", n, c, p);
}

/* The general path's column pass runs first, so its row pass may
 * overwrite dy; the register path takes both from the same reads. */
template <class T>
static void layernorm_bwd_with(const char *op, T *dx, T *dbranch, float *dgamma, float *dbeta,
                               const T *dy, const T *x, const float *mean, const float *rstd,
                               const float *gamma, int n, int c, BranchDropout bd) {
  const int P = lane_packs<T>(c, {dx, dbranch, dy, x, gamma});
  const bool params = dgamma || dbeta;
  /* BERTRAIN_LN_COLS_FUSED=0: the separate column pass, for A/B measurements */
  static const bool cols_on = cuda_path_on("BERTRAIN_LN_COLS_FUSED");
  const bool fused = cols_on && params && P != 0 && P * pack_len<T>() <= COLS_LANE_ELEMS;
  const int nchunks = (int)ceil_div((size_t)n, ROW_CHUNK);
  double *pg = NULL, *pb = NULL;
  if (params) {
    if (nchunks > 65535) die("ops: %s: %d rows are too many for the column sum", op, n);
    pg = (double *)cuda_scratch(2 * (size_t)nchunks * c * sizeof(double));
    pb = pg + (size_t)nchunks * c;
  }
  if (params && !fused) {
    dim3 parts((unsigned)ceil_div((size_t)c, THREADS), (unsigned)nchunks);
    ln_param_part_kernel<T><<<parts, THREADS>>>(pg, pb, dy, x, mean, rstd, n, c);
    LAUNCH_CHECK("%s param part (n=%d c=%d)", op, n, c);
  }
  const unsigned grid = warp_rows_grid(op, (size_t)n);
  if (P != 0 && dbranch && bd.p > 0.0f)
    bd.bits = cuda_dropout_bits_kept((size_t)n * c, bd.p, bd.key);
  if (!with_packs(P, [&](auto pk) {
        constexpr int K = decltype(pk)::value;
        if constexpr (K * pack_len<T>() <= COLS_LANE_ELEMS)
          if (fused) {
            ln_dx_cols<T, K><<<(unsigned)nchunks, THREADS>>>(dx, dbranch, pg, pb, dy, x, mean,
                                                             rstd, gamma, c, bd, (size_t)n);
            return;
          }
        ln_dx_regs<T, K><<<grid, THREADS>>>(dx, dbranch, dy, x, mean, rstd, gamma, c, bd,
                                            (size_t)n);
      }))
    ln_dx_kernel<T><<<grid, THREADS>>>(dx, dbranch, dy, x, mean, rstd, gamma, c, bd, (size_t)n);
  LAUNCH_CHECK("%s dx (n=%d c=%d)", op, n, c);
  if (params) {
    ln_param_finish_kernel<<<warp_rows_grid(op, (size_t)c), THREADS>>>(dgamma, dbeta, pg, pb,
                                                                       nchunks, c);
    LAUNCH_CHECK("%s param finish (n=%d c=%d)", op, n, c);
  }
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
  BranchDropout none = {0.0f, 1.0f, DropoutKey{0, 0, 0, 0}, NULL};
  ln_backward("layernorm_bwd", dx, NULL, dgamma, dbeta, dy, x, mean, rstd, gamma, n, c, none);
}

void cuda_residual_ln_bwd(float *dx, float *dbranch, float *dgamma, float *dbeta,
                          const float *dy, const float *sum, const float *mean,
                          const float *rstd, const float *gamma, int n, int c, float p,
                          DropoutKey key) {
  ops_check_dropout("residual_ln_bwd", p);
  BranchDropout bd = {p, p > 0.0f ? 1.0f / (1.0f - p) : 1.0f, key, NULL};
  ln_backward("residual_ln_bwd", dx, dbranch, dgamma, dbeta, dy, sum, mean, rstd, gamma, n, c, bd);
}
