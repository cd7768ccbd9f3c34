/* Self-attention in one kernel each way, for bf16 activations at the shapes
 * of training (S 64 or 128, head_dim 32 or 64): a block
 * holds one (sample, head)'s K and V (and, backward, Q and dC) in shared
 * memory, and the score matrices never leave the chip but for the saved
 * probabilities. The products run on the tensor cores (wmma: bf16 in, fp32
 * accumulated); the softmax, the mask and the dropout work on the scores as
 * the products leave them, a warp (backward: two) per 16 query rows.
 *
 * Same arithmetic as attention.cu's path but for roundings: the scores and
 * dP stay fp32 between the products (that path rounds them to bf16), and
 * the dropped probabilities and dS are bf16 operands as there. The dropout
 * masks are the same (element index: the flat index into probs [B, nh, S,
 * S]). Other shapes, fp32 and tf32 take attention.cu's path.
 *
 * The Philox draws of the mask were about half of the forward's
 * instructions and a third of the backward's, in kernels that run at a
 * quarter of an SM's warps. So a kernel of its own draws them at full
 * occupancy, a bit per element (cuda_dropout_bits), for the forward, and
 * the forward marks each dropped element of probs by its sign bit (a
 * probability is never negative), which the backward reads with P. Only
 * this backward reads the marks, and attn_fused_fits sends a forward and
 * its backward the same way (ops.h: attn_bwd takes the probs of its own
 * backend's attn_fwd). */
#include <mma.h>
#include <type_traits>
#include <stdlib.h>
#include <string.h>

#include "ops_cuda_internal.cuh"

using namespace nvcuda;

typedef __nv_bfloat16 bf16;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> Acc;

#define FUSED_MAX_S 128
#define OUT_LD 20 /* fp32 row stride of the output stage: a tile at a time */
#define SIGN16 0x8000u /* a bf16's sign bit: marks a dropped probability */

/* Row strides in shared memory, padded by 16 bytes so that a warp's tile
 * loads fall on different banks, and keeping every 16-row tile 32-byte
 * aligned, as wmma requires. */
static __host__ __device__ constexpr int head_ld(int hd) { return hd + 8; }   /* bf16 */
static __host__ __device__ constexpr int stage_ld(int S) { return S + 4; }    /* fp32 */
/* bf16 rows over fp32 stage rows: the same bytes per row, so a row can be
 * rewritten in place by the lanes that read it. The backward's rows hold
 * dS, then the dropped P. */
static __host__ __device__ constexpr int over_ld(int S) { return 2 * S + 8; } /* bf16 */

/* What the kernels read and write, as bf16 activation elements. */
struct AttnArgs {
  const bf16 *q, *k, *v; /* row stride ld, head h at column h * hd */
  bf16 *ctx;             /* [B, S, nh * hd] */
  bf16 *probs;           /* [B, nh, S, S] */
  const int32_t *mask;   /* [B, S] or NULL */
  const uint32_t *keep_bits; /* forward: the dropout's keep flags (cuda_dropout_bits), or
                                NULL: p = 0 */
  const bf16 *dctx;      /* backward: [B, S, nh * hd] */
  bf16 *dq, *dk, *dv;    /* backward: as q, k, v */
  int ld, nh;
  float scale, p, keep_scale;
  DropoutKey key;
};

template <class L> using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, L>;
template <class L> using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, L>;

/* acc[t] = the sum of A_kk B_kk,t over kk < NK, for t < NT: A_kk the 16 x 16 tile at a +
 * kk * a_step, B_kk,t the tile at b + kk * b_step + t * b_tile, in the
 * layouts LA and LB (col_major: the transpose of what is stored). The
 * bounds are constants, so the loads of a step are issued together. */
template <class LA, class LB, int NT, int NK>
__device__ inline void tile_product(Acc (&acc)[NT], const bf16 *a, int lda, int a_step,
                                    const bf16 *b, int ldb, int b_step, int b_tile) {
#pragma unroll
  for (int t = 0; t < NT; t++) wmma::fill_fragment(acc[t], 0.0f);
#pragma unroll
  for (int kk = 0; kk < NK; kk++) {
    FragA<LA> fa;
    wmma::load_matrix_sync(fa, a + kk * a_step, lda);
#pragma unroll
    for (int t = 0; t < NT; t++) {
      FragB<LB> fb;
      wmma::load_matrix_sync(fb, b + kk * b_step + t * b_tile, ldb);
      wmma::mma_sync(acc[t], fa, fb, acc[t]);
    }
  }
}

