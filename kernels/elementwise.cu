/* Elementwise ops and dropout: each output element depends on its own
 * inputs alone, so any launch shape gives the same bits, and out may alias
 * an input (each thread reads its element before writing it). Each kernel
 * runs on fp32 or bf16 activations (T; activations.cu), computing in fp32. */
#include "ops_cuda_internal.cuh"

#define SQRT1_2 0.70710678118654752f

template <class T>
static __global__ void add_kernel(T *out, const T *a, const T *b, size_t n) {
  GRID_STRIDE(i, n) store_as(&out[i], ldf(&a[i]) + ldf(&b[i]));
}

template <class T>
static __global__ void scale_kernel(T *x, size_t n, float s) {
  GRID_STRIDE(i, n) store_as(&x[i], ldf(&x[i]) * s);
}

template <class T>
static __global__ void gelu_fwd_kernel(T *out, const T *x, size_t n) {
  GRID_STRIDE(i, n) {
    float xi = ldf(&x[i]);
    store_as(&out[i], 0.5f * xi * (1.0f + erff(xi * SQRT1_2)));
  }
}

/* d/dx [x Phi(x)] = Phi(x) + x phi(x) */
template <class T>
static __global__ void gelu_bwd_kernel(T *dx, const T *dy, const T *x, size_t n) {
  const float inv_sqrt_2pi = 0.3989422804014327f;
  GRID_STRIDE(i, n) {
    float xi = ldf(&x[i]);
    float cdf = 0.5f * (1.0f + erff(xi * SQRT1_2));
    float pdf = inv_sqrt_2pi * expf(-0.5f * xi * xi);
    store_as(&dx[i], ldf(&dy[i]) * (cdf + xi * pdf));
  }
}

template <class T>
static __global__ void tanh_fwd_kernel(T *out, const T *x, size_t n) {
  GRID_STRIDE(i, n) store_as(&out[i], tanhf(ldf(&x[i])));
}

template <class T>
static __global__ void tanh_bwd_kernel(T *dx, const T *dy, const T *y, size_t n) {
  GRID_STRIDE(i, n) {
    float yi = ldf(&y[i]);
    store_as(&dx[i], ldf(&dy[i]) * (1.0f - yi * yi));
  }
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

/* Blocks for a grid-stride loop over n elements, and the launch check. */
static unsigned ew_grid(size_t n) { return grid_for(n, THREADS); }

void cuda_add(float *out, const float *a, const float *b, size_t n) {
  if (!n) return;
  WRITES(out, n);
  by_act("add", {out, a, b}, [&](auto t) {
    using T = decltype(t);
    add_kernel<T><<<ew_grid(n), THREADS>>>(tp<T>(out), tp<T>(a), tp<T>(b), n);
  });
  LAUNCH_CHECK("add (n=%zu)", n);
}

void cuda_scale(float *x, size_t n, float s) {
  if (!n) return;
  WRITES(x, n);
  by_act("scale", {x}, [&](auto t) {
    using T = decltype(t);
    scale_kernel<T><<<ew_grid(n), THREADS>>>(tp<T>(x), n, s);
  });
  LAUNCH_CHECK("scale (n=%zu)", n);
}

void cuda_gelu_fwd(float *out, const float *x, size_t n) {
  if (!n) return;
  WRITES(out, n);
  by_act("gelu_fwd", {out, x}, [&](auto t) {
    using T = decltype(t);
    gelu_fwd_kernel<T><<<ew_grid(n), THREADS>>>(tp<T>(out), tp<T>(x), n);
  });
  LAUNCH_CHECK("gelu_fwd (n=%zu)", n);
}

void cuda_gelu_bwd(float *dx, const float *dy, const float *x, size_t n) {
  if (!n) return;
  WRITES(dx, n);
  by_act("gelu_bwd", {dx, dy, x}, [&](auto t) {
    using T = decltype(t);
    gelu_bwd_kernel<T><<<ew_grid(n), THREADS>>>(tp<T>(dx), tp<T>(dy), tp<T>(x), n);
  });
  LAUNCH_CHECK("gelu_bwd (n=%zu)", n);
}

void cuda_tanh_fwd(float *out, const float *x, size_t n) {
  if (!n) return;
  WRITES(out, n);
  by_act("tanh_fwd", {out, x}, [&](auto t) {
    using T = decltype(t);
    tanh_fwd_kernel<T><<<ew_grid(n), THREADS>>>(tp<T>(out), tp<T>(x), n);
  });
  LAUNCH_CHECK("tanh_fwd (n=%zu)", n);
}

void cuda_tanh_bwd(float *dx, const float *dy, const float *y, size_t n) {
  if (!n) return;
  WRITES(dx, n);
  by_act("tanh_bwd", {dx, dy, y}, [&](auto t) {
    using T = decltype(t);
    tanh_bwd_kernel<T><<<ew_grid(n), THREADS>>>(tp<T>(dx), tp<T>(dy), tp<T>(y), n);
  });
  LAUNCH_CHECK("tanh_bwd (n=%zu)", n);
}

template <class TO, class TI>
static void dropout_run(const char *op, TO *out, const TI *x, size_t n, float p, DropoutKey k) {
  const float s = 1.0f / (1.0f - p);
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
