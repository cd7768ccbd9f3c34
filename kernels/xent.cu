/* Softmax cross-entropy over rows of logits [n, v] with row stride ld. One
 * block per row (fixed-shape reductions, sums in double as on the CPU); the
 * mean loss is a second pass over the per-row losses in a fixed order. */
#include <math.h>

#include "ops_cuda_internal.cuh"

/* Running maximum m (first index arg) and s = sum of exp(x - m) in
 * double, over some of a row's elements; two merge into one (online
 * softmax), so the row is read once, not once for the maximum and once
 * for the sum. A thread adds its own elements with lse_add (a float exp
 * each: a double exp per element made the pass compute-bound), and the
 * threads' sums merge with lse_merge. */
struct RowLse {
  float m;
  int arg; /* 0x7fffffff: no element yet */
  double s;
};

/* The larger maximum wins (on a tie the smaller index: the first argmax),
 * the other sum rescaled to it. */
__device__ static inline RowLse lse_merge(RowLse a, RowLse b) {
  if (b.arg == 0x7fffffff) return a;
  if (a.arg == 0x7fffffff) return b;
  bool b_wins = b.m > a.m || (b.m == a.m && b.arg < a.arg);
  RowLse hi = b_wins ? b : a, lo = b_wins ? a : b;
  hi.s += lo.s * exp((double)lo.m - hi.m);
  return hi;
}

/* x, the element at index j, added after the elements before j. */
__device__ static inline void lse_add(RowLse &r, float x, int j) {
  if (r.arg == 0x7fffffff || x > r.m) { /* a new maximum: rescale the sum (rarely) */
    r.s = (r.arg == 0x7fffffff ? 0.0 : r.s * exp((double)r.m - x)) + 1.0;
    r.m = x, r.arg = j;
  } else {
    r.s += expf(x - r.m);
  }
}

/* The elements of a row of v that this thread of the row's block owns: up
 * to the first 16-byte boundary and after the last one, one at a time;
 * between them, 16-byte packs (a row stride that is not a multiple of 16
 * bytes starts rows anywhere). For each, f(j) with j the element's index,
 * or for a pack, f for each. */
template <class T>
__device__ static int row_head(const T *x, int v) {
  int head = (int)(((16 - (uintptr_t)x % 16) % 16) / sizeof(T));
  return head < v ? head : v;
}

/* f(j, x[j]) for this thread's elements of the row x. */
template <class T, class F>
__device__ static void block_row_each(const T *x, int v, F f) {
  const int N = (int)(16 / sizeof(T)), head = row_head(x, v), packs = (v - head) / N;
  for (int j = threadIdx.x; j < head; j += blockDim.x) f(j, ldf(&x[j]));
  const Pack<T> *p = reinterpret_cast<const Pack<T> *>(x + head);
  for (int q = threadIdx.x; q < packs; q += blockDim.x) {
    const Pack<T> pk = p[q];
    for (int k = 0; k < N; k++) f(head + q * N + k, ldf(&pk.v[k]));
  }
  for (int j = head + packs * N + threadIdx.x; j < v; j += blockDim.x) f(j, ldf(&x[j]));
}

/* d[j] = g(j) for this thread's elements of the row d (block_row_each's
 * ownership for d's alignment; g may read the inputs at j). */
template <class T, class G>
__device__ static void block_row_put(T *d, int v, G g) {
  const int N = (int)(16 / sizeof(T)), head = row_head(d, v), packs = (v - head) / N;
  for (int j = threadIdx.x; j < head; j += blockDim.x) store_as(&d[j], g(j));
  Pack<T> *p = reinterpret_cast<Pack<T> *>(d + head);
  for (int q = threadIdx.x; q < packs; q += blockDim.x) {
    Pack<T> pk;
    for (int k = 0; k < N; k++) store_as(&pk.v[k], g(head + q * N + k));
    p[q] = pk;
  }
  for (int j = head + packs * N + threadIdx.x; j < v; j += blockDim.x) store_as(&d[j], g(j));
}

/* Row maximum with its first index, and log of the sum of exp(x - max),
 * for the whole block (every thread gets the same values). */
template <class T>
__device__ static void row_max_lse(const T *x, int v, float *mx_out, int *arg_out,
                                   double *log_sum) {
  __shared__ RowLse part[32];
  RowLse r = {-INFINITY, 0x7fffffff, 0.0};
  block_row_each(x, v, [&](int j, float xj) { lse_add(r, xj, j); });
  for (int o = 16; o > 0; o >>= 1) {
    RowLse other = {__shfl_xor_sync(0xffffffffu, r.m, o), __shfl_xor_sync(0xffffffffu, r.arg, o),
                    __shfl_xor_sync(0xffffffffu, r.s, o)};
    /* the same pair merged in the same order in both lanes */
    r = (threadIdx.x & o) ? lse_merge(other, r) : lse_merge(r, other);
  }
  __syncthreads(); /* earlier readers of part are done */
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = r;
  __syncthreads();
  r = part[0];
  for (unsigned w = 1; w < blockDim.x >> 5; w++) r = lse_merge(r, part[w]);
  *mx_out = r.m;
  *arg_out = r.arg;
  *log_sum = log(r.s);
}

/* Row i's loss and whether its first argmax is the label (xl: the label's
 * logit). */