/* The warp's NT tiles into an fp32 stage, side by side, row stride ld. */
template <int NT>
__device__ inline void stage_tiles(float *stage, int ld, Acc (&acc)[NT]) {
#pragma unroll
  for (int t = 0; t < NT; t++)
    wmma::store_matrix_sync(stage + t * 16, acc[t], ld, wmma::mem_row_major);
  __syncwarp(); /* lanes read elements other lanes stored */
}

/* Rows [0, n) of HD bf16 elements of M matrices, src[m] (row stride
 * ld[m]) into dst[m] (row stride ldd), by the whole block, 16 bytes a
 * thread: each thread issues its loads of all M in batches of 4 before it
 * stores any, so that they are in flight together. */
template <int HD, int M>
__device__ inline void load_rows(bf16 *const (&dst)[M], int ldd, const bf16 *const (&src)[M],
                                 const size_t (&ld)[M], int n) {
  const int per_row = HD / 8, total = n * per_row, step = blockDim.x;
  for (int u0 = threadIdx.x; u0 < total; u0 += 4 * step) {
    /* f(m, i, row, column) for this thread's packs of the batch */
    auto each = [&](auto f) {
#pragma unroll
      for (int m = 0; m < M; m++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
          const int u = u0 + i * step;
          if (u < total) f(m, i, u / per_row, u % per_row * 8);
        }
    };
    Pack<bf16> v[M][4];
    each([&](int m, int i, int r, int c) {
      v[m][i] = *reinterpret_cast<const Pack<bf16> *>(src[m] + r * ld[m] + c);
    });
    each([&](int m, int i, int r, int c) {
      *reinterpret_cast<Pack<bf16> *>(dst[m] + r * ldd + c) = v[m][i];
    });
  }
}

/* The warp's NT 16 x 16 result tiles (side by side), times scale, to bf16
 * rows at out (row stride ld), a tile at a time through stage (16 x
 * OUT_LD floats). */
template <int NT>
__device__ inline void write_tiles(bf16 *out, size_t ld, Acc (&acc)[NT], float *stage,
                                   float scale) {
  const int lane = threadIdx.x % 32, r = lane / 2, c = lane % 2 * 8;
#pragma unroll
  for (int t = 0; t < NT; t++) {
    wmma::store_matrix_sync(stage, acc[t], OUT_LD, wmma::mem_row_major);
    __syncwarp();
    Pack<bf16> pk;
    for (int i = 0; i < 8; i++) store_as(&pk.v[i], stage[r * OUT_LD + c + i] * scale);
    *reinterpret_cast<Pack<bf16> *>(out + r * ld + 16 * t + c) = pk;
    __syncwarp(); /* the stage is reused next */
  }
}

/* The 8 fp32 values at p (16-byte aligned). */
__device__ inline void load8(const float *p, float v[8]) {
  const Pack<float> a = reinterpret_cast<const Pack<float> *>(p)[0];
  const Pack<float> b = reinterpret_cast<const Pack<float> *>(p)[1];
  for (int i = 0; i < 4; i++) v[i] = a.v[i], v[4 + i] = b.v[i];
}

/* One row's keep flags (cuda_dropout_bits), a 16-byte or 8-byte load. */
template <int S> struct alignas(S / 8) RowBits {
  uint32_t w[S / 32];
};

/* The forward's softmax of the warp's 16 score rows, staged (fp32) at
 * stage: probabilities to probs (row stride S) from row prow on, the
 * dropped ones marked, and their dropout, as bf16, over the stage (row
 * stride over_ld). Lane l takes row
 * l / 2 and, in it, octets (8 elements) l % 2, l % 2 + 2, ... */
