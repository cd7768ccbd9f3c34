/* Embeddings and row gathers. Backward passes are scatter-adds without
 * atomics on the sums (see scatter_rows), deterministic run to run.
 * Activations (out, dout, x, gathered rows) are fp32 or bf16 (T, TD, TS;
 * activations.cu); the tables and their gradients fp32. */
#include <limits.h>

#include "ops_cuda_internal.cuh"

/* One warp per token (row of out), lanes over the H columns. */
template <class T>
static __global__ void embed_fwd_kernel(T *out, const int32_t *word_ids,
                                        const int32_t *type_ids, const float *wte,
                                        const float *wpe, const float *wtt, size_t n, int S,
                                        int H, int vocab, int ntypes, BadId *bad) {
  const size_t t = warp_row();
  if (t >= n) return;
  const int lane = threadIdx.x % 32;
  T *o = out + t * H;
  int w = word_ids[t], ty = type_ids ? type_ids[t] : 0;
  bool bad_w = w < 0 || w >= vocab, bad_ty = ty < 0 || ty >= ntypes;
  if (bad_w || bad_ty) {
    if (lane == 0) {
      if (bad_w) report_bad_id(bad, BAD_EMBED_WORD, w, vocab, (long long)t);
      else report_bad_id(bad, BAD_EMBED_TYPE, ty, ntypes, (long long)t);
    }
    for (int j = lane; j < H; j += 32) store_as(&o[j], 0.0f);
    return;
  }
  const float *we = wte + (size_t)w * H, *te = wtt + (size_t)ty * H,
              *pe = wpe + (t % (size_t)S) * H;
  for (int j = lane; j < H; j += 32) store_as(&o[j], (we[j] + te[j]) + pe[j]);
}

/* ---- scatter-add: dst[idx[t]] += src[t] for t = 0..n-1 ----
 * Tokens are cut into chunks of SCATTER_CHUNK. The hits of a row within a
 * chunk are summed in token order (the chunk's partial), then the row adds
 * its partials onto dst in chunk order: a fixed order, so every run gives
 * the same sums, and no serial chain is longer than one chunk (one row may
 * have thousands of hits: a token type, [MASK], padding). A row with one
 * hit in a chunk is read from src directly. A warp owns a row and a tile of
 * SCATTER_TILE columns, SCATTER_COLS per lane; the hits it adds are read
 * SCATTER_AHEAD at a time, all loads issued before the adds, so that the
 * wait for memory is paid once per group rather than once per hit. */
#define SCATTER_CHUNK 256
#define SCATTER_COLS 8
#define SCATTER_TILE (32 * SCATTER_COLS)
#define SCATTER_AHEAD 8
/* what a memset of 0x7f bytes writes: above any token index (n < it) */
#define NO_TOKEN 0x7f7f7f7f

/* Scratch of one scatter: first[k rows + r], the first token of row r in
 * chunk k (NO_TOKEN: none); multi[t], whether chunk-first token t has more
 * hits in its chunk; part[t c ...], then its chunk's partial. */
struct ScatterPlan {
  int *first;
  unsigned char *multi;
  float *part;
  int n, c, rows, nchunks;
};

static __global__ void scatter_first_kernel(ScatterPlan sp, const int32_t *idx, int bad_op,
                                            BadId *bad) {
  GRID_STRIDE(t, (size_t)sp.n) {
    int r = idx ? idx[t] : 0;
    if (r < 0 || r >= sp.rows) {
      if (bad_op) report_bad_id(bad, bad_op, r, sp.rows, (long long)t);
      continue;
    }
    atomicMin(&sp.first[(size_t)(t / SCATTER_CHUNK) * sp.rows + r], (int)t);
  }
}

/* acc[i] += the lane's columns of the rows at[0..m) (m <= SCATTER_AHEAD), in
 * that order; a row is src's (TS) or, where from_part, the plan's partial. */
