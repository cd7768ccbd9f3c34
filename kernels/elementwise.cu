/* Elementwise ops and dropout: each output element depends on its own
 * inputs alone, so any launch shape gives the same bits, and out may alias
 * an input (each thread reads its element before writing it). GELU and
 * dropout outputs feed linear layers, so in bf16 products they also write
 * their bf16 copies (out16, NULL when none; bf16_copies.cu). */
#include "ops_cuda_internal.cuh"

#define SQRT1_2 0.70710678118654752f

static __global__ void add_kernel(float *out, const float *a, const float *b, size_t n) {
  GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

static __global__ void scale_kernel(float *x, size_t n, float s) {
  GRID_STRIDE(i, n) x[i] *= s;
}

/* out[i] = v, and its bf16 copy when there is one. */
__device__ static inline void put(float *out, __nv_bfloat16 *out16, size_t i, float v) {
  out[i] = v;
  if (out16) out16[i] = __float2bfloat16(v);
}

static __global__ void gelu_fwd_kernel(float *out, __nv_bfloat16 *out16, const float *x,
                                       size_t n) {
  GRID_STRIDE(i, n) put(out, out16, i, 0.5f * x[i] * (1.0f + erff(x[i] * SQRT1_2)));
}

/* d/dx [x Phi(x)] = Phi(x) + x phi(x) */
static __global__ void gelu_bwd_kernel(float *dx, __nv_bfloat16 *dx16, const float *dy,
                                       const float *x, size_t n) {
  const float inv_sqrt_2pi = 0.3989422804014327f;
  GRID_STRIDE(i, n) {
    float xi = x[i];
    float cdf = 0.5f * (1.0f + erff(xi * SQRT1_2));
    float pdf = inv_sqrt_2pi * expf(-0.5f * xi * xi);
    put(dx, dx16, i, dy[i] * (cdf + xi * pdf));
  }
}

static __global__ void tanh_fwd_kernel(float *out, const float *x, size_t n) {
  GRID_STRIDE(i, n) out[i] = tanhf(x[i]);
}

static __global__ void tanh_bwd_kernel(float *dx, const float *dy, const float *y, size_t n) {
  GRID_STRIDE(i, n) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

/* out[i] = x[i] * keep(elem_offset + i) / (1 - p); s = 1 / (1 - p) comes
 * from the host, computed in float exactly as the CPU backend does. Thread
 * g takes the elements of Philox block first_block + g (four consecutive
 * global indices), so each block of random words is drawn once. */
template <class T>
static __global__ void dropout_kernel(T *out, __nv_bfloat16 *out16, const float *x, size_t n,
                                      float p, float s, DropoutKey k) {
  const uint64_t lo = k.elem_offset, hi = lo + n, first_block = lo >> 2;
  GRID_STRIDE(g, ((hi + 3) >> 2) - first_block) {
    uint64_t blk = first_block + g;
    philox4x32_ctr_t r = dropout_block(k.seed, k.step, k.tensor, blk);
    for (uint64_t e = blk << 2; e < (blk << 2) + 4; e++) {
      if (e < lo || e >= hi) continue;
      size_t i = (size_t)(e - lo);
      float v = dropout_keep_in(r, e, p) ? x[i] * s : 0.0f;
      store_as(&out[i], v);
      if (out16) out16[i] = __float2bfloat16(v);
    }
  }
}

void cuda_add(float *out, const float *a, const float *b, size_t n) {
  if (!n) return;
  WRITES(out, n);
  add_kernel<<<grid_for(n, THREADS), THREADS>>>(out, a, b, n);
  LAUNCH_CHECK("add (n=%zu)", n);
}

void cuda_scale(float *x, size_t n, float s) {
  if (!n) return;
  WRITES(x, n);
  scale_kernel<<<grid_for(n, THREADS), THREADS>>>(x, n, s);
  LAUNCH_CHECK("scale (n=%zu)", n);
}

void cuda_gelu_fwd(float *out, const float *x, size_t n) {
  if (!n) return;
  __nv_bfloat16 *out16 = bf16_copy_for_write(out, n);
  gelu_fwd_kernel<<<grid_for(n, THREADS), THREADS>>>(out, out16, x, n);
  LAUNCH_CHECK("gelu_fwd (n=%zu)", n);
}

void cuda_gelu_bwd(float *dx, const float *dy, const float *x, size_t n) {
  if (!n) return;
  __nv_bfloat16 *dx16 = bf16_copy_for_write(dx, n);
  gelu_bwd_kernel<<<grid_for(n, THREADS), THREADS>>>(dx, dx16, dy, x, n);
  LAUNCH_CHECK("gelu_bwd (n=%zu)", n);
}

void cuda_tanh_fwd(float *out, const float *x, size_t n) {
  if (!n) return;
  WRITES(out, n);
  tanh_fwd_kernel<<<grid_for(n, THREADS), THREADS>>>(out, x, n);
  LAUNCH_CHECK("tanh_fwd (n=%zu)", n);
}

void cuda_tanh_bwd(float *dx, const float *dy, const float *y, size_t n) {
  if (!n) return;
  WRITES(dx, n);
  tanh_bwd_kernel<<<grid_for(n, THREADS), THREADS>>>(dx, dy, y, n);
  LAUNCH_CHECK("tanh_bwd (n=%zu)", n);
}

/* copy16: write out's bf16 copy too (the forward's output feeds a linear
 * layer; the backward's gradient does not). */
static void dropout_apply(const char *op, float *out, const float *x, size_t n, float p,
                          DropoutKey k, bool copy16) {
  ops_check_dropout(op, p);
  if (!n) return;
  if (p == 0.0f) {
    if (out != x) {
      WRITES(out, n);
      CUDA_CHECK(cudaMemcpy(out, x, n * sizeof *out, cudaMemcpyDeviceToDevice), "%s copy (n=%zu)", op, n);
    }
    return;
  }
  const float s = 1.0f / (1.0f - p);
  __nv_bfloat16 *out16 = NULL;
  if (copy16) out16 = bf16_copy_for_write(out, n);
  else WRITES(out, n);
  dropout_kernel<float><<<grid_for(ceil_div(n, 4) + 1, THREADS), THREADS>>>(out, out16, x, n, p,
                                                                            s, k);
  LAUNCH_CHECK("%s (n=%zu p=%g)", op, n, p);
}

void cuda_dropout_to_bf16(__nv_bfloat16 *out, const float *x, size_t n, float p, DropoutKey key) {
  ops_check_dropout("dropout to bf16", p);
  if (p == 0.0f) {
    cuda_to_bf16("dropout (p=0)", out, x, n);
    return;
  }
  if (!n) return;
  const float s = 1.0f / (1.0f - p);
  dropout_kernel<__nv_bfloat16><<<grid_for(ceil_div(n, 4) + 1, THREADS), THREADS>>>(
      out, nullptr, x, n, p, s, key);
  LAUNCH_CHECK("dropout to bf16 (n=%zu p=%g)", n, p);
}

void cuda_dropout_fwd(float *out, const float *x, size_t n, float p, DropoutKey key) {
  dropout_apply("dropout_fwd", out, x, n, p, key, true);
}

void cuda_dropout_bwd(float *dx, const float *dy, size_t n, float p, DropoutKey key) {
  dropout_apply("dropout_bwd", dx, dy, n, p, key, false);
}