template <int S>
__device__ inline void staged_softmax(const AttnArgs &a, float *stage, const float *negs,
                                    size_t prow) {
  constexpr int NO = S / 16; /* octets per lane */
  const int lane = threadIdx.x % 32, r = lane / 2;
  float x[NO][8];
  float mx = -INFINITY;
#pragma unroll
  for (int k = 0; k < NO; k++) {
    const int c = 8 * (lane % 2 + 2 * k);
    load8(stage + r * stage_ld(S) + c, x[k]);
    for (int i = 0; i < 8; i++) {
      x[k][i] = x[k][i] * a.scale + negs[c + i];
      mx = fmaxf(mx, x[k][i]);
    }
  }
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
  float sum = 0.0f;
#pragma unroll
  for (int k = 0; k < NO; k++)
    for (int i = 0; i < 8; i++) sum += x[k][i] = expf(x[k][i] - mx);
  sum += __shfl_xor_sync(0xffffffffu, sum, 1); /* the same sum in both lanes */
  const float inv = 1.0f / sum;
  __syncwarp(); /* the row's lanes (this warp's) have read it before it is rewritten */
  bf16 *Pw = reinterpret_cast<bf16 *>(stage);
  const size_t e0 = (prow + r) * S; /* element of probs */
  RowBits<S> rb;
  if (a.keep_bits) rb = reinterpret_cast<const RowBits<S> *>(a.keep_bits)[prow + r];
#pragma unroll
  for (int k = 0; k < NO; k++) {
    const int c = 8 * (lane % 2 + 2 * k);
    /* the octet's flags: byte c / 8 of the row's bits */
    const unsigned keep = a.keep_bits ? rb.w[k / 2] >> (8 * (2 * (k % 2) + lane % 2)) : 0xffu;
    Pack<bf16> pr, pd;
    for (int i = 0; i < 8; i++) {
      const bool kept = keep >> i & 1;
      store_as(&pr.v[i], x[k][i] * inv);
      /* dropped from the stored (rounded) probability, as the backward */
      store_as(&pd.v[i], kept ? ldf(&pr.v[i]) * a.keep_scale : 0.0f);
      if (!kept) pr.v[i] = __ushort_as_bfloat16(__bfloat16_as_ushort(pr.v[i]) | SIGN16);
    }
    *reinterpret_cast<Pack<bf16> *>(a.probs + e0 + c) = pr;
    *reinterpret_cast<Pack<bf16> *>(Pw + r * over_ld(S) + c) = pd;
  }
  __syncwarp();
}

/* Forward: block (head, sample), warp w takes query rows 16w.. Shared
 * memory: K, V, the mask's additions, and per warp an fp32 stage (the
 * scores, then the dropped probabilities over them as bf16, then the
 * output a tile at a time). Q's tiles come straight from global memory (each is read
 * once), issued before the block waits for K and V. */
template <int S, int HD>
static __global__ void __launch_bounds__(S * 2, 2) attn_fused_fwd(AttnArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  constexpr int LH = head_ld(HD), LS = stage_ld(S), NT = S / 16, NK = HD / 16;
  const int h = blockIdx.x, b = blockIdx.y, w = threadIdx.x / 32, r0 = w * 16;
  bf16 *Ks = reinterpret_cast<bf16 *>(smem), *Vs = Ks + S * LH;
  float *stage = reinterpret_cast<float *>(Vs + S * LH) + w * 16 * LS;
  float *negs = reinterpret_cast<float *>(Vs + S * LH) + S * LS;
  const size_t tok0 = (size_t)b * S, col = (size_t)h * HD, ld = a.ld;
  FragA<wmma::row_major> qa[NK];
#pragma unroll
  for (int kk = 0; kk < NK; kk++)
    wmma::load_matrix_sync(qa[kk], a.q + (tok0 + r0) * ld + col + 16 * kk, a.ld);
  load_rows<HD, 2>({Ks, Vs}, LH, {a.k + tok0 * ld + col, a.v + tok0 * ld + col}, {ld, ld}, S);
  for (int j = threadIdx.x; j < S; j += blockDim.x)
    negs[j] = a.mask && a.mask[tok0 + j] == 0 ? ATTN_MASK_NEG : 0.0f;
  __syncthreads();
  Acc acc[NT];
#pragma unroll
  for (int t = 0; t < NT; t++) wmma::fill_fragment(acc[t], 0.0f);
#pragma unroll
  for (int kk = 0; kk < NK; kk++)
#pragma unroll
    for (int t = 0; t < NT; t++) {
      FragB<wmma::col_major> fb; /* K^T */
      wmma::load_matrix_sync(fb, Ks + t * 16 * LH + 16 * kk, LH);
      wmma::mma_sync(acc[t], qa[kk], fb, acc[t]);
    }
  stage_tiles(stage, LS, acc);
  staged_softmax<S>(a, stage, negs, ((size_t)b * a.nh + h) * S + r0);
  Acc out[NK];
  tile_product<wmma::row_major, wmma::row_major, NK, NT>(
      out, reinterpret_cast<const bf16 *>(stage), over_ld(S), 16, Vs, LH, 16 * LH, 16);
  __syncwarp(); /* the dropped probabilities are read before the stage is reused */
  const size_t H = (size_t)a.nh * HD;
  write_tiles(a.ctx + (tok0 + r0) * H + col, H, out, stage, 1.0f);
}