template <class TS>
__device__ static void add_rows(float *acc, const TS *src, const float *part, const int *at,
                                const bool *from_part, int m, int c, int j0) {
  float v[SCATTER_AHEAD][SCATTER_COLS];
#pragma unroll
  for (int h = 0; h < SCATTER_AHEAD; h++)
#pragma unroll
    for (int i = 0; i < SCATTER_COLS; i++) {
      int j = j0 + 32 * i;
      size_t e = (size_t)at[h] * c + j;
      v[h][i] = h >= m || j >= c ? 0.0f : from_part[h] ? part[e] : ldf(&src[e]);
    }
#pragma unroll
  for (int h = 0; h < SCATTER_AHEAD; h++)
    if (h < m)
#pragma unroll
      for (int i = 0; i < SCATTER_COLS; i++) acc[i] += v[h][i];
}

/* The warp's token and whether it is the first of its row in its chunk. */
__device__ static bool chunk_first(const ScatterPlan &sp, const int32_t *idx, int t, int *row) {
  if (t >= sp.n) return false;
  int r = idx ? idx[t] : 0;
  if (r < 0 || r >= sp.rows) return false;
  *row = r;
  return sp.first[(size_t)(t / SCATTER_CHUNK) * sp.rows + r] == t;
}

/* One warp per chunk-first token t: its chunk's partial (when the row has
 * more hits there), and multi[t]. */
template <class TS>
static __global__ void scatter_part_kernel(ScatterPlan sp, const TS *src, const int32_t *idx) {
  const int t = (int)warp_row(), lane = threadIdx.x % 32;
  int r;
  if (!chunk_first(sp, idx, t, &r)) return;
  const int j0 = blockIdx.y * SCATTER_TILE + lane;
  const int end = min(sp.n, (t / SCATTER_CHUNK + 1) * SCATTER_CHUNK);
  float acc[SCATTER_COLS] = {0.0f};
  int at[SCATTER_AHEAD] = {t}, m = 1;
  bool from_part[SCATTER_AHEAD] = {false}, more = false;
  for (int base = t + 1; base < end; base += 32) {
    int u = base + lane;
    unsigned hits = __ballot_sync(0xffffffffu, u < end && (idx ? idx[u] : 0) == r);
    while (hits) {
      at[m++] = base + __ffs(hits) - 1;
      hits &= hits - 1;
      more = true;
      if (m == SCATTER_AHEAD) add_rows(acc, src, sp.part, at, from_part, m, sp.c, j0), m = 0;
    }
  }
  if (blockIdx.y == 0 && lane == 0) sp.multi[t] = more;
  if (!more) return;
  add_rows(acc, src, sp.part, at, from_part, m, sp.c, j0);
#pragma unroll
  for (int i = 0; i < SCATTER_COLS; i++)
    if (j0 + 32 * i < sp.c) sp.part[(size_t)t * sp.c + j0 + 32 * i] = acc[i];
}

/* One warp per row, at its first token t: dst[r] += its chunks' sums in
 * chunk order. Lane l looks at chunk k + l, so a row's chunks are found 32
 * at a time. */