__device__ static void put_row_loss(double *loss, int *hit, size_t i, float mx, int arg, double ls,
                                    float xl, int label) {
  loss[i] = (double)mx + ls - xl;
  hit[i] = arg == label;
}

template <class T>
static __global__ void xent_rows_kernel(double *loss, int *hit, const T *logits,
                                        const int32_t *labels, int v, int ld, BadId *bad) {
  size_t i = blockIdx.x;
  int label = labels[i];
  if (label < 0 || label >= v) { /* the same for the whole block */
    if (label >= v && threadIdx.x == 0) report_bad_id(bad, BAD_XENT_FWD, label, v, (long long)i);
    if (threadIdx.x == 0) loss[i] = 0.0, hit[i] = 0;
    return;
  }
  const T *x = logits + i * ld;
  float mx;
  int arg;
  double ls;
  row_max_lse(x, v, &mx, &arg, &ls);
  if (threadIdx.x == 0) put_row_loss(loss, hit, i, mx, arg, ls, ldf(&x[label]), label);
}

/* One block: out = { mean loss over counted rows, correct, counted }. */
static __global__ void xent_total_kernel(float *out, const double *loss, const int *hit,
                                         const int32_t *labels, int n) {
  double total = 0.0, correct = 0.0, count = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    total += loss[i];
    correct += hit[i];
    count += labels[i] >= 0;
  }
  total = block_sum(total);
  correct = block_sum(correct);
  count = block_sum(count);
  if (threadIdx.x == 0) {
    out[0] = count > 0.0 ? (float)(total / count) : 0.0f;
    out[1] = (float)correct;
    out[2] = (float)count;
  }
}

/* Every thread reads the row for the reductions before writing only its own
 * elements, so dlogits may be logits. The columns from v to ld are written
 * zero. With loss (not NULL), also the row's loss and hit, as
 * xent_rows_kernel. */
template <class T>
static __global__ void xent_bwd_kernel(T *dlogits, double *loss, int *hit, const T *logits,
                                       const int32_t *labels, int v, int ld, float scale,
                                       BadId *bad) {
  size_t i = blockIdx.x;
  int label = labels[i];
  const T *x = logits + i * ld;
  T *d = dlogits + i * ld;
  if (label < 0 || label >= v) {
    if (label >= v && threadIdx.x == 0) report_bad_id(bad, BAD_XENT_BWD, label, v, (long long)i);
    if (loss && threadIdx.x == 0) loss[i] = 0.0, hit[i] = 0;
    block_row_put(d, ld, [](int) { return 0.0f; });
    return;
  }
  /* read before row_max_lse's barriers, after which the row may be overwritten */
  const float xl = threadIdx.x == 0 ? ldf(&x[label]) : 0.0f;
  float mx;
  int arg;
  double ls;
  row_max_lse(x, v, &mx, &arg, &ls);
  if (loss && threadIdx.x == 0) put_row_loss(loss, hit, i, mx, arg, ls, xl, label);
  const float lse = (float)(mx + ls); /* exp(x - lse) in float: ~1e-6 relative */
  block_row_put(d, ld, [&](int j) {
    if (j >= v) return 0.0f;
    float g = scale * expf(ldf(&x[j]) - lse);
    return j == label ? g - scale : g;
  });
}

/* Per-row losses and hits in the scratch, for xent_total_kernel. */
static double *row_losses(int n, int **hit) {
  double *loss = (double *)cuda_scratch((size_t)n * (sizeof(double) + sizeof(int)));
  *hit = (int *)(loss + n);
  return loss;
}

static void xent_total(const char *what, float *out, const double *loss, const int *hit,
                       const int32_t *labels, int n, int v) {
  xent_total_kernel<<<1, THREADS>>>(out, loss, hit, labels, n);
  LAUNCH_CHECK("%s total (n=%d v=%d)", what, n, v);
}

void cuda_xent_fwd(float *out, const float *logits, const int32_t *labels, int n, int v, int ld) {
  ops_check_xent("xent_fwd", n, v, ld);
  WRITES(out, 3);
  int *hit;
  double *loss = row_losses(n, &hit);
  by_act("xent_fwd", {logits}, [&](auto t) {
    using T = decltype(t);
    xent_rows_kernel<T><<<(unsigned)n, ROW_THREADS>>>(loss, hit, tp<T>(logits), labels, v,
                                                      ld, cuda_bad_id());
  });
  LAUNCH_CHECK("xent_fwd rows (n=%d v=%d)", n, v);
  xent_total("xent_fwd", out, loss, hit, labels, n, v);
}

void cuda_xent_bwd(float *dlogits, float *out, const float *logits, const int32_t *labels, int n,
                   int v, int ld, float scale) {
  ops_check_xent("xent_bwd", n, v, ld);
  WRITES(dlogits, (size_t)n * ld);
  if (out) WRITES(out, 3);
  int *hit = NULL;
  double *loss = out ? row_losses(n, &hit) : NULL;
  by_act("xent_bwd", {dlogits, logits}, [&](auto t) {
    using T = decltype(t);
    xent_bwd_kernel<T><<<(unsigned)n, ROW_THREADS>>>(tp<T>(dlogits), loss, hit, tp<T>(logits),
                                                     labels, v, ld, scale, cuda_bad_id());
  });
  LAUNCH_CHECK("xent_bwd (n=%d v=%d)", n, v);
  if (out) xent_total("xent_bwd", out, loss, hit, labels, n, v);
}