/* The backward's dS and dropped P of a row tile's 16 rows from dPd,
 * staged (fp32) at stage, written over it (bf16, row stride over_ld: dS,
 * then dropped P). The tile's two warps share it: lane L = 32 (warp % 2) +
 * lane takes row L / 4 and, in it, octets L % 4, L % 4 + 4, ...; pq: those
 * octets of P, as loaded (the dropped ones marked). */
template <int S>
__device__ inline void staged_softmax_grad(const AttnArgs &a, float *stage,
                                         const Pack<bf16> (&pq)[S / 32]) {
  constexpr int NO = S / 32; /* octets per lane */
  const int L = 32 * (threadIdx.x / 32 % 2) + threadIdx.x % 32, r = L / 4;
  float d[NO][8], pv[NO][8];
  unsigned kept[NO]; /* bit i: element i of the octet is kept */
  float dot = 0.0f;
#pragma unroll
  for (int k = 0; k < NO; k++) {
    const int c = 8 * (L % 4 + 4 * k);
    load8(stage + r * stage_ld(S) + c, d[k]);
    kept[k] = 0;
    for (int i = 0; i < 8; i++) {
      const unsigned short u = __bfloat16_as_ushort(pq[k].v[i]);
      const bool keep = !(u & SIGN16); /* the forward's mark */
      kept[k] |= (unsigned)keep << i;
      pv[k][i] = __bfloat162float(__ushort_as_bfloat16(u & ~SIGN16));
      d[k][i] = keep ? __fmul_rn(d[k][i], a.keep_scale) : 0.0f; /* dP */
      dot += pv[k][i] * d[k][i];
    }
  }
  /* the row's four lanes: the same sum in each (butterfly) */
  dot += __shfl_xor_sync(0xffffffffu, dot, 1);
  dot += __shfl_xor_sync(0xffffffffu, dot, 2);
  __syncwarp(); /* the row's lanes (this warp's) have read it before it is rewritten */
  bf16 *G = reinterpret_cast<bf16 *>(stage) + r * over_ld(S);
#pragma unroll
  for (int k = 0; k < NO; k++) {
    const int c = 8 * (L % 4 + 4 * k);
    Pack<bf16> ds, pd;
    for (int i = 0; i < 8; i++) {
      store_as(&ds.v[i], pv[k][i] * (d[k][i] - dot));
      store_as(&pd.v[i], kept[k] >> i & 1 ? pv[k][i] * a.keep_scale : 0.0f);
    }
    *reinterpret_cast<Pack<bf16> *>(G + c) = ds;
    *reinterpret_cast<Pack<bf16> *>(G + S + c) = pd;
  }
}

/* Backward: block (head, sample) of 2 S / 16 warps. Warps 2t and 2t + 1
 * take query row tile t (rows 16t..) for dP (a half of its columns each),
 * dS, and dQ (a half of its columns each); then warp w takes dK (w < S /
 * 16) or dV (the others) of key tile w mod S / 16. Shared memory: K, V, Q,
 * dC, dS and the dropped P of the whole head (each row tile's rows first
 * hold its fp32 dPd), and per warp a one-tile output stage. */
