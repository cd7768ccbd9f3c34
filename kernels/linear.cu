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

/* dst [n, ld] = src [n, c] with the pad zero, ld a multiple of 8 (rows of
 * whole 16 bytes, which the products want) and c whatever it is. One block
 * per row, a thread per 8 elements of dst (one 16-byte store); src in
 * pairs of 4 bytes where c is even (rows then start on 4 bytes). */
struct alignas(4) Bf16x2 {
  __nv_bfloat16 v[2];
};

static __global__ void pad_rows16_kernel(__nv_bfloat16 *dst, const __nv_bfloat16 *src, int n,
                                         int c, int ld) {
  const __nv_bfloat16 zero = __float2bfloat16(0.0f);
  for (int r = blockIdx.x; r < n; r += gridDim.x) {
    const __nv_bfloat16 *s = src + (size_t)r * c;
    for (int q = threadIdx.x; q < ld / 8; q += blockDim.x) {
      Pack<__nv_bfloat16> o;
      for (int i = 0; i < 4; i++) {
        const int j = 8 * q + 2 * i;
        const Bf16x2 two = c % 2 == 0 && j + 1 < c
                               ? *reinterpret_cast<const Bf16x2 *>(s + j)
                               : Bf16x2{{j < c ? s[j] : zero, j + 1 < c ? s[j + 1] : zero}};
        o.v[2 * i] = two.v[0], o.v[2 * i + 1] = two.v[1];
      }
      reinterpret_cast<Pack<__nv_bfloat16> *>(dst + (size_t)r * ld)[q] = o;
    }
  }
}

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

/* y = x W^T + b with the bias added by the product (cuBLASLt); 0 when
 * cuBLASLt refuses. Column-major: y^T [out, n] = W [out, in] x^T. */
static int linear_fwd_lt(Out y, const float *x, const float *w, const float *b, int n, int in,
                         int out) {
  LtProduct p = {"linear_fwd", true, false, out, n, in, w, in, x, in, false, 0.0f, y.p, y.bf16,
                 out, (void *)b};
  if (cuda_bf16()) {
    p.A = operand16("linear_fwd w", 0, w, out, in);
    p.B = operand16("linear_fwd x", 1, x, n, in);
    p.bf16 = true;
    if (y.bf16) p.bias = (void *)bias16(b, out);
  }
  return lt_matmul(&p);
}

void cuda_linear_fwd(float *y, const float *x, const float *w, const float *b, int n, int in,
                     int out) {
  ops_check_dims("linear_fwd", n, in, out);
  act_bf16("linear_fwd", {y, x}); /* the same kind, or die */
  WRITES(y, (size_t)n * out);
  Out yo = out_of(y);
  if (b && linear_fwd_lt(yo, x, w, b, n, in, out)) return;
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
 * do not: the MLM decoder's gradient over 30,522 words took a SIMT one,
 * 1.7 ms of a 24 ms BERT-base step on an H100. The model now gives the
 * decoder whole rows (ParamTable.vocab_rows); the classifiers' few columns
 * still come here. */
static const __nv_bfloat16 *padded_rows16(const __nv_bfloat16 *src, int n, int c, int *ld) {
  *ld = c;
  if (c % 8 == 0) return src;
  *ld = ld16(c);
  __nv_bfloat16 *dst = bf16_buffer(3, (size_t)n * *ld);
  pad_rows16_kernel<<<(unsigned)min(n, 65535), THREADS>>>(dst, src, n, c, *ld);
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
