/* Linear layers: y = x W^T + b and its backward, through cuBLASLt with the
 * bias in the forward product's epilogue (else cuBLAS and a bias pass), the
 * bias gradient by column sums (colsum.cu). x, y, dy and dx are
 * activations: fp32, or bf16 activation buffers (activations.cu); W, b and
 * their gradients fp32. With bf16 products the operands are bf16
 * (operand16) and y or dx is written in its buffer's type. */
#include <cuda_bf16.h>

#include "ops_cuda_internal.cuh"

/* y[i] = b[i % out], before a product adds onto it (beta = 1). */
template <class T>
static __global__ void bias_rows_kernel(T *y, const float *b, size_t total, int out) {
  GRID_STRIDE(i, total) store_as(&y[i], b[i % (size_t)out]);
}

/* Rows of c bf16 elements between a row stride that is a multiple of 8
 * (whole 16 bytes, the side the products want) and c, whatever it is: PAD,
 * dst [n, ld] = src [n, c] with the pad zero; else dst [n, c] = src [n, ld].
 * One block per row, a thread per 8 elements of the wide side (one 16-byte
 * access); on the other, pairs of 4 bytes where c is even (rows then start
 * on 4 bytes). */
struct alignas(4) Bf16x2 {
  __nv_bfloat16 v[2];
};

template <bool PAD>
static __global__ void restride_rows16_kernel(__nv_bfloat16 *dst, const __nv_bfloat16 *src, int n,
                                              int c, int ld) {
  const __nv_bfloat16 zero = __float2bfloat16(0.0f);
  for (int r = blockIdx.x; r < n; r += gridDim.x) {
    const __nv_bfloat16 *s = src + (size_t)r * (PAD ? c : ld);
    __nv_bfloat16 *d = dst + (size_t)r * (PAD ? ld : c);
    for (int q = threadIdx.x; q < ld / 8; q += blockDim.x) {
      Pack<__nv_bfloat16> o;
      if (!PAD) o = reinterpret_cast<const Pack<__nv_bfloat16> *>(s)[q];
      for (int i = 0; i < 4; i++) {
        const int j = 8 * q + 2 * i;
        if (PAD) {
          const Bf16x2 two = c % 2 == 0 && j + 1 < c
                                 ? *reinterpret_cast<const Bf16x2 *>(s + j)
                                 : Bf16x2{{j < c ? s[j] : zero, j + 1 < c ? s[j + 1] : zero}};
          o.v[2 * i] = two.v[0], o.v[2 * i + 1] = two.v[1];
        } else if (c % 2 == 0 && j + 1 < c) {
          *reinterpret_cast<Bf16x2 *>(d + j) = Bf16x2{{o.v[2 * i], o.v[2 * i + 1]}};
        } else {
          if (j < c) d[j] = o.v[2 * i];
          if (j + 1 < c) d[j + 1] = o.v[2 * i + 1];
        }
      }
      if (PAD) reinterpret_cast<Pack<__nv_bfloat16> *>(d)[q] = o;
    }
  }
}

#define PAD_MIN_ELEMS (1 << 20)

/* c rounded up to whole 16 bytes of bf16. */
static int ld16(int c) { return (int)ceil_div((size_t)c, 8) * 8; }

/* The bias as bf16 for an epilogue into a bf16 output: its parameter copy,
 * else converted now into operand buffer 3. */
static const __nv_bfloat16 *bias16(const float *b, int out) {
  const __nv_bfloat16 *c = params_bf16(b, (size_t)out);
  if (c) return c;
  __nv_bfloat16 *buf = bf16_buffer(3, (size_t)out);
  cuda_to_bf16("linear_fwd bias", buf, b, (size_t)out);
  return buf;
}

/* y = x W^T + b with the bias added by the product (cuBLASLt), y's row
 * stride ldy; 0 when cuBLASLt refuses. Column-major: y^T [out, n] = W
 * [out, in] x^T. */
static int linear_fwd_lt(Out y, int ldy, const float *x, const float *w, const float *b, int n,
                         int in, int out) {
  LtProduct p = {"linear_fwd", true, false, out, n, in, w, in, x, in, false, 0.0f, y.p, y.bf16,
                 ldy, (void *)b};
  if (cuda_bf16()) {
    p.A = operand16("linear_fwd w", 0, w, out, in);
    p.B = operand16("linear_fwd x", 1, x, n, in);
    p.bf16 = true;
    if (y.bf16) p.bias = (void *)bias16(b, out);
  }
  return lt_matmul(&p);
}

/* linear_fwd_lt for bf16 rows that do not start on 16 bytes (the MLM
 * decoder's 30,522 words): the product into rows padded to 16 bytes, then
 * copied into y. cuBLASLt's kernels for the unpadded rows ran at 190
 * TFLOP/s on an H100 (the decoder's 0.32 ms a step), where the products
 * with whole rows reach 400-600; the copy is ~0.05 ms. */
