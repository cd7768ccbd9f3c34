/* Embeddings and row gathers. Backward passes are scatter-adds: to add in
 * row order without atomics, every output element is owned by one thread,
 * which walks all source rows in order and adds those that land on it.
 * Threads are (column j, slice s): slice s owns the destination rows r with
 * r % SCATTER_SLICES == s, so a warp (one slice, 32 columns) shares every
 * branch and the adds are coalesced. Many slices give many blocks, and
 * few rows per slice, so that a slice's hits are mostly runs on one row.
 * Activations (out, dout, x, gathered rows) are fp32 or bf16 (T, TD, TS;
 * activations.cu); the tables and their gradients fp32. */
#include <limits.h>

#include "ops_cuda_internal.cuh"

#define SCATTER_SLICES 128u

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

/* dst[idx[t]] += src[t] for t = 0..n-1 in order (idx NULL: all row 0).
 * Rows outside [0, rows) are skipped and, when bad_op is set, reported.
 * A run of hits on one row (frequent ids such as [MASK], or a two-row type
 * table) adds in a register and is stored once: the same adds in the same
 * order as adding into dst each time, without a memory round trip each. */
template <class TD, class TS>
static __global__ void scatter_rows_kernel(TD *dst, const TS *src, const int32_t *idx, int n,
                                           int c, int rows, int bad_op, BadId *bad) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  unsigned slice = blockIdx.y;
  if (j >= c) return;
  int cur = -1;
  float acc = 0.0f;
  for (int t = 0; t < n; t++) {
    int r = idx ? idx[t] : 0;
    if (r < 0 || r >= rows) {
      if (bad_op && slice == 0 && j == 0) report_bad_id(bad, bad_op, r, rows, t);
      continue;
    }
    if ((unsigned)r % SCATTER_SLICES != slice) continue;
    if (r != cur) {
      if (cur >= 0) store_as(&dst[(size_t)cur * c + j], acc);
      cur = r;
      acc = ldf(&dst[(size_t)r * c + j]);
    }
    acc += ldf(&src[(size_t)t * c + j]);
  }
  if (cur >= 0) store_as(&dst[(size_t)cur * c + j], acc);
}

template <class TD, class TS>
static void scatter_rows(const char *what, TD *dst, const TS *src, const int32_t *idx, int n,
                         int c, int rows, int bad_op) {
  dim3 grid((unsigned)ceil_div((size_t)c, THREADS), SCATTER_SLICES);
  scatter_rows_kernel<TD, TS><<<grid, THREADS>>>(dst, src, idx, n, c, rows, bad_op, cuda_bad_id());
  LAUNCH_CHECK("%s scatter (n=%d c=%d rows=%d)", what, n, c, rows);
}

/* dwpe[s] += dout[b, s] for b in order: position s of every sample. */
template <class T>
static __global__ void embed_pos_bwd_kernel(float *dwpe, const T *dout, int B, int S, int H) {
  GRID_STRIDE(i, (size_t)S * H) {
    size_t s = i / (size_t)H, j = i % (size_t)H;
    float acc = dwpe[i];
    for (int b = 0; b < B; b++) acc += ldf(&dout[((size_t)b * S + s) * H + j]);
    dwpe[i] = acc;
  }
}

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

/* The word and type tables' row counts are not passed: ids were checked by
 * embed_fwd; negative ones are skipped here. */
void cuda_embed_bwd(float *dwte, float *dwpe, float *dwtt, const float *dout,
                    const int32_t *word_ids, const int32_t *type_ids, int B, int S, int H) {
  if (ops_no_work("embed_bwd", B, S, H)) return;
  if ((size_t)B * S > INT_MAX) die("ops: embed_bwd: %d x %d tokens are too many", B, S);
  int n = B * S;
  if (dwte) WRITES_FROM(dwte);
  if (dwpe) WRITES_FROM(dwpe);
  if (dwtt) WRITES_FROM(dwtt);
  by_act("embed_bwd", {dout}, [&](auto t) {
    using T = decltype(t);
    const T *d = tp<T>(dout);
    if (dwte) scatter_rows("embed_bwd wte", dwte, d, word_ids, n, H, INT_MAX, BAD_NONE);
    if (dwpe) {
      embed_pos_bwd_kernel<T><<<grid_for((size_t)S * H, THREADS), THREADS>>>(dwpe, d, B, S, H);
      LAUNCH_CHECK("embed_bwd wpe (B=%d S=%d H=%d)", B, S, H);
    }
    if (dwtt) scatter_rows("embed_bwd wtt", dwtt, d, type_ids, n, H, INT_MAX, BAD_NONE);
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
