/* Shared by the CUDA sources in kernels/: the implementations that
 * ops_cuda() puts in its table, and the pieces they share (cuBLAS handle,
 * scratch memory, launch sizes, deterministic block reductions, the report
 * of bad ids found on the device).
 *
 * Everything runs on the legacy default stream, so kernels, cuBLAS calls and
 * copies run in the order they are issued, and scratch memory used by one op
 * is free for the next op as soon as the host has issued it. */
#ifndef BERTRAIN_OPS_CUDA_INTERNAL_CUH
#define BERTRAIN_OPS_CUDA_INTERNAL_CUH

#include <stddef.h>
#include <stdint.h>

#include <cuda_bf16.h>

#include <initializer_list>

#include "cuda_check.cuh"
/* C++ templates (Random123) inside: included before the extern "C" block,
 * whose ops.h then finds it already included. */
#include "dropout_rng.h"

extern "C" {
#include "ops.h"
#include "ops_check.h"
}

/* Threads per block: elementwise and column kernels, and kernels with one
 * warp per row (rows of up to a few thousand: LayerNorm, softmax, gathers),
 * use THREADS; kernels with one block per row (the vocabulary-wide rows of
 * the cross-entropy) use ROW_THREADS. Both are multiples of 32 and fixed,
 * so every block and warp reduction has one fixed shape. */
#define THREADS 256
#define ROW_THREADS 128
/* Column sums (bias, gamma/beta) take ROW_CHUNK rows per block, then add the
 * per-chunk partials in chunk order; global sums take SUM_CHUNK elements per
 * block, then add the per-block partials in block order. */
#define ROW_CHUNK 64
#define SUM_CHUNK 4096

/* Blocks for a grid-stride loop over n elements (at least 1, capped). */
static inline unsigned grid_for(size_t n, int threads) {
  size_t b = (n + (size_t)threads - 1) / (size_t)threads;
  if (b < 1) b = 1;
  if (b > 65535) b = 65535;
  return (unsigned)b;
}

/* Grid-stride loop over i in [0, n) (size_t: tensors may pass 2^31). */
#define GRID_STRIDE(i, n)                                                   \
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);  \
       i += (size_t)gridDim.x * blockDim.x)

static inline size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

/* device.cu: every device buffer of the backend comes from dev_alloc (its
 * contents undefined) and goes back through dev_free, so the peak is known. */
void *dev_alloc(size_t bytes, const char *what);
void dev_free(void *p, const char *what);
/* A device buffer that only grows: grow_buffer returns at least bytes of it
 * (contents undefined after a growth, which first waits for the device,
 * as earlier ops may still be reading the old buffer). */
struct GrowBuffer {
  void *p;
  size_t cap;
};
void *grow_buffer(GrowBuffer *b, size_t bytes, const char *what);
/* n counters for last_to_arrive, zero between launches (each launch's last
 * block puts its counter back to zero). */
unsigned *arrival_counters(GrowBuffer *b, size_t n, const char *what);
size_t dev_size(const void *p); /* bytes of the allocation at p; 0: none */
/* bytes from p to the end of the allocation holding it; 0: none */
size_t dev_bytes_after(const void *p);
void cuda_device_info(DeviceInfo *out);
void cuda_mark(int slot);
double cuda_mark_ms(int from, int to);

/* ops_cuda.cu */
cublasHandle_t cuda_blas(void);
/* A device buffer of at least bytes, reused by every op (stream order keeps
 * uses apart); its contents are undefined. */
void *cuda_scratch(size_t bytes);

/* Bad ids seen by a kernel: the first one is kept in a small device record
 * and reported by die() at the next sync or to_host. */
enum BadIdOp { BAD_NONE = 0, BAD_EMBED_WORD, BAD_EMBED_TYPE, BAD_GATHER_FWD, BAD_GATHER_BWD,
               BAD_XENT_FWD, BAD_XENT_BWD };
struct BadId {
  int op; /* BadIdOp; 0 when nothing was seen */
  int value, limit;
  long long index;
};
BadId *cuda_bad_id(void);  /* the device record */

__device__ inline void report_bad_id(BadId *r, int op, int value, int limit, long long index) {
  if (atomicCAS(&r->op, 0, op) == 0) {
    r->value = value;
    r->limit = limit;
    r->index = index;
  }
}

/* Block-wide sum: every thread gets the same value, added in one fixed
 * order (warp butterflies, then warps in order), so it is deterministic.
 * Every thread of the block must call it. */
