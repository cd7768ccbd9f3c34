/* Self-attention. Heads are taken one at a time; each product is one
 * strided-batched sgemm over the B samples (Q, K, V of head h at column
 * h*hd with row stride ld; probs of head h at offset h*S*S with sample
 * stride nh*S*S). Softmax rows use fixed-shape block reductions. Dropped
 * probabilities of one head live in scratch memory [B, S, S]. */
#include <math.h>

#include "ops_cuda_internal.cuh"

/* dst[b] = dropout(src[b]) for the S x S block of (sample b, head h): its
 * element (i, j) has global index elem_offset + ((b nh + h) S + i) S + j,
 * the flat index into probs [B, nh, S, S]. dst may be src. */
static __global__ void attn_dropout_kernel(float *dst, const float *src, long long src_stride,
                                           int B, int S, int nh, int h, float p, float s,
                                           DropoutKey k) {
  size_t SS = (size_t)S * S;
  GRID_STRIDE(i, (size_t)B * SS) {
    size_t b = i / SS, r = i % SS;
    uint64_t e = k.elem_offset + ((size_t)b * nh + h) * SS + r;
    float x = src[b * (size_t)src_stride + r];
    dst[b * SS + r] = dropout_keep(k.seed, k.step, k.tensor, e, p) ? x * s : 0.0f;
  }
}

/* One block per row of probs [B, nh, S, S] (in place): add the mask, then
 * softmax with the max taken out and the sum in double. */
static __global__ void softmax_rows_kernel(float *P, const int32_t *mask, int S, int nh) {
  size_t R = blockIdx.x;
  float *row = P + R * S;
  const int32_t *mrow = mask ? mask + (R / S / nh) * S : NULL;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < S; j += blockDim.x) {
    float v = row[j];
    if (mrow && mrow[j] == 0) v += ATTN_MASK_NEG;
    row[j] = v;
    mx = fmaxf(mx, v);
  }
  mx = block_max(mx);
  double sum = 0.0;
  for (int j = threadIdx.x; j < S; j += blockDim.x) {
    float e = expf(row[j] - mx);
    row[j] = e;
    sum += e;
  }
  float inv = (float)(1.0 / block_sum(sum));
  for (int j = threadIdx.x; j < S; j += blockDim.x) row[j] *= inv;
}

/* For head h, one block per row (b, i): dS = P * (dP - rowsum(P * dP)), in
 * place in dP [B, S, S]. */
static __global__ void softmax_bwd_kernel(float *dP, const float *probs, int S, int nh, int h) {
  size_t R = blockIdx.x, b = R / S, i = R % S;
  const float *pr = probs + (((size_t)b * nh + h) * S + i) * S;
  float *dr = dP + R * S;
  double dot = 0.0;
  for (int j = threadIdx.x; j < S; j += blockDim.x) dot += (double)pr[j] * dr[j];
  float fdot = (float)block_sum(dot);
  for (int j = threadIdx.x; j < S; j += blockDim.x) dr[j] = pr[j] * (dr[j] - fdot);
}

static void check_attn(const char *op, int ld, int B, int S, int nh, int hd, float p) {
  cuda_check_dims(op, B, S, nh);
  if (hd <= 0 || ld < nh * hd)
    die("ops: %s: head_dim %d and row stride %d do not fit %d heads", op, hd, ld, nh);
  if (!(p >= 0.0f && p < 1.0f)) die("ops: %s: dropout probability must be in [0, 1) (got %g)", op, p);
  if ((size_t)B * nh * S > 0x7fffffffu) die("ops: %s: too many rows (B=%d nh=%d S=%d)", op, B, nh, S);
}

/* Dropout of head h's probabilities (sample stride src_stride) into dst. */
static void attn_dropout(const char *op, float *dst, const float *src, long long src_stride, int B,
                         int S, int nh, int h, float p, DropoutKey key) {
  const float s = 1.0f / (1.0f - p);
  size_t total = (size_t)B * S * S;
  attn_dropout_kernel<<<grid_for(total, THREADS), THREADS>>>(dst, src, src_stride, B, S, nh, h, p,
                                                             s, key);
  LAUNCH_CHECK("%s dropout (B=%d S=%d nh=%d head=%d p=%g)", op, B, S, nh, h, p);
}

