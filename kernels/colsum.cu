/* Column sums: the linear layers' bias gradients, the position and token
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
#define COLSUM_UNROLL 8

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

template <class T, int V>
static __global__ void colsum_kernel(float *acc, float *part, unsigned *arrived, const T *x,
                                     int rows, int c, int ld, const int32_t *sel, int want) {
  constexpr int W = THREADS / 32;
  __shared__ float stage[W][32 * V];
  __shared__ float sums[32 * V];
  const int lane = threadIdx.x % 32, w = threadIdx.x / 32, tile = blockIdx.x * 32 * V;
  const int j0 = tile + lane * V;
  const int r0 = blockIdx.y * COLSUM_ROWS, r1 = min(rows, r0 + COLSUM_ROWS);
  float s[V] = {};
  if (j0 < c) {
    for (int r = r0 + w; r < r1; r += W * COLSUM_UNROLL) {
      Cols<T, V> got[COLSUM_UNROLL] = {};
#pragma unroll
      for (int u = 0; u < COLSUM_UNROLL; u++)
        if (r + u * W < r1 && (!sel || sel[r + u * W] == want))
          got[u] = load_cols<T, V>(x + (size_t)(r + u * W) * ld + j0);
#pragma unroll
      for (int u = 0; u < COLSUM_UNROLL; u++)
        if (r + u * W < r1) /* rows not selected hold zeros */
          for (int k = 0; k < V; k++) s[k] += ldf(&got[u].v[k]);
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

template <class T, int V>
static void colsum_launch(const char *what, float *acc, const T *x, int rows, int c, int ld,
                          const int32_t *sel, int want) {
  const size_t tiles = ceil_div((size_t)c, 32 * V), chunks = ceil_div((size_t)rows, COLSUM_ROWS);
  if (chunks > 65535 || tiles > 65535)
    die("ops: %s: %d rows of %d are too many for the column sum", what, rows, c);
  float *part = (float *)cuda_scratch(chunks * c * sizeof(float));
  static GrowBuffer counters;
  colsum_kernel<T, V><<<dim3((unsigned)tiles, (unsigned)chunks), THREADS>>>(
      acc, part, arrival_counters(&counters, tiles, "column sums"), x, rows, c, ld, sel, want);
  LAUNCH_CHECK("%s column sums (rows=%d c=%d ld=%d)", what, rows, c, ld);
}

template <class T>
static void colsum_acc(const char *what, float *acc, const T *x, int rows, int c, int ld,
                       const int32_t *sel, int want) {
  if (rows <= 0 || c <= 0) return;
  constexpr int V = (int)(16 / sizeof(T));
  if (aligned16(x) && ld % V == 0) colsum_launch<T, V>(what, acc, x, rows, c, ld, sel, want);
  else colsum_launch<T, 1>(what, acc, x, rows, c, ld, sel, want);
}

void cuda_colsum_acc(const char *what, float *acc, const float *x, int rows, int c, int ld,
                     const int32_t *sel, int want) {
  colsum_acc(what, acc, x, rows, c, ld, sel, want);
}

void cuda_colsum_acc(const char *what, float *acc, const __nv_bfloat16 *x, int rows, int c,
                     int ld, const int32_t *sel, int want) {
  colsum_acc(what, acc, x, rows, c, ld, sel, want);
}