template <class TD, class TS>
static __global__ void scatter_rows_kernel(TD *dst, ScatterPlan sp, const TS *src,
                                           const int32_t *idx) {
  const int t = (int)warp_row(), lane = threadIdx.x % 32;
  int r;
  if (!chunk_first(sp, idx, t, &r)) return;
  const int k0 = t / SCATTER_CHUNK;
  bool earlier = false; /* r was hit in an earlier chunk: not its first token */
  for (int k = lane; k < k0; k += 32) earlier |= sp.first[(size_t)k * sp.rows + r] != NO_TOKEN;
  if (__ballot_sync(0xffffffffu, earlier)) return;
  const int j0 = blockIdx.y * SCATTER_TILE + lane;
  float acc[SCATTER_COLS];
#pragma unroll
  for (int i = 0; i < SCATTER_COLS; i++)
    acc[i] = j0 + 32 * i < sp.c ? ldf(&dst[(size_t)r * sp.c + j0 + 32 * i]) : 0.0f;
  int at[SCATTER_AHEAD] = {0}, m = 0;
  bool from_part[SCATTER_AHEAD] = {false};
  for (int kb = k0; kb < sp.nchunks; kb += 32) {
    int u = kb + lane < sp.nchunks ? sp.first[(size_t)(kb + lane) * sp.rows + r] : NO_TOKEN;
    int multi = u != NO_TOKEN && sp.multi[u];
    unsigned present = __ballot_sync(0xffffffffu, u != NO_TOKEN);
    while (present) {
      int l = __ffs(present) - 1;
      present &= present - 1;
      at[m] = __shfl_sync(0xffffffffu, u, l), from_part[m] = __shfl_sync(0xffffffffu, multi, l);
      if (++m == SCATTER_AHEAD) add_rows(acc, src, sp.part, at, from_part, m, sp.c, j0), m = 0;
    }
  }
  add_rows(acc, src, sp.part, at, from_part, m, sp.c, j0);
#pragma unroll
  for (int i = 0; i < SCATTER_COLS; i++)
    if (j0 + 32 * i < sp.c) store_as(&dst[(size_t)r * sp.c + j0 + 32 * i], acc[i]);
}

/* The plan's scratch, 16-byte aligned parts of one buffer. */
static ScatterPlan scatter_plan(int n, int c, int rows) {
  ScatterPlan sp;
  sp.n = n, sp.c = c, sp.rows = rows;
  sp.nchunks = (int)ceil_div((size_t)n, SCATTER_CHUNK);
  size_t first = ceil_div((size_t)sp.nchunks * rows * sizeof(int), 16) * 16;
  size_t multi = ceil_div((size_t)n, 16) * 16;
  char *buf = (char *)cuda_scratch(first + multi + (size_t)n * c * sizeof(float));
  sp.first = (int *)buf, sp.multi = (unsigned char *)(buf + first);
  sp.part = (float *)(buf + first + multi);
  return sp;
}

/* Rows outside [0, rows) are skipped and, when bad_op is set, reported. */
template <class TD, class TS>
static void scatter_rows(const char *what, TD *dst, const TS *src, const int32_t *idx, int n,
                         int c, int rows, int bad_op) {
  if (n >= NO_TOKEN) die("ops: %s: %d rows to scatter are too many", what, n);
  ScatterPlan sp = scatter_plan(n, c, rows);
  CUDA_CHECK(cudaMemsetAsync(sp.first, 0x7f, (size_t)sp.nchunks * rows * sizeof(int), 0),
             "%s scatter plan (n=%d rows=%d)", what, n, rows);
  scatter_first_kernel<<<grid_for((size_t)n, THREADS), THREADS>>>(sp, idx, bad_op, cuda_bad_id());
  LAUNCH_CHECK("%s scatter first (n=%d c=%d rows=%d)", what, n, c, rows);
  dim3 grid(warp_rows_grid(what, (size_t)n), (unsigned)ceil_div((size_t)c, SCATTER_TILE));
  scatter_part_kernel<TS><<<grid, THREADS>>>(sp, src, idx);
  LAUNCH_CHECK("%s scatter partials (n=%d c=%d rows=%d)", what, n, c, rows);
  scatter_rows_kernel<TD, TS><<<grid, THREADS>>>(dst, sp, src, idx);
  LAUNCH_CHECK("%s scatter rows (n=%d c=%d rows=%d)", what, n, c, rows);
}

/* Token types take a column sum each (BERT has 2) where there are at
 * most this many: a scatter with a few rows has thousands of hits a row,
 * summed in chains; a column sum reads dout once a type, all in parallel. */
#define TYPE_SUMS_MAX 4

/* One warp per gathered row. */
template <class T>
static __global__ void gather_fwd_kernel(T *out, const T *x, const int32_t *idx, int n, int rows,
                                         int c, BadId *bad) {
  const size_t i = warp_row();
  if (i >= (size_t)n) return;
  const int lane = threadIdx.x % 32;
  T *o = out + i * c;
  int r = idx[i];
  if (r < 0 || r >= rows) {
    if (lane == 0) report_bad_id(bad, BAD_GATHER_FWD, r, rows, (long long)i);
    for (int j = lane; j < c; j += 32) store_as(&o[j], 0.0f);
    return;
  }
  const T *xr = x + (size_t)r * c;
  for (int j = lane; j < c; j += 32) o[j] = xr[j];
}

