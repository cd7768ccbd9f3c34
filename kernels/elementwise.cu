/* Elementwise ops and dropout: each output element depends on its own
 * inputs alone, so any launch shape gives the same bits, and out may alias
 * an input (each thread reads its element before writing it). Each kernel
 * runs on fp32 or bf16 activations (T; activations.cu), computing in fp32. */
#include <limits.h>

#include "ops_cuda_internal.cuh"

/* Each op as a function of one or two input elements (b is a's partner:
 * gelu_bwd's x, tanh_bwd's y, add's second term; unary ops ignore it). */
struct AddOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct ScaleOp {
  float s;
  __device__ float operator()(float a, float) const { return a * s; }
};
struct GeluOp {
  __device__ float operator()(float x, float) const { return 0.5f * x * (1.0f + erff(x * SQRT1_2)); }
};
/* a is dy, b is x */
struct GeluBwdOp {
  __device__ float operator()(float dy, float x) const { return gelu_grad(dy, x); }
};
struct TanhOp {
  __device__ float operator()(float x, float) const { return tanhf(x); }
};
/* a is dy, b is y = tanh(x) */
struct TanhBwdOp {
  __device__ float operator()(float dy, float y) const { return dy * (1.0f - y * y); }
};

/* out[i] = op(a[i], b[i]): a pack per thread and step (all three 16-byte
 * aligned), the tail (fewer than a pack) by block 0. */
template <class T, class Op>
static __global__ void map_packed_kernel(T *out, const T *a, const T *b, size_t n, Op op) {
  const int N = (int)(16 / sizeof(T));
  const size_t packs = n / N;
  GRID_STRIDE(q, packs) {
    const Pack<T> pa = reinterpret_cast<const Pack<T> *>(a)[q];
    const Pack<T> pb = reinterpret_cast<const Pack<T> *>(b)[q];
    Pack<T> po;
    for (int k = 0; k < N; k++) store_as(&po.v[k], op(ldf(&pa.v[k]), ldf(&pb.v[k])));
    reinterpret_cast<Pack<T> *>(out)[q] = po;
  }
  if (blockIdx.x == 0)
    for (size_t i = packs * N + threadIdx.x; i < n; i += blockDim.x)
      store_as(&out[i], op(ldf(&a[i]), ldf(&b[i])));
}

/* The same an element at a time, for buffers that are not aligned. */
template <class T, class Op>
static __global__ void map_kernel(T *out, const T *a, const T *b, size_t n, Op op) {
  GRID_STRIDE(i, n) store_as(&out[i], op(ldf(&a[i]), ldf(&b[i])));
}

/* out[i] = op(a[i], b[i]) over activations of the op's kind (b NULL: a). */
template <class Op>
static void map(const char *name, float *out, const float *a, const float *b, size_t n, Op op) {
  if (!n) return;
  WRITES(out, n);
  by_act(name, {out, a, b}, [&](auto t) {
    using T = decltype(t);
    T *o = tp<T>(out);
    const T *x = tp<T>(a), *y = b ? tp<T>(b) : x;
    if (aligned16(o) && aligned16(x) && aligned16(y))
      map_packed_kernel<T, Op><<<grid_for(ceil_div(n, 16 / sizeof(T)), THREADS), THREADS>>>(
          o, x, y, n, op);
    else
      map_kernel<T, Op><<<grid_for(n, THREADS), THREADS>>>(o, x, y, n, op);
  });
  LAUNCH_CHECK("%s (n=%zu)", name, n);
}

/* out[i] = x[i] * keep(elem_offset + i) / (1 - p); s = 1 / (1 - p) comes
 * from the host, computed in float exactly as the CPU backend does. Thread
 * g takes the elements of Philox block first_block + g (four consecutive
 * global indices), so each block of random words is drawn once. */
template <class TO, class TI>
static __global__ void dropout_kernel(TO *out, const TI *x, size_t n, float p, float s,
                                      DropoutKey k) {
  const uint64_t lo = k.elem_offset, hi = lo + n, first_block = lo >> 2;
  GRID_STRIDE(g, ((hi + 3) >> 2) - first_block) {
    uint64_t blk = first_block + g;
    philox4x32_ctr_t r = dropout_block(k.seed, k.step, k.tensor, blk);
    for (uint64_t e = blk << 2; e < (blk << 2) + 4; e++) {
      if (e < lo || e >= hi) continue;
      size_t i = (size_t)(e - lo);
      store_as(&out[i], dropout_keep_in(r, e, p) ? ldf(&x[i]) * s : 0.0f);
    }
  }
}