template <int S, int HD>
static __global__ void __launch_bounds__(S * 4, 1) attn_fused_bwd(AttnArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  constexpr int LH = head_ld(HD), LG = over_ld(S), NT = S / 16, NK = HD / 16;
  const int h = blockIdx.x, b = blockIdx.y, w = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int rt = w / 2, half = w % 2, L = 32 * half + lane;
  bf16 *Ks = reinterpret_cast<bf16 *>(smem), *Vs = Ks + S * LH, *Qs = Vs + S * LH;
  bf16 *dCs = Qs + S * LH, *G = dCs + S * LH;
  float *out_stage = reinterpret_cast<float *>(G + S * LG) + w * 16 * OUT_LD;
  const size_t tok0 = (size_t)b * S, col = (size_t)h * HD, H = (size_t)a.nh * HD;
  const size_t ld = a.ld;
  const size_t prow = ((size_t)b * a.nh + h) * S + 16 * rt; /* row of probs */
  /* the lane's octets of P, loaded first, so that they arrive meanwhile */
  Pack<bf16> pq[S / 32];
#pragma unroll
  for (int k = 0; k < S / 32; k++)
    pq[k] = *reinterpret_cast<const Pack<bf16> *>(a.probs + (prow + L / 4) * S +
                                                  8 * (L % 4 + 4 * k));
  load_rows<HD, 4>({Ks, Vs, Qs, dCs}, LH,
                   {a.k + tok0 * ld + col, a.v + tok0 * ld + col, a.q + tok0 * ld + col,
                    a.dctx + tok0 * H + col},
                   {ld, ld, ld, H}, S);
  __syncthreads();
  /* dPd = dC V^T, the warp's half of the tile's key columns, staged over
   * the tile's rows of G */
  Acc acc[NT / 2];
  tile_product<wmma::row_major, wmma::col_major, NT / 2, NK>(acc, dCs + 16 * rt * LH, LH, 16,
                                                             Vs + half * (S / 2) * LH, LH, 16,
                                                             16 * LH);
  float *stage = reinterpret_cast<float *>(G + 16 * rt * LG);
  stage_tiles(stage + half * (S / 2), stage_ld(S), acc);
  __syncthreads(); /* both halves of every row tile are staged */
  staged_softmax_grad<S>(a, stage, pq);
  __syncthreads(); /* every row of G is in */
  /* dQ = dS K / sqrt(hd), the warp's half of the columns */
  Acc gq[NK / 2];
  tile_product<wmma::row_major, wmma::row_major, NK / 2, NT>(gq, G + 16 * rt * LG, LG, 16,
                                                             Ks + half * (HD / 2), LH, 16 * LH, 16);
  write_tiles(a.dq + (tok0 + 16 * rt) * ld + col + half * (HD / 2), ld, gq, out_stage, a.scale);
  /* dK = dS^T Q / sqrt(hd) or dV = Pd^T dC, for key rows 16 kt.. */
  const bool dv = w >= NT;
  const int kt = dv ? w - NT : w;
  Acc g[NK];
  tile_product<wmma::col_major, wmma::row_major, NK, NT>(g, G + (dv ? S : 0) + 16 * kt, LG,
                                                         16 * LG, dv ? dCs : Qs, LH, 16 * LH, 16);
  write_tiles((dv ? a.dv : a.dk) + (tok0 + 16 * kt) * ld + col, ld, g, out_stage,
              dv ? 1.0f : a.scale);
}

static size_t fwd_smem(int S, int hd) {
  return (size_t)2 * S * head_ld(hd) * sizeof(bf16) +
         (size_t)S * (stage_ld(S) + 1) * sizeof(float);
}

static size_t bwd_smem(int S, int hd) {
  return (size_t)4 * S * head_ld(hd) * sizeof(bf16) + (size_t)S * over_ld(S) * sizeof(bf16) +
         (size_t)(S / 8) * 16 * OUT_LD * sizeof(float);
}

/* Raises a kernel's dynamic shared memory limit once (above 48 KiB a
 * kernel must ask). */
template <class K>
static void allow_smem(K kernel, size_t bytes, const char *what) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes),
             "%s: %zu bytes of shared memory", what, bytes);
}

/* BERTRAIN_ATTN_FUSED=0 in the environment turns this path off, for A/B
 * measurements against attention.cu's. */
static bool fused_allowed(void) {
  static const bool allowed = cuda_path_on("BERTRAIN_ATTN_FUSED");
  return allowed;
}

bool attn_fused_fits(bool bf16_acts, const float *q, const float *k, const float *v,
                     const float *probs, int ld, int S, int hd) {
  if (!fused_allowed() || !bf16_acts) return false;
  /* the sequence lengths BERT trains and fine-tunes at; each shape is a
   * compiled instance of both kernels (others take attention.cu's path) */
  if ((S != 64 && S != FUSED_MAX_S) || (hd != 32 && hd != 64)) return false;
  if (ld % 8 != 0) return false; /* rows of whole 16-byte packs (hd, nh hd: multiples of 32) */
  for (const void *p : {k, v, probs})
    if (!aligned16(act16(p))) return false;
  /* the forward reads Q's tiles with wmma, which wants 32-byte alignment */
  return (uintptr_t)act16(q) % 32 == 0;
}

