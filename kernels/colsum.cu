/* Column sums: the linear layers' bias gradients (the one before a GELU
 * taken by the GELU's backward as it writes dx), the position and token
 * type embeddings' gradients. cuBLASLt's bias-gradient epilogue ran as a
 * kernel of its own after the product (at 1.5-2x the memory floor on an
 * H100) and wrote sums that a further launch added to db; this is one
 * launch that adds into the sums. Block (t, ch) sums the COLSUM_ROWS rows
 * of chunk ch for column tile t: a lane holds V consecutive columns (one
 * 16-byte load a row where the rows allow), the block's warps take every
 * W-th row and are added in warp order into part[ch, j]. The last of the
 * tile's blocks to finish then adds the chunks in chunk order, so the sums
 * are the same whichever block that is. */
#include <cuda_bf16.h>

#include "ops_cuda_internal.cuh"

#define COLSUM_ROWS 128

template <class T, int V> struct Cols {
  T v[V];
};

/* V elements of T at p: one 16-byte load when they make 16 bytes. */
template <class T, int V> __device__ inline Cols<T, V> load_cols(const T *p) {
  if constexpr (V * sizeof(T) == 16) {
    const Pack<T> k = *reinterpret_cast<const Pack<T> *>(p);
    Cols<T, V> c;
    for (int i = 0; i < V; i++) c.v[i] = k.v[i];
    return c;
  } else {
    return Cols<T, V>{{*p}};
  }
}

template <class T, int V> __device__ inline void store_cols(T *p, const Cols<T, V> &c) {
  if constexpr (V * sizeof(T) == 16) {
    Pack<T> k;
    for (int i = 0; i < V; i++) k.v[i] = c.v[i];
    *reinterpret_cast<Pack<T> *>(p) = k;
  } else {
    *p = c.v[0];
  }
}

/* The block's columns summed over its warps' rows in warp order; the sums
 * for lane l's V columns are at sums[l * V ...]. */
template <int V>
__device__ static void sum_warps(float *out, const float (&mine)[V], float (&stage)[THREADS / 32][32 * V]) {
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int k = 0; k < V; k++) stage[w][lane * V + k] = mine[k];
  __syncthreads();
  for (int e = threadIdx.x; e < 32 * V; e += THREADS) {
    float s = 0.0f;
    for (int u = 0; u < THREADS / 32; u++) s += stage[u][e];
    out[e] = s;
  }
  __syncthreads(); /* stage is free again */
}

/* What a colsum_kernel sums, row r from column j0 on: load issues the
 * row's loads (a block's rows all loaded before any is used, so that the
 * waits overlap), use gives the V values to add (and may store them). */
template <class T, int V> struct SumRows { /* the rows of x whose sel is want */
  const T *x;
  int ld;
  const int32_t *sel;
  int want;
  using In = Cols<T, V>;
  static constexpr int AHEAD = 8; /* rows loaded before the first is used */
  __device__ bool has(int r) const { return !sel || sel[r] == want; }
  __device__ In load(int r, int j0) const { return load_cols<T, V>(x + (size_t)r * ld + j0); }
  __device__ Cols<T, V> use(int, int, const In &in) const { return in; }
};

template <class T, int V> struct GeluBwdRows { /* dx = gelu'(x) dy, rows of c; sums of dx */
  T *dx;
  const T *dy, *x;
  int c;
  struct In {
    Cols<T, V> dy, x;
  };
  static constexpr int AHEAD = 4; /* two loads a row, and GELU's registers */
  __device__ bool has(int) const { return true; }
  __device__ In load(int r, int j0) const {
    const size_t e = (size_t)r * c + j0;
    return In{load_cols<T, V>(dy + e), load_cols<T, V>(x + e)};
  }
  __device__ Cols<T, V> use(int r, int j0, const In &in) const {
    Cols<T, V> out;
    for (int k = 0; k < V; k++) store_as(&out.v[k], gelu_grad(ldf(&in.dy.v[k]), ldf(&in.x.v[k])));
    store_cols<T, V>(dx + (size_t)r * c + j0, out);
    return out;
  }
};