void cuda_attn_fwd(float *ctx, float *probs, const float *q, const float *k, const float *v,
                   int ld, const int32_t *mask, int B, int S, int nh, int hd, float p,
                   DropoutKey key) {
  check_attn("attn_fwd", ld, B, S, nh, hd, p);
  const float scale = 1.0f / sqrtf((float)hd);
  const int H = nh * hd;
  const long long SS = (long long)S * S, sQ = (long long)S * ld, sP = nh * SS, sC = (long long)S * H;
  for (int h = 0; h < nh; h++)
    gemm_rm("attn_fwd scores", false, true, S, S, hd, scale, q + (size_t)h * hd, ld, sQ,
            k + (size_t)h * hd, ld, sQ, 0.0f, probs + h * SS, S, sP, B);
  softmax_rows_kernel<<<(unsigned)((size_t)B * nh * S), ROW_THREADS>>>(probs, mask, S, nh);
  LAUNCH_CHECK("attn_fwd softmax (B=%d S=%d nh=%d)", B, S, nh);
  float *pd = p > 0.0f ? (float *)cuda_scratch((size_t)B * SS * sizeof(float)) : NULL;
  for (int h = 0; h < nh; h++) {
    const float *P = probs + h * SS;
    long long sPd = sP;
    if (pd) {
      attn_dropout("attn_fwd", pd, P, sP, B, S, nh, h, p, key);
      P = pd;
      sPd = SS;
    }
    gemm_rm("attn_fwd ctx", false, false, S, hd, S, 1.0f, P, S, sPd, v + (size_t)h * hd, ld, sQ,
            0.0f, ctx + (size_t)h * hd, H, sC, B);
  }
}

/* With Pd = dropout(P): dV = Pd^T dC; dPd = dC V^T; dP = dropout'(dPd);
 * dScores = P * (dP - rowsum(P * dP)); dQ = dScores K / sqrt(hd);
 * dK = dScores^T Q / sqrt(hd). */
void cuda_attn_bwd(float *dq, float *dk, float *dv, const float *dctx, const float *probs,
                   const float *q, const float *k, const float *v, int ld, int B, int S, int nh,
                   int hd, float p, DropoutKey key) {
  check_attn("attn_bwd", ld, B, S, nh, hd, p);
  const float scale = 1.0f / sqrtf((float)hd);
  const int H = nh * hd;
  const long long SS = (long long)S * S, sQ = (long long)S * ld, sP = nh * SS, sC = (long long)S * H;
  float *dP = (float *)cuda_scratch((p > 0.0f ? 2 : 1) * (size_t)B * SS * sizeof(float));
  float *pd = p > 0.0f ? dP + (size_t)B * SS : NULL;
  for (int h = 0; h < nh; h++) {
    const size_t col = (size_t)h * hd;
    const float *P = probs + h * SS;
    long long sPd = sP;
    if (pd) {
      attn_dropout("attn_bwd", pd, P, sP, B, S, nh, h, p, key);
      P = pd;
      sPd = SS;
    }
    gemm_rm("attn_bwd dv", true, false, S, hd, S, 1.0f, P, S, sPd, dctx + col, H, sC, 0.0f,
            dv + col, ld, sQ, B);
    gemm_rm("attn_bwd dprobs", false, true, S, S, hd, 1.0f, dctx + col, H, sC, v + col, ld, sQ,
            0.0f, dP, S, SS, B);
    if (pd) attn_dropout("attn_bwd", dP, dP, SS, B, S, nh, h, p, key);
    softmax_bwd_kernel<<<(unsigned)((size_t)B * S), ROW_THREADS>>>(dP, probs, S, nh, h);
    LAUNCH_CHECK("attn_bwd softmax (B=%d S=%d nh=%d head=%d)", B, S, nh, h);
    gemm_rm("attn_bwd dq", false, false, S, hd, S, scale, dP, S, SS, k + col, ld, sQ, 0.0f,
            dq + col, ld, sQ, B);
    gemm_rm("attn_bwd dk", true, false, S, hd, S, scale, dP, S, SS, q + col, ld, sQ, 0.0f,
            dk + col, ld, sQ, B);
  }
}