void cuda_embed_fwd(float *out, const int32_t *word_ids, const int32_t *type_ids,
                    const float *wte, const float *wpe, const float *wtt, int B, int S, int H,
                    int vocab, int ntypes) {
  if (ops_no_work("embed_fwd", B, S, H)) return;
  size_t n = (size_t)B * S;
  WRITES(out, n * H);
  by_act("embed_fwd", {out}, [&](auto t) {
    using T = decltype(t);
    embed_fwd_kernel<T><<<warp_rows_grid("embed_fwd", n), THREADS>>>(
        tp<T>(out), word_ids, type_ids, wte, wpe, wtt, n, S, H, vocab, ntypes, cuda_bad_id());
  });
  LAUNCH_CHECK("embed_fwd (B=%d S=%d H=%d vocab=%d)", B, S, H, vocab);
}

void cuda_embed_bwd(float *dwte, float *dwpe, float *dwtt, const float *dout,
                    const int32_t *word_ids, const int32_t *type_ids, int B, int S, int H,
                    int vocab, int ntypes) {
  if (ops_no_work("embed_bwd", B, S, H)) return;
  if ((size_t)B * S > INT_MAX || (size_t)S * H > INT_MAX)
    die("ops: embed_bwd: %d x %d tokens of %d are too many", B, S, H);
  int n = B * S;
  if (dwte) WRITES_FROM(dwte);
  if (dwpe) WRITES_FROM(dwpe);
  if (dwtt) WRITES_FROM(dwtt);
  by_act("embed_bwd", {dout}, [&](auto t) {
    using T = decltype(t);
    const T *d = tp<T>(dout);
    if (dwte) scatter_rows("embed_bwd wte", dwte, d, word_ids, n, H, vocab, BAD_NONE);
    /* position s of every sample: rows of the samples, S x H columns */
    if (dwpe) cuda_colsum_acc("embed_bwd wpe", dwpe, d, B, S * H, S * H, NULL, 0);
    if (dwtt && !type_ids) {
      cuda_colsum_acc("embed_bwd wtt", dwtt, d, n, H, H, NULL, 0); /* all type 0 */
    } else if (dwtt && ntypes <= TYPE_SUMS_MAX) {
      for (int t = 0; t < ntypes; t++)
        cuda_colsum_acc("embed_bwd wtt", dwtt + (size_t)t * H, d, n, H, H, type_ids, t);
    } else if (dwtt) {
      scatter_rows("embed_bwd wtt", dwtt, d, type_ids, n, H, ntypes, BAD_NONE);
    }
  });
}

void cuda_gather_fwd(float *out, const float *x, const int32_t *idx, int n, int rows, int c) {
  if (ops_no_work("gather_fwd", n, c, 1)) return;
  WRITES(out, (size_t)n * c);
  by_act("gather_fwd", {out, x}, [&](auto t) {
    using T = decltype(t);
    gather_fwd_kernel<T><<<warp_rows_grid("gather_fwd", (size_t)n), THREADS>>>(
        tp<T>(out), tp<T>(x), idx, n, rows, c, cuda_bad_id());
  });
  LAUNCH_CHECK("gather_fwd (n=%d rows=%d c=%d)", n, rows, c);
}

void cuda_gather_bwd(float *dx, const float *dout, const int32_t *idx, int n, int rows, int c) {
  if (ops_no_work("gather_bwd", n, c, 1)) return;
  WRITES(dx, (size_t)rows * c);
  by_act("gather_bwd", {dx, dout}, [&](auto t) {
    using T = decltype(t);
    scatter_rows("gather_bwd", tp<T>(dx), tp<T>(dout), idx, n, c, rows, BAD_GATHER_BWD);
  });
}