template <class T, int V, class Rows>
static __global__ void colsum_kernel(float *acc, float *part, unsigned *arrived, Rows src,
                                     int rows, int c) {
  constexpr int W = THREADS / 32;
  __shared__ float stage[W][32 * V];
  __shared__ float sums[32 * V];
  const int lane = threadIdx.x % 32, w = threadIdx.x / 32, tile = blockIdx.x * 32 * V;
  const int j0 = tile + lane * V;
  const int r0 = blockIdx.y * COLSUM_ROWS, r1 = min(rows, r0 + COLSUM_ROWS);
  float s[V] = {};
  if (j0 < c) {
    constexpr int A = Rows::AHEAD;
    for (int r = r0 + w; r < r1; r += W * A) {
      typename Rows::In got[A] = {};
      bool on[A];
#pragma unroll
      for (int u = 0; u < A; u++) {
        on[u] = r + u * W < r1 && src.has(r + u * W);
        if (on[u]) got[u] = src.load(r + u * W, j0);
      }
#pragma unroll
      for (int u = 0; u < A; u++)
        if (on[u]) {
          const Cols<T, V> v = src.use(r + u * W, j0, got[u]);
          for (int k = 0; k < V; k++) s[k] += ldf(&v.v[k]);
        }
    }
  }
  sum_warps<V>(sums, s, stage);
  for (int e = threadIdx.x; e < 32 * V; e += THREADS)
    if (tile + e < c) part[(size_t)blockIdx.y * c + tile + e] = sums[e];
  if (!last_to_arrive(&arrived[blockIdx.x], gridDim.y)) return;
  /* the tile's chunks: warp w adds chunks w, w + W, ... in order */
  float t[V] = {};
#pragma unroll 4
  for (int ch = w; ch < (int)gridDim.y; ch += W)
    for (int k = 0; k < V; k++)
      if (j0 + k < c) t[k] += __ldcg(&part[(size_t)ch * c + j0 + k]);
  sum_warps<V>(sums, t, stage);
  for (int e = threadIdx.x; e < 32 * V; e += THREADS)
    if (tile + e < c) acc[tile + e] += sums[e];
}

template <class T, int V, class Rows>
static void colsum_launch(const char *what, float *acc, Rows src, int rows, int c) {
  const size_t tiles = ceil_div((size_t)c, 32 * V), chunks = ceil_div((size_t)rows, COLSUM_ROWS);
  if (chunks > 65535 || tiles > 65535)
    die("ops: %s: %d rows of %d are too many for the column sum", what, rows, c);
  float *part = (float *)cuda_scratch(chunks * c * sizeof(float));
  static GrowBuffer counters;
  colsum_kernel<T, V, Rows><<<dim3((unsigned)tiles, (unsigned)chunks), THREADS>>>(
      acc, part, arrival_counters(&counters, tiles, "column sums"), src, rows, c);
  LAUNCH_CHECK("%s column sums (rows=%d c=%d)", what, rows, c);
}

template <class T>
static void colsum_acc(const char *what, float *acc, const T *x, int rows, int c, int ld,
                       const int32_t *sel, int want) {
  if (rows <= 0 || c <= 0) return;
  constexpr int V = (int)(16 / sizeof(T));
  /* a lane's V columns may pass c, not ld: the rows' stride is allocated */
  if (aligned16(x) && ld % V == 0)
    colsum_launch<T, V>(what, acc, SumRows<T, V>{x, ld, sel, want}, rows, c);
  else
    colsum_launch<T, 1>(what, acc, SumRows<T, 1>{x, ld, sel, want}, rows, c);
}

void cuda_colsum_acc(const char *what, float *acc, const float *x, int rows, int c, int ld,
                     const int32_t *sel, int want) {
  colsum_acc(what, acc, x, rows, c, ld, sel, want);
}

void cuda_colsum_acc(const char *what, float *acc, const __nv_bfloat16 *x, int rows, int c,
                     int ld, const int32_t *sel, int want) {
  colsum_acc(what, acc, x, rows, c, ld, sel, want);
}

void cuda_gelu_bwd_colsum(float *dx, float *dbias, const float *dy, const float *x, int rows,
                          int c) {
  if (rows <= 0 || c <= 0) return;
  by_act("gelu_bwd", {dx, dy, x}, [&](auto t) {
    using T = decltype(t);
    constexpr int V = (int)(16 / sizeof(T));
    T *d = tp<T>(dx);
    const T *g = tp<T>(dy), *v = tp<T>(x);
    /* whole packs only: a lane's stores must stay in its row */
    if (aligned16(d) && aligned16(g) && aligned16(v) && c % V == 0)
      colsum_launch<T, V>("gelu_bwd", dbias, GeluBwdRows<T, V>{d, g, v, c}, rows, c);
    else
      colsum_launch<T, 1>("gelu_bwd", dbias, GeluBwdRows<T, 1>{d, g, v, c}, rows, c);
  });
}