static int linear_fwd_padded(Out y, const float *x, const float *w, const float *b, int n,
                             int in, int out) {
  const int ld = ld16(out);
  __nv_bfloat16 *pad = bf16_buffer(2, (size_t)n * ld);
  if (!linear_fwd_lt(Out{pad, true}, ld, x, w, b, n, in, out)) return 0;
  restride_rows16_kernel<false><<<(unsigned)min(n, 65535), THREADS>>>(
      (__nv_bfloat16 *)y.p, pad, n, out, ld);
  LAUNCH_CHECK("linear_fwd y unpadded (n=%d out=%d ld=%d)", n, out, ld);
  return 1;
}

void cuda_linear_fwd(float *y, const float *x, const float *w, const float *b, int n, int in,
                     int out) {
  ops_check_dims("linear_fwd", n, in, out);
  act_bf16("linear_fwd", {y, x}); /* the same kind, or die */
  WRITES(y, (size_t)n * out);
  Out yo = out_of(y);
  /* large products only: the classifiers' few logits are not worth a launch */
  const bool pad = yo.bf16 && out % 8 != 0 && (size_t)n * out >= PAD_MIN_ELEMS;
  if (b && pad && linear_fwd_padded(yo, x, w, b, n, in, out)) return;
  if (b && linear_fwd_lt(yo, out, x, w, b, n, in, out)) return;
  float beta = 0.0f;
  if (b) {
    size_t total = (size_t)n * out;
    by_act("linear_fwd", {y}, [&](auto t) {
      using T = decltype(t);
      bias_rows_kernel<T><<<grid_for(total, THREADS), THREADS>>>(tp<T>(y), b, total, out);
    });
    LAUNCH_CHECK("linear_fwd bias (n=%d out=%d)", n, out);
    beta = 1.0f;
  }
  if (cuda_bf16())
    gemm_rm16("linear_fwd", false, true, n, out, in, 1.0f, operand16("linear_fwd x", 0, x, n, in),
              in, operand16("linear_fwd w", 1, w, out, in), in, beta, yo, out);
  else
    gemm_rm("linear_fwd", false, true, n, out, in, 1.0f, x, in, w, in, beta, y, out);
}

/* src [n, c] as a bf16 operand whose rows start on 16 bytes (*ld: its
 * leading dimension). cuBLAS has no tensor-core kernel for bf16 rows that
 * do not: the MLM decoder's gradient (c = 30522 words) took a SIMT one,
 * 1.7 ms of a 24 ms BERT-base step on an H100; the copy takes ~0.05 ms. */
static const __nv_bfloat16 *padded_rows16(const __nv_bfloat16 *src, int n, int c, int *ld) {
  *ld = c;
  if (c % 8 == 0) return src;
  *ld = ld16(c);
  __nv_bfloat16 *dst = bf16_buffer(3, (size_t)n * *ld);
  restride_rows16_kernel<true><<<(unsigned)min(n, 65535), THREADS>>>(dst, src, n, c, *ld);
  LAUNCH_CHECK("linear_bwd dy padded (n=%d c=%d ld=%d)", n, c, *ld);
  return dst;
}

void cuda_linear_bwd(float *dx, float *dw, float *db, const float *dy, const float *x,
                     const float *w, int n, int in, int out, int accumulate_dx) {
  ops_check_dims("linear_bwd", n, in, out);
  act_bf16("linear_bwd", {dx, dy, x}); /* the same kind, or die */
  if (dx) WRITES(dx, (size_t)n * in);
  if (dw) WRITES(dw, (size_t)out * in);
  if (db) WRITES(db, out);
  const float beta_dx = accumulate_dx ? 1.0f : 0.0f;
  if (!cuda_bf16()) {
    if (dx) gemm_rm("linear_bwd dx", false, false, n, in, out, 1.0f, dy, out, w, in, beta_dx, dx, in);
    if (dw) gemm_rm("linear_bwd dw", true, false, out, in, n, 1.0f, dy, out, x, in, 1.0f, dw, in);
    if (db)
      by_act("linear_bwd db", {dy}, [&](auto t) {
        using T = decltype(t);
        cuda_colsum_acc("linear_bwd db", db, tp<T>(dy), n, out, out, NULL, 0);
      });
    return;
  }
  /* dy [n, out] is the A operand of both products (as is, and transposed):
   * as bf16 once, rows padded to whole 16 bytes */
  int ldy;
  const __nv_bfloat16 *dy16 = padded_rows16(operand16("linear_bwd dy", 2, dy, n, out), n, out, &ldy);
  if (dx)
    gemm_rm16("linear_bwd dx", false, false, n, in, out, 1.0f, dy16, ldy,
              operand16("linear_bwd w", 1, w, out, in), in, beta_dx, out_of(dx), in);
  if (dw)
    gemm_rm16("linear_bwd dw", true, false, out, in, n, 1.0f, dy16, ldy,
              operand16("linear_bwd x", 1, x, n, in), in, 1.0f, Out{dw, false}, in);
  /* the sums of the bf16 dy, as under autocast */
  if (db) cuda_colsum_acc("linear_bwd db", db, dy16, n, out, ldy, NULL, 0);
}