__device__ inline double block_sum(double v) {
  __shared__ double part[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads(); /* earlier readers of part are done */
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  double s = 0.0;
  for (unsigned w = 0; w < blockDim.x >> 5; w++) s += part[w];
  return s;
}

/* True in every thread of the block that arrives last at *arrived of the
 * expected; that block sets the counter back to 0 for the next launch. The
 * fence makes each thread's earlier writes visible to that block first,
 * which reads them with __ldcg (not through its SM's L1). Every thread of
 * the block must call it. */
__device__ inline bool last_to_arrive(unsigned *arrived, unsigned expected) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    last = atomicAdd(arrived, 1u) == expected - 1;
    if (last) *arrived = 0;
  }
  __syncthreads();
  return last;
}

/* Warp-wide sum and maximum: every lane gets the same value (each butterfly
 * step adds the same two values in every lane), so they are deterministic.
 * All 32 lanes must call them. */
__device__ inline double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/* Blocks of THREADS threads for kernels with one warp per row. */
static inline unsigned warp_rows_grid(const char *op, size_t rows) {
  size_t blocks = ceil_div(rows, THREADS / 32);
  if (blocks > 0x7fffffffu) die("ops: %s: %zu rows are too many", op, rows);
  return (unsigned)blocks;
}

/* This thread's row in a kernel with one warp per row. */
__device__ inline size_t warp_row(void) {
  return (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
}

__device__ inline float block_max(float v) {
  __shared__ float part[32];
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  float m = part[0];
  for (unsigned w = 1; w < blockDim.x >> 5; w++) m = fmaxf(m, part[w]);
  return m;
}

/* gemm.cu: row-major C[m,n] = alpha op(A) op(B) + beta C, fp32 (sgemm). */
void gemm_rm(const char *what, bool ta, bool tb, int m, int n, int k, float alpha,
             const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
/* The output of a product: fp32, or bf16 (a bf16 activation buffer). */
struct Out {
  void *p;
  bool bf16;
};
/* p as an output: its bf16 elements when it is a bf16 activation buffer. */
Out out_of(float *p);
/* The same product on bf16 inputs, fp32 accumulation, output C. */
void gemm_rm16(const char *what, bool ta, bool tb, int m, int n, int k, float alpha,
               const __nv_bfloat16 *A, int lda, const __nv_bfloat16 *B, int ldb, float beta,
               Out C, int ldc);
/* A contiguous row-major rows x cols operand p as bf16: p's own elements
 * (a bf16 activation buffer), its parameter copy, or converted now into
 * operand buffer which. */
const __nv_bfloat16 *operand16(const char *what, int which, const float *p, int rows, int cols);
/* A row-major operand of a two-level batch: matrix (b, h) at
 * p + b * sb + h * sh (elements), leading dimension ld. */
struct Mat {
  const float *p;
  int ld;
  long long sb, sh;
  /* bf16 products: the matrices already packed as bf16 by mat_bf16 (rows x
   * cols each, one after another), so that an operand of two products is
   * converted once; NULL otherwise. same16: p16 is laid out as p is (ld,
   * sb, sh): p's own bf16 elements (a bf16 activation buffer, mat_act). */
  const void *p16 = nullptr;
  int rows16 = 0, cols16 = 0;
  bool same16 = false;
};
/* X with p16 its own bf16 elements (same16) when it is in a bf16
 * activation buffer and has no packed p16 yet; X as it is otherwise. */
Mat mat_act(Mat X);
/* mat_act(X), or, for other X with bf16 products on, X with its rows x
 * cols matrices packed as bf16 into buffer which (2 or 3; 0 and 1 are the
 * products' own); X as it is without bf16 products. */
Mat mat_bf16(const char *what, int which, Mat X, int rows, int cols, int nb, int nh);
/* gemm_rm over nb x nh products (b, h) in one cuBLAS call: C(b,h) =
 * alpha op(A(b,h)) op(B(b,h)) + beta C(b,h); with bf16 products, on bf16
 * operands (mat_bf16) into C of its buffer's type. */
void gemm_rm_grid(const char *what, bool ta, bool tb, int m, int n, int k, float alpha, Mat A,
                  Mat B, float beta, Mat C, int nb, int nh);
/* lt.cu: column-major D[m, n] = op(A) op(B) + beta D + bias[m] in every
 * column (cuBLASLt's bias epilogue). A and B fp32, or bf16 (packed). */
struct LtProduct {
  const char *what;
  bool ta, tb;
  int m, n, k;
  const void *A;
  int lda;
  const void *B;
  int ldb;
  bool bf16;   /* A and B are bf16 */
  float beta;
  void *D;
  bool d16;    /* D (and C) bf16; the bias then too */
  int ldd;
  void *bias;
};
/* 1 when done; 0 when cuBLASLt has no algorithm for it (said once). */
int lt_matmul(const LtProduct *p);
/* params_bf16.cu: bf16 copies of the parameter buffers (Ops.params_at).
 * params_bf16: the copy of p[0, n) when p lies in a parameter buffer
 *   (converted now if stale), else NULL.
 * params_written: a write to [p, p + bytes) by anything but the optimizer
 *   (every op calls it, through WRITES, for each output).
 * params_bf16_for_update: for an optimizer step on the parameters at w
 *   (elements below extent): the copy to update along with them, or NULL
 *   (then stale).
 * params_forget: the allocation at p is being freed. */
void cuda_params_at(const float *w, size_t n);
const __nv_bfloat16 *params_bf16(const float *p, size_t n);
void params_written(const void *p, size_t bytes);
__nv_bfloat16 *params_bf16_for_update(const float *w, size_t extent);
void params_forget(const void *p);
/* An op's output: a parameter copy it overlaps goes stale. */
#define WRITES(p, count) params_written((p), (size_t)(count) * sizeof(float))
/* The same for an output whose extent the op does not know (embedding
 * tables): from p to the end of its allocation. */
#define WRITES_FROM(p) params_written((p), dev_bytes_after(p))
/* ops_cuda.cu: 1 while TF32 products are allowed (set_tf32). */
int cuda_tf32(void);
/* gemm.cu: Ops.set_bf16 (bf16 activation buffers from now on, and bf16
 * products), and whether it is on. */
void cuda_set_bf16(int on);
int cuda_bf16(void);
/* gemm.cu: the shared bf16 operand buffer which (0..3, see gemm.cu), of
 * at least n elements; dst[0, n) = bf16(src[0, n)). */
__nv_bfloat16 *bf16_buffer(int which, size_t n);
void cuda_to_bf16(const char *what, __nv_bfloat16 *dst, const float *src, size_t n);
/* elementwise.cu: out = bf16(dropout(x)), the dropout of dropout_fwd (p = 0:
 * the conversion alone), for a dropped tensor that is only a bf16 operand;
 * x is fp32, or bf16 when x16. */
void cuda_dropout_to_bf16(__nv_bfloat16 *out, const void *x, bool x16, size_t n, float p,
                          DropoutKey key);
/* colsum.cu: acc[j] += the sum over the rows r of x[r * ld + j], j < c,
 * of the rows whose sel[r] is want (sel NULL: every row); deterministic
 * (a fixed order, not the CPU's), one launch. */
void cuda_colsum_acc(const char *what, float *acc, const float *x, int rows, int c, int ld,
                     const int32_t *sel, int want);
void cuda_colsum_acc(const char *what, float *acc, const __nv_bfloat16 *x, int rows, int c,
                     int ld, const int32_t *sel, int want);
/* gelu_bwd (dx may be dy) with dbias += the column sums of dx, rows of c,
 * in one pass; the sums as cuda_colsum_acc's of the dx written. */
void cuda_gelu_bwd_colsum(float *dx, float *dbias, const float *dy, const float *x, int rows,
                          int c);

#define SQRT1_2 0.70710678118654752f

/* d/dx [x Phi(x)] dy = (Phi(x) + x phi(x)) dy, the exact (erf) GELU's. */
__device__ inline float gelu_grad(float dy, float x) {
  const float cdf = 0.5f * (1.0f + erff(x * SQRT1_2));
  const float pdf = 0.3989422804014327f * expf(-0.5f * x * x);
  return dy * (cdf + x * pdf);
}
/* elementwise.cu: the keep flags of the dropout of n elements (p, key as
 * dropout_fwd), a bit each: element i at bit i % 32 of word i / 32, drawn
 * by a kernel of their own at full occupancy, for kernels whose draws
 * would slow them (Philox is some 40 dependent integer operations per
 * block of four). In a buffer of its own, valid until the next call. */
uint32_t *cuda_dropout_bits(size_t n, float p, DropoutKey key);
/* The same flags, kept: a later call with the same n, p and key returns
 * them without drawing them again (a LayerNorm backward after its
 * forward). The KEPT_BITS most recently asked for are kept. */
const uint32_t *cuda_dropout_bits_kept(size_t n, float p, DropoutKey key);

__device__ inline void store_as(float *p, float v) { *p = v; }
__device__ inline void store_as(__nv_bfloat16 *p, float v) { *p = __float2bfloat16(v); }
__device__ inline float ldf(const float *p) { return *p; }
__device__ inline float ldf(const __nv_bfloat16 *p) { return __bfloat162float(*p); }

/* 16 bytes of T (4 floats or 8 bf16): loaded and stored whole, because one
 * 2- or 4-byte access per thread keeps too few bytes in flight to reach the
 * memory bandwidth. */
template <class T>
struct alignas(16) Pack {
  T v[16 / sizeof(T)];
};

__host__ __device__ inline bool aligned16(const void *p) { return (uintptr_t)p % 16 == 0; }

/* f(j, x[j]) for the elements of a row of c that this lane of the row's
 * warp owns: 16-byte packs j = 8q..8q+7 (4q..4q+3 for fp32) for lane q mod
 * 32 when the row allows (aligned, c a multiple of a pack), else j = lane
 * mod 32. Reads and writes through row_put use the same ownership, so a
 * row may be rewritten in place. */
template <class T, class F>
__device__ inline void row_each(const T *x, int c, F f) {
  const int lane = threadIdx.x % 32, N = (int)(16 / sizeof(T));
  if (c % N == 0 && aligned16(x)) {
    for (int q = lane; q < c / N; q += 32) {
      const Pack<T> p = reinterpret_cast<const Pack<T> *>(x)[q];
      for (int k = 0; k < N; k++) f(q * N + k, ldf(&p.v[k]));
    }
  } else {
    for (int j = lane; j < c; j += 32) f(j, ldf(&x[j]));
  }
}

/* Four consecutive elements, one vector access (the emulator has no int4). */
template <class T>
struct alignas(4 * sizeof(T)) Quad {
  T v[4];
};

/* keep(e) for the elements a lane walks in order, drawing each Philox
 * block (four elements) once for a run of elements in one block: a lane
 * owning 16-byte packs meets each block 2 to 4 times in a row. */
struct DropoutWalk {
  DropoutKey key;
  float p;
  uint64_t block = ~(uint64_t)0;
  philox4x32_ctr_t r;
  __device__ bool keep(uint64_t e) {
    if (e >> 2 != block) {
      block = e >> 2;
      r = dropout_block(key.seed, key.step, key.tensor, block);
    }
    return dropout_keep_in(r, e, p);
  }
};

/* keep[i] for elements e + i, i < 4, the first of them word O of its
 * Philox block: each block drawn once, its words picked by constant
 * indices (a run-time index, as DropoutWalk's, puts them in local memory). */
template <int O>
__device__ inline void quad_keeps_at(const DropoutKey &k, float p, uint64_t e, bool keep[4]) {
  const philox4x32_ctr_t r0 = dropout_block(k.seed, k.step, k.tensor, e / 4);
  const philox4x32_ctr_t r1 = O > 0 ? dropout_block(k.seed, k.step, k.tensor, e / 4 + 1) : r0;
  for (int i = 0; i < 4; i++)
    keep[i] = i + O < 4 ? dropout_keep_in(r0, (uint64_t)(i + O), p)
                        : dropout_keep_in(r1, (uint64_t)(i + O - 4), p);
}

__device__ inline void quad_keeps(const DropoutKey &k, float p, uint64_t e, bool keep[4]) {
  switch (e % 4) {
  case 0: quad_keeps_at<0>(k, p, e, keep); break;
  case 1: quad_keeps_at<1>(k, p, e, keep); break;
  case 2: quad_keeps_at<2>(k, p, e, keep); break;
  default: quad_keeps_at<3>(k, p, e, keep);
  }
}

/* keep[i] for the N elements from element rel on of cuda_dropout_bits'
 * flags (rel a multiple of N, N dividing 32: one word holds them); all
 * kept when bits is NULL (p = 0). */
template <int N>
__device__ inline void bit_keeps(const uint32_t *bits, size_t rel, bool (&keep)[N]) {
  static_assert(32 % N == 0, "flags within a word");
  const uint32_t w = bits ? bits[rel / 32] >> (rel % 32) : ~0u;
  for (int i = 0; i < N; i++) keep[i] = w >> i & 1;
}

/* f(j, a[j], b[j]): row_each over two rows (packs when both allow it and
 * their elements are the same size). */
template <class TA, class TB, class F>
__device__ inline void row_each2(const TA *a, const TB *b, int c, F f) {
  const int lane = threadIdx.x % 32, N = (int)(16 / sizeof(TA));
  if (sizeof(TA) == sizeof(TB) && c % N == 0 && aligned16(a) && aligned16(b)) {
    for (int q = lane; q < c / N; q += 32) {
      const Pack<TA> pa = reinterpret_cast<const Pack<TA> *>(a)[q];
      const Pack<TB> pb = reinterpret_cast<const Pack<TB> *>(b)[q];
      for (int k = 0; k < N; k++) f(q * N + k, ldf(&pa.v[k]), ldf(&pb.v[k]));
    }
  } else {
    for (int j = lane; j < c; j += 32) f(j, ldf(&a[j]), ldf(&b[j]));
  }
}

/* out[j] = f(j, a[j], b[j]) over a row, a pack at a time when all three
 * allow it; out may be a or b. */
template <class T, class F>
__device__ inline void row_map2(T *out, const T *a, const T *b, int c, F f) {
  const int lane = threadIdx.x % 32, N = (int)(16 / sizeof(T));
  if (c % N == 0 && aligned16(out) && aligned16(a) && aligned16(b)) {
    for (int q = lane; q < c / N; q += 32) {
      const Pack<T> pa = reinterpret_cast<const Pack<T> *>(a)[q];
      const Pack<T> pb = reinterpret_cast<const Pack<T> *>(b)[q];
      Pack<T> po;
      for (int k = 0; k < N; k++) store_as(&po.v[k], f(q * N + k, ldf(&pa.v[k]), ldf(&pb.v[k])));
      reinterpret_cast<Pack<T> *>(out)[q] = po;
    }
  } else {
    for (int j = lane; j < c; j += 32) store_as(&out[j], f(j, ldf(&a[j]), ldf(&b[j])));
  }
}

/* out[j] = g(j) for the elements of a row that this lane owns (row_each's
 * ownership for the same c and alignment); g may read the inputs at j, as
 * the element is read before it is written. */
template <class T, class G>
__device__ inline void row_put(T *out, int c, G g) {
  const int lane = threadIdx.x % 32, N = (int)(16 / sizeof(T));
  if (c % N == 0 && aligned16(out)) {
    for (int q = lane; q < c / N; q += 32) {
      Pack<T> p;
      for (int k = 0; k < N; k++) store_as(&p.v[k], g(q * N + k));
      reinterpret_cast<Pack<T> *>(out)[q] = p;
    }
  } else {
    for (int j = lane; j < c; j += 32) store_as(&out[j], g(j));
  }
}

/* activations.cu: activation buffers (Ops.alloc_act), bf16 when set_bf16
 * was on at their allocation.
 * is_act16: p lies in a bf16 activation buffer.
 * act16: p's element as bf16 (dies when p is not in a bf16 buffer).
 * act_bf16: whether an op's activation arguments (NULL ones skipped) are
 *   bf16; dies when they mix bf16 buffers and others.
 * act_zero / act_to_device / act_to_host: the memory ops on a bf16
 *   activation buffer (sizes in fp32 bytes, values converted). */
void *cuda_alloc_act(size_t bytes);
/* Frees p when it is an activation buffer (then true). */
bool act_free(void *p);
size_t cuda_act_buffers(void);
bool is_act16(const void *p);
__nv_bfloat16 *act16(const void *p);
bool act_bf16(const char *op, std::initializer_list<const void *> acts);
void act_zero(void *p, size_t bytes);
void act_to_device(void *dst, const void *src, size_t bytes);
void act_to_host(void *dst, const void *src, size_t bytes);
/* dst[0, n) = src[0, n), activations of one kind (op names them). */
void act_copy_n(const char *op, float *dst, const float *src, size_t n);

/* An activation argument as the element type T of a kernel instance. */
template <class T> T *tp(const void *p);
template <> inline float *tp<float>(const void *p) { return (float *)p; }
template <> inline __nv_bfloat16 *tp<__nv_bfloat16>(const void *p) { return act16(p); }

/* Runs f(T{}) with T the element type of op's activation arguments (bf16
 * activation buffers, or fp32). */
template <class F> void by_act(const char *op, std::initializer_list<const void *> acts, F f) {
  if (act_bf16(op, acts)) f(__nv_bfloat16{});
  else f(float{});
}

/* attention_fused.cu: attention in one kernel each way, for bf16
 * activations at the shapes it takes (attn_fused_fits: decided by the
 * arguments a forward and its backward share, so both go the same way; the
 * launches die when the others are not 16-byte aligned); arguments as
 * Ops.attn_fwd / attn_bwd. */
bool attn_fused_fits(bool bf16_acts, const float *q, const float *k, const float *v,
                     const float *probs, int ld, int S, int hd);
void attn_fused_fwd_launch(float *ctx, float *probs, const float *q, const float *k,
                           const float *v, int ld, const int32_t *mask, int B, int S, int nh,
                           int hd, float p, DropoutKey key);
void attn_fused_bwd_launch(float *dq, float *dk, float *dv, const float *dctx,
                           const float *probs, const float *q, const float *k, const float *v,
                           int ld, int B, int S, int nh, int hd, float p, DropoutKey key);

/* The ops (signatures as in ops.h). */
void cuda_linear_fwd(float *y, const float *x, const float *w, const float *b, int n, int in,
                     int out);
void cuda_linear_bwd(float *dx, float *dw, float *db, const float *dy, const float *x,
                     const float *w, int n, int in, int out, int accumulate_dx);
void cuda_embed_fwd(float *out, const int32_t *word_ids, const int32_t *type_ids,
                    const float *wte, const float *wpe, const float *wtt, int B, int S, int H,
                    int vocab, int ntypes);
void cuda_embed_bwd(float *dwte, float *dwpe, float *dwtt, const float *dout,
                    const int32_t *word_ids, const int32_t *type_ids, int B, int S, int H,
                    int vocab, int ntypes);
void cuda_gather_fwd(float *out, const float *x, const int32_t *idx, int n, int rows, int c);
void cuda_gather_bwd(float *dx, const float *dout, const int32_t *idx, int n, int rows, int c);
void cuda_layernorm_fwd(float *out, float *mean, float *rstd, const float *x,
                        const float *gamma, const float *beta, int n, int c, float eps);
void cuda_layernorm_bwd(float *dx, float *dgamma, float *dbeta, const float *dy,
                        const float *x, const float *mean, const float *rstd,
                        const float *gamma, int n, int c);
void cuda_residual_ln_fwd(float *out, float *sum, float *mean, float *rstd, const float *y,
                          const float *res, const float *gamma, const float *beta, int n, int c,
                          float eps, float p, DropoutKey key);
void cuda_residual_ln_bwd(float *dx, float *dbranch, float *dgamma, float *dbeta,
                          const float *dy, const float *sum, const float *mean,
                          const float *rstd, const float *gamma, int n, int c, float p,
                          DropoutKey key);
void cuda_add(float *out, const float *a, const float *b, size_t n);
void cuda_gelu_fwd(float *out, const float *x, size_t n);
void cuda_gelu_bwd(float *dx, float *dbias, const float *dy, const float *x, size_t n, int c);
void cuda_tanh_fwd(float *out, const float *x, size_t n);
void cuda_tanh_bwd(float *dx, const float *dy, const float *y, size_t n);
void cuda_scale(float *x, size_t n, float s);
void cuda_dropout_fwd(float *out, const float *x, size_t n, float p, DropoutKey key);
void cuda_dropout_bwd(float *dx, const float *dy, size_t n, float p, DropoutKey key);
void cuda_attn_fwd(float *ctx, float *probs, const float *q, const float *k, const float *v,
                   int ld, const int32_t *mask, int B, int S, int nh, int hd, float p,
                   DropoutKey key);
void cuda_attn_bwd(float *dq, float *dk, float *dv, const float *dctx, const float *probs,
                   const float *q, const float *k, const float *v, int ld, int B, int S, int nh,
                   int hd, float p, DropoutKey key);
void cuda_xent_fwd(float *out, const float *logits, const int32_t *labels, int n, int v, int ld);
void cuda_xent_bwd(float *dlogits, float *out, const float *logits, const int32_t *labels, int n,
                   int v, int ld, float scale);
void cuda_adamw(float *w, const float *g, float *m, float *v, const ParamRange *r, int nr,
                const OptParams *o);
void cuda_lamb(float *w, const float *g, float *m, float *v, const ParamRange *r, int nr,
               const OptParams *o);
void cuda_sumsq(float *out, const float *x, size_t n);

#endif