void cuda_add(float *out, const float *a, const float *b, size_t n) {
  map("add", out, a, b, n, AddOp{});
}

void cuda_scale(float *x, size_t n, float s) { map("scale", x, x, NULL, n, ScaleOp{s}); }

void cuda_gelu_fwd(float *out, const float *x, size_t n) { map("gelu_fwd", out, x, NULL, n, GeluOp{}); }

/* BERTRAIN_GELU_BIAS_FUSED=0 in the environment sums dbias in a pass of
 * its own over dx, for A/B measurements of the fused kernel (which takes
 * more registers than the map). */
void cuda_gelu_bwd(float *dx, float *dbias, const float *dy, const float *x, size_t n, int c) {
  static const bool fused = cuda_path_on("BERTRAIN_GELU_BIAS_FUSED");
  ops_check_rows("gelu_bwd", dbias, n, c);
  if (dbias && n / (size_t)c > INT_MAX) die("ops: gelu_bwd: %zu rows are too many", n / (size_t)c);
  const int rows = dbias ? (int)(n / (size_t)c) : 0;
  if (dbias) WRITES(dbias, c);
  if (!dbias || !fused) {
    map("gelu_bwd", dx, dy, x, n, GeluBwdOp{});
    if (dbias)
      by_act("gelu_bwd dbias", {dx}, [&](auto t) {
        using T = decltype(t);
        cuda_colsum_acc("gelu_bwd dbias", dbias, tp<T>(dx), rows, c, c, NULL, 0);
      });
    return;
  }
  WRITES(dx, n);
  cuda_gelu_bwd_colsum(dx, dbias, dy, x, rows, c);
}

void cuda_tanh_fwd(float *out, const float *x, size_t n) { map("tanh_fwd", out, x, NULL, n, TanhOp{}); }

void cuda_tanh_bwd(float *dx, const float *dy, const float *y, size_t n) {
  map("tanh_bwd", dx, dy, y, n, TanhBwdOp{});
}

/* dropout_kernel where the elements start a Philox block and the buffers
 * allow one vector access per block: a block (quad_keeps_at, constant word
 * indices) and one access each way per thread. */
template <class TO, class TI>
static __global__ void dropout_quads_kernel(TO *out, const TI *x, size_t quads, float p, float s,
                                            DropoutKey k) {
  GRID_STRIDE(q, quads) {
    bool keep[4];
    quad_keeps_at<0>(k, p, k.elem_offset + 4 * q, keep);
    const Quad<TI> v = reinterpret_cast<const Quad<TI> *>(x)[q];
    Quad<TO> o;
#pragma unroll
    for (int i = 0; i < 4; i++) store_as(&o.v[i], keep[i] ? ldf(&v.v[i]) * s : 0.0f);
    reinterpret_cast<Quad<TO> *>(out)[q] = o;
  }
}

template <class TO, class TI>
static void dropout_run(const char *op, TO *out, const TI *x, size_t n, float p, DropoutKey k) {
  const float s = 1.0f / (1.0f - p);
  if (k.elem_offset % 4 == 0 && n % 4 == 0 && (uintptr_t)x % sizeof(Quad<TI>) == 0 &&
      (uintptr_t)out % sizeof(Quad<TO>) == 0)
    dropout_quads_kernel<TO, TI><<<grid_for(n / 4, THREADS), THREADS>>>(out, x, n / 4, p, s, k);
  else
    dropout_kernel<TO, TI><<<grid_for(ceil_div(n, 4) + 1, THREADS), THREADS>>>(out, x, n, p, s, k);
  LAUNCH_CHECK("%s (n=%zu p=%g)", op, n, p);
}

static void dropout_apply(const char *op, float *out, const float *x, size_t n, float p,
                          DropoutKey k) {
  ops_check_dropout(op, p);
  if (!n) return;
  WRITES(out, n);
  if (p == 0.0f) {
    if (out != x) act_copy_n(op, out, x, n);
    return;
  }
  by_act(op, {out, x}, [&](auto t) {
    using T = decltype(t);
    dropout_run(op, tp<T>(out), tp<T>(x), n, p, k);
  });
}

void cuda_dropout_fwd(float *out, const float *x, size_t n, float p, DropoutKey key) {
  dropout_apply("dropout_fwd", out, x, n, p, key);
}