/* The arguments a forward and its backward do not share cannot decide the
 * path (the backward must read the marks its forward wrote): when they do
 * not fit, that is an error. The model's always fit: its activation
 * buffers are 256-byte aligned and its views of them start on 16 bytes. */
static void need_aligned(const char *op, std::initializer_list<const float *> bufs) {
  for (const float *p : bufs)
    if (!aligned16(act16(p)))
      die("ops: %s: bf16 activation %p is not 16-byte aligned (the fused attention path, taken "
          "for its Q, K, V and probs, needs all of them aligned)", op, (const void *)p);
}

static AttnArgs attn_args(const float *q, const float *k, const float *v, int ld,
                          const int32_t *mask, int nh, int hd, float p, DropoutKey key) {
  AttnArgs a = {};
  a.q = act16(q), a.k = act16(k), a.v = act16(v);
  a.mask = mask;
  a.ld = ld, a.nh = nh;
  a.scale = 1.0f / sqrtf((float)hd);
  a.p = p, a.keep_scale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
  a.key = key;
  return a;
}

/* f(S, hd) as compile-time constants for the shapes attn_fused_fits
 * takes: S = 64, 128; hd = 32, 64. */
template <int V> using Int = std::integral_constant<int, V>;
template <class F> static void by_shape(int S, int hd, F f) {
  if (S == 64) {
    if (hd == 32) f(Int<64>{}, Int<32>{});
    else f(Int<64>{}, Int<64>{});
  } else {
    if (hd == 32) f(Int<128>{}, Int<32>{});
    else f(Int<128>{}, Int<64>{});
  }
}

/* One launch of the forward or the backward kernel for a's shape, the
 * kernel's shared memory limit raised at its first launch. */
static void fused_launch(bool bwd, const AttnArgs &a, int B, int S, int nh, int hd) {
  const size_t bytes = bwd ? bwd_smem(S, hd) : fwd_smem(S, hd);
  const char *op = bwd ? "attn_bwd fused" : "attn_fwd fused";
  const dim3 grid((unsigned)nh, (unsigned)B);
  /* a warp per 16 query rows forward, two backward */
  const unsigned threads = (unsigned)(S * (bwd ? 4 : 2));
  by_shape(S, hd, [&](auto s, auto d) {
    if (bwd) {
      static bool raised = (allow_smem(attn_fused_bwd<s, d>, bytes, op), true);
      (void)raised;
      attn_fused_bwd<s, d><<<grid, threads, bytes>>>(a);
    } else {
      static bool raised = (allow_smem(attn_fused_fwd<s, d>, bytes, op), true);
      (void)raised;
      attn_fused_fwd<s, d><<<grid, threads, bytes>>>(a);
    }
  });
  LAUNCH_CHECK("%s (B=%d S=%d nh=%d hd=%d, %zu bytes shared)", op, B, S, nh, hd, bytes);
}

void attn_fused_fwd_launch(float *ctx, float *probs, const float *q, const float *k,
                           const float *v, int ld, const int32_t *mask, int B, int S, int nh,
                           int hd, float p, DropoutKey key) {
  need_aligned("attn_fwd", {ctx});
  AttnArgs a = attn_args(q, k, v, ld, mask, nh, hd, p, key);
  a.ctx = act16(ctx), a.probs = act16(probs);
  if (p > 0.0f) a.keep_bits = cuda_dropout_bits((size_t)B * nh * S * S, p, key);
  fused_launch(false, a, B, S, nh, hd);
}

void attn_fused_bwd_launch(float *dq, float *dk, float *dv, const float *dctx,
                           const float *probs, const float *q, const float *k, const float *v,
                           int ld, int B, int S, int nh, int hd, float p, DropoutKey key) {
  need_aligned("attn_bwd", {dq, dk, dv, dctx});
  AttnArgs a = attn_args(q, k, v, ld, NULL, nh, hd, p, key);
  a.probs = act16(probs), a.dctx = act16(dctx);
  a.dq = act16(dq), a.dk = act16(dk), a.dv = act16(dv);
  fused_launch(true, a, B, S, nh, hd);
}
