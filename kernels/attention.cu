/* Self-attention. Each product is one batched cuBLAS call over all B x nh
 * (sample, head) pairs (Q, K, V of head h at column h*hd with row stride
 * ld; probs of head h at offset h*S*S with sample stride nh*S*S), and
 * everything between the products runs in one launch too: softmax rows,
 * dropout (its element index is the flat index into probs [B, nh, S, S],
 * so it is the elementwise dropout of the whole tensor) and the softmax
 * backward. Dropped probabilities and their gradient live in scratch
 * memory of probs' size. */
#include <math.h>

#include "ops_cuda_internal.cuh"

/* One warp per row of probs [B, nh, S, S] (in place): add the mask, then
 * softmax with the max taken out and the sum in double. */
static __global__ void softmax_rows_kernel(float *P, const int32_t *mask, int S, int nh,
                                           size_t nrows) {
  const size_t R = warp_row();
  if (R >= nrows) return;
  const int lane = threadIdx.x % 32;
  float *row = P + R * S;
  const int32_t *mrow = mask ? mask + (R / S / nh) * S : NULL;
  float mx = -INFINITY;
  for (int j = lane; j < S; j += 32) {
    float v = row[j];
    if (mrow && mrow[j] == 0) v += ATTN_MASK_NEG;
    row[j] = v;
    mx = fmaxf(mx, v);
  }
  mx = warp_max(mx);
  double sum = 0.0;
  for (int j = lane; j < S; j += 32) {
    float e = expf(row[j] - mx);
    row[j] = e;
    sum += e;
  }
  float inv = (float)(1.0 / warp_sum(sum));
  for (int j = lane; j < S; j += 32) row[j] *= inv;
}

/* One warp per row of [B, nh, S, S]: dS = P * (dP - rowsum(P * dP)), in
 * place in dP. */
static __global__ void softmax_bwd_kernel(float *dP, const float *probs, int S, size_t nrows) {
  const size_t R = warp_row();
  if (R >= nrows) return;
  const int lane = threadIdx.x % 32;
  const float *pr = probs + R * S;
  float *dr = dP + R * S;
  double dot = 0.0;
  for (int j = lane; j < S; j += 32) dot += (double)pr[j] * dr[j];
  float fdot = (float)warp_sum(dot);
  for (int j = lane; j < S; j += 32) dr[j] = pr[j] * (dr[j] - fdot);
}


void cuda_attn_fwd(float *ctx, float *probs, const float *q, const float *k, const float *v,
                   int ld, const int32_t *mask, int B, int S, int nh, int hd, float p,
                   DropoutKey key) {
  ops_check_attn("attn_fwd", ld, B, S, nh, hd, p);
  const float scale = 1.0f / sqrtf((float)hd);
  const int H = nh * hd;
  const long long SS = (long long)S * S, sQ = (long long)S * ld, sP = nh * SS, sC = (long long)S * H;
  const size_t all = (size_t)B * nh * SS;
  gemm_rm_grid("attn_fwd scores", false, true, S, S, hd, scale, Mat{q, ld, sQ, hd},
               Mat{k, ld, sQ, hd}, 0.0f, Mat{probs, S, sP, SS}, B, nh);
  const size_t rows = (size_t)B * nh * S;
  softmax_rows_kernel<<<warp_rows_grid("attn_fwd softmax", rows), THREADS>>>(probs, mask, S, nh,
                                                                             rows);
  LAUNCH_CHECK("attn_fwd softmax (B=%d S=%d nh=%d)", B, S, nh);
  const float *P = probs;
  if (p > 0.0f) {
    float *pd = (float *)cuda_scratch(all * sizeof(float));
    cuda_dropout_fwd(pd, probs, all, p, key);
    P = pd;
  }
  gemm_rm_grid("attn_fwd ctx", false, false, S, hd, S, 1.0f, Mat{P, S, sP, SS}, Mat{v, ld, sQ, hd},
               0.0f, Mat{ctx, H, sC, hd}, B, nh);
}

/* With Pd = dropout(P): dV = Pd^T dC; dPd = dC V^T; dP = dropout'(dPd);
 * dScores = P * (dP - rowsum(P * dP)); dQ = dScores K / sqrt(hd);
 * dK = dScores^T Q / sqrt(hd). */
void cuda_attn_bwd(float *dq, float *dk, float *dv, const float *dctx, const float *probs,
                   const float *q, const float *k, const float *v, int ld, int B, int S, int nh,
                   int hd, float p, DropoutKey key) {
  ops_check_attn("attn_bwd", ld, B, S, nh, hd, p);
  const float scale = 1.0f / sqrtf((float)hd);
  const int H = nh * hd;
  const long long SS = (long long)S * S, sQ = (long long)S * ld, sP = nh * SS, sC = (long long)S * H;
  const size_t all = (size_t)B * nh * SS;
  float *dP = (float *)cuda_scratch((p > 0.0f ? 2 : 1) * all * sizeof(float));
  const float *P = probs;
  if (p > 0.0f) {
    float *pd = dP + all;
    cuda_dropout_fwd(pd, probs, all, p, key);
    P = pd;
  }
  /* dC is an operand of two products, dP below too: in bf16 converted once */
  const Mat dC = mat_bf16("attn_bwd dctx", 3, Mat{dctx, H, sC, hd}, S, hd, B, nh);
  gemm_rm_grid("attn_bwd dv", true, false, S, hd, S, 1.0f, Mat{P, S, sP, SS}, dC, 0.0f,
               Mat{dv, ld, sQ, hd}, B, nh);
  gemm_rm_grid("attn_bwd dprobs", false, true, S, S, hd, 1.0f, dC, Mat{v, ld, sQ, hd}, 0.0f,
               Mat{dP, S, sP, SS}, B, nh);
  if (p > 0.0f) cuda_dropout_bwd(dP, dP, all, p, key);
  const size_t rows = (size_t)B * nh * S;
  softmax_bwd_kernel<<<warp_rows_grid("attn_bwd softmax", rows), THREADS>>>(dP, probs, S, rows);
  LAUNCH_CHECK("attn_bwd softmax (B=%d S=%d nh=%d)", B, S, nh);
  const Mat dPm = mat_bf16("attn_bwd dscores", 2, Mat{dP, S, sP, SS}, S, S, B, nh);
  gemm_rm_grid("attn_bwd dq", false, false, S, hd, S, scale, dPm, Mat{k, ld, sQ, hd}, 0.0f,
               Mat{dq, ld, sQ, hd}, B, nh);
  gemm_rm_grid("attn_bwd dk", true, false, S, hd, S, scale, dPm, Mat{q, ld, sQ, hd}, 0.0f,
               Mat{dk, ld, sQ, hd}, B, nh);
}