void cuda_dropout_bwd(float *dx, const float *dy, size_t n, float p, DropoutKey key) {
  dropout_apply("dropout_bwd", dx, dy, n, p, key);
}

/* Word w of bits: the keep flags of elements 32 w .. 32 w + 31 of the
 * call, element i at bit i % 32. A thread a word: eight Philox blocks, all
 * its random work, in a kernel of its own at full occupancy. */
static __global__ void dropout_bits_kernel(uint32_t *bits, size_t words, float p, DropoutKey k) {
  GRID_STRIDE(w, words) {
    const uint64_t e = k.elem_offset + 32 * (uint64_t)w;
    uint32_t b = 0;
#pragma unroll
    for (int q = 0; q < 8; q++) {
      bool keep[4];
      quad_keeps(k, p, e + 4 * q, keep);
      for (int i = 0; i < 4; i++) b |= (uint32_t)keep[i] << (4 * q + i);
    }
    bits[w] = b;
  }
}

/* The flags' buffer, grown as needed (kept apart from cuda_scratch, which
 * the flags' readers use too). */
static uint32_t *bits_buffer(size_t words) {
  static GrowBuffer buf;
  return (uint32_t *)grow_buffer(&buf, words * sizeof(uint32_t), "dropout bits");
}

static void draw_bits(uint32_t *bits, size_t words, size_t n, float p, DropoutKey key) {
  if (!words) return;
  dropout_bits_kernel<<<grid_for(words, THREADS), THREADS>>>(bits, words, p, key);
  LAUNCH_CHECK("dropout bits (n=%zu p=%g)", n, p);
}

uint32_t *cuda_dropout_bits(size_t n, float p, DropoutKey key) {
  ops_check_dropout("dropout bits", p);
  const size_t words = ceil_div(n, 32);
  uint32_t *bits = bits_buffer(words);
  draw_bits(bits, words, n, p, key);
  return bits;
}

/* Enough for BERT-large's 48 LayerNorm sites (BERT-base's 24 take 19 MB
 * at batch 64 x 128); past that, flags are drawn again, not wrong. */
#define KEPT_BITS 64

struct KeptBits {
  size_t n;
  float p;
  DropoutKey key;
  unsigned long long used; /* 0: empty */
  GrowBuffer buf;
};

static bool same_bits(const KeptBits &k, size_t n, float p, DropoutKey key) {
  return k.used && k.n == n && k.p == p && k.key.seed == key.seed && k.key.step == key.step &&
         k.key.tensor == key.tensor && k.key.elem_offset == key.elem_offset;
}

const uint32_t *cuda_dropout_bits_kept(size_t n, float p, DropoutKey key) {
  static KeptBits kept[KEPT_BITS];
  static unsigned long long clock;
  ops_check_dropout("dropout bits", p);
  int slot = 0;
  for (int i = 0; i < KEPT_BITS; i++) {
    if (same_bits(kept[i], n, p, key)) {
      kept[i].used = ++clock;
      return (const uint32_t *)kept[i].buf.p;
    }
    if (kept[i].used < kept[slot].used) slot = i; /* the least recently used, or an empty one */
  }
  /* reused in stream order: the kernels that read the old flags run first */
  KeptBits &k = kept[slot];
  const size_t words = ceil_div(n, 32);
  uint32_t *bits = (uint32_t *)grow_buffer(&k.buf, (words ? words : 1) * sizeof(uint32_t),
                                           "kept dropout bits");
  k.n = n, k.p = p, k.key = key, k.used = ++clock;
  draw_bits(bits, words, n, p, key);
  return bits;
}

void cuda_dropout_to_bf16(__nv_bfloat16 *out, const void *x, bool x16, size_t n, float p,
                          DropoutKey key) {
  ops_check_dropout("dropout to bf16", p);
  if (!n) return;
  if (x16 && p == 0.0f) {
    CUDA_CHECK(cudaMemcpy(out, x, n * sizeof *out, cudaMemcpyDeviceToDevice),
               "dropout to bf16 copy (n=%zu)", n);
  } else if (!x16 && p == 0.0f) {
    cuda_to_bf16("dropout (p=0)", out, (const float *)x, n);
  } else if (x16) {
    dropout_run("dropout to bf16", out, (const __nv_bfloat16 *)x, n, p, key);
  } else {
    dropout_run("dropout to bf16", out, (const float *)x, n, p, key);
  }
}
