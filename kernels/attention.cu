/* Self-attention. Each product is one batched cuBLAS call over all B x nh
 * (sample, head) pairs (Q, K, V of head h at column h*hd with row stride
 * ld; probs of head h at offset h*S*S with sample stride nh*S*S), and
 * everything between the products is one launch too: the softmax rows,
 * which also write the dropped probabilities (dropout's element index is
 * the flat index into probs [B, nh, S, S], so it is the elementwise dropout
 * of the whole tensor), and the softmax backward, which applies the
 * dropout's backward as it reads dP. Q, K, V, ctx, probs and the gradients are activations: fp32,
 * or bf16 activation buffers (activations.cu), which the bf16 products
 * read and write as they are. Dropped probabilities and their gradient
 * live in scratch memory of probs' size. bf16 activations at training's
 * shapes take attention_fused.cu's kernels instead (attn_fused_fits). */
#include <math.h>

#include "ops_cuda_internal.cuh"

/* The attention dropout: element e of [B, nh, S, S] kept (scaled by s) or
 * dropped, for the forward's dropped probabilities and, applied to dP as
 * the softmax backward reads it, for the backward. */
struct AttnDropout {
  float p, s;
  DropoutKey key;
};

/* One warp per row of probs [B, nh, S, S] (in place): add the mask, then
 * softmax with the max taken out and the sum in double; and the row's
 * dropped probabilities (the dropout of the stored ones) into drop, the
 * next product's operand (NULL: none, when it is probs itself). */
template <class T, class TD>
static __global__ void softmax_rows_kernel(T *P, TD *drop, const int32_t *mask, int S, int nh,
                                           size_t nrows, AttnDropout ad) {
  const size_t R = warp_row();
  if (R >= nrows) return;
  T *row = P + R * S;
  const int32_t *mrow = mask ? mask + (R / S / nh) * S : NULL;
  auto masked = [&](int j, float v) { return mrow && mrow[j] == 0 ? v + ATTN_MASK_NEG : v; };
  float mx = -INFINITY;
  row_each(row, S, [&](int j, float v) { mx = fmaxf(mx, masked(j, v)); });
  mx = warp_max(mx);
  double sum = 0.0;
  row_each(row, S, [&](int j, float v) { sum += expf(masked(j, v) - mx); });
  float inv = (float)(1.0 / warp_sum(sum));
  row_put(row, S, [&](int j) { return expf(masked(j, ldf(&row[j])) - mx) * inv; });
  if (!drop) return;
  __syncwarp(); /* the dropped row reads probabilities other lanes stored */
  DropoutWalk walk;
  walk.key = ad.key, walk.p = ad.p;
  const uint64_t e0 = ad.key.elem_offset + R * S;
  row_put(drop + R * S, S, [&](int j) {
    float pj = ldf(&row[j]);
    return ad.p == 0.0f ? pj : walk.keep(e0 + j) ? pj * ad.s : 0.0f;
  });
}

/* The fast paths below keep a row in registers: lane l owns the quads
 * (4 consecutive elements) q = l, l + 32, ..., at most NQ of them, so a row
 * of S <= 128 NQ elements is read once and written once, one vector access
 * per quad, with every lane busy at S = 128. The quads must be aligned to
 * their size (rows of S % 4 == 0 elements on 16-byte aligned buffers). */

/* Quads per lane for rows of S elements (1, 2 or 4), or 0 when the fast
 * paths do not take them. */
static int quads_per_lane(int S, std::initializer_list<const void *> bufs) {
  if (S % 4 != 0 || S > 512) return 0;
  for (const void *b : bufs)
    if (b && !aligned16(b)) return 0;
  return S <= 128 ? 1 : S <= 256 ? 2 : 4;
}

/* softmax_rows_kernel with the row in registers. The sum runs over each
 * lane's elements in quad order, then the warp: another fixed order than
 * the general kernel's for bf16, still deterministic. */
template <int NQ, class T, class TD>
static __global__ void softmax_rows_quads(T *P, TD *drop, const int32_t *mask, int S, int nh,
                                          size_t nrows, AttnDropout ad) {
  const size_t R = warp_row();
  if (R >= nrows) return;
  const int lane = threadIdx.x % 32, nq = S / 4;
  Quad<T> *row = reinterpret_cast<Quad<T> *>(P + R * S);
  const Quad<int32_t> *mrow =
      mask ? reinterpret_cast<const Quad<int32_t> *>(mask + (R / S / nh) * S) : nullptr;
  float x[NQ][4] = {};
  float mx = -INFINITY;
#pragma unroll
  for (int k = 0; k < NQ; k++) {
    const int q = lane + 32 * k;
    if (q >= nq) break;
    const Quad<T> v = row[q];
    const Quad<int32_t> m = mrow ? mrow[q] : Quad<int32_t>{{1, 1, 1, 1}};
    for (int i = 0; i < 4; i++) {
      x[k][i] = m.v[i] == 0 ? ldf(&v.v[i]) + ATTN_MASK_NEG : ldf(&v.v[i]);
      mx = fmaxf(mx, x[k][i]);
    }
  }
  mx = warp_max(mx);
  double sum = 0.0;
#pragma unroll
  for (int k = 0; k < NQ && lane + 32 * k < nq; k++)
    for (int i = 0; i < 4; i++) {
      x[k][i] = expf(x[k][i] - mx);
      sum += x[k][i];
    }
  const float inv = (float)(1.0 / warp_sum(sum));
  const uint64_t e0 = ad.key.elem_offset + R * S;
#pragma unroll
  for (int k = 0; k < NQ; k++) {
    const int q = lane + 32 * k;
    if (q >= nq) break;
    Quad<T> pr;
    for (int i = 0; i < 4; i++) store_as(&pr.v[i], x[k][i] * inv);
    row[q] = pr;
    if (!drop) continue;
    /* dropped from the stored (rounded) probabilities, as the general kernel */
    bool keep[4] = {true, true, true, true};
    if (ad.p != 0.0f) quad_keeps(ad.key, ad.p, e0 + 4 * q, keep);
    Quad<TD> dr;
    for (int i = 0; i < 4; i++) {
      const float pj = ldf(&pr.v[i]);
      store_as(&dr.v[i], ad.p == 0.0f ? pj : keep[i] ? pj * ad.s : 0.0f);
    }
    reinterpret_cast<Quad<TD> *>(drop + R * S)[q] = dr;
  }
}

/* One warp per row of [B, nh, S, S]: dS = P * (dP' - rowsum(P * dP')) with
 * dP' = dropout'(dP), into out: dP itself (in place), or its bf16 operand
 * buffer when dS is only that (bf16 products). dP is fp32, or bf16 with
 * bf16 products. */
template <class TO, class TD, class TP>
static __global__ void softmax_bwd_kernel(TO *out, const TD *dP, const TP *probs, int S,
                                          size_t nrows, AttnDropout ad) {
  const size_t R = warp_row();
  if (R >= nrows) return;
  const TP *pr = probs + R * S;
  const TD *dr = dP + R * S;
  const uint64_t e0 = ad.key.elem_offset + R * S;
  DropoutWalk walk;
  walk.key = ad.key, walk.p = ad.p;
  auto dropped = [&](int j, float d) {
    return ad.p == 0.0f ? d : walk.keep(e0 + j) ? __fmul_rn(d, ad.s) : 0.0f;
  };
  double dot = 0.0;
  row_each2(pr, dr, S, [&](int j, float p, float d) { dot += (double)p * dropped(j, d); });
  float fdot = (float)warp_sum(dot);
  __syncwarp(); /* dP may be out: every lane's reads above come before any write */
  row_put(out + R * S, S, [&](int j) { return ldf(&pr[j]) * (dropped(j, ldf(&dr[j])) - fdot); });
}

/* softmax_bwd_kernel with the row in registers (softmax_rows_quads' quads).
 * Each lane writes only the quads it read, so out may be dP. */
template <int NQ, class TO, class TD, class TP>
static __global__ void softmax_bwd_quads(TO *out, const TD *dP, const TP *probs, int S,
                                         size_t nrows, AttnDropout ad) {
  const size_t R = warp_row();
  if (R >= nrows) return;
  const int lane = threadIdx.x % 32, nq = S / 4;
  const Quad<TP> *pr = reinterpret_cast<const Quad<TP> *>(probs + R * S);
  const Quad<TD> *dr = reinterpret_cast<const Quad<TD> *>(dP + R * S);
  const uint64_t e0 = ad.key.elem_offset + R * S;
  float p[NQ][4] = {}, d[NQ][4] = {}; /* = {}: g++ cannot see that unset quads stay unread */
  /* every load first, so that they are in flight together */
#pragma unroll
  for (int k = 0; k < NQ; k++) {
    const int q = lane + 32 * k;
    if (q >= nq) break;
    const Quad<TP> pv = pr[q];
    const Quad<TD> dv = dr[q];
    for (int i = 0; i < 4; i++) p[k][i] = ldf(&pv.v[i]), d[k][i] = ldf(&dv.v[i]);
  }
  double dot = 0.0;
#pragma unroll
  for (int k = 0; k < NQ; k++) {
    const int q = lane + 32 * k;
    if (q >= nq) break;
    if (ad.p != 0.0f) {
      bool keep[4];
      quad_keeps(ad.key, ad.p, e0 + 4 * q, keep);
      for (int i = 0; i < 4; i++) d[k][i] = keep[i] ? __fmul_rn(d[k][i], ad.s) : 0.0f;
    }
    for (int i = 0; i < 4; i++) dot += (double)p[k][i] * d[k][i];
  }
  const float fdot = (float)warp_sum(dot);
#pragma unroll
  for (int k = 0; k < NQ; k++) {
    const int q = lane + 32 * k;
    if (q >= nq) break;
    Quad<TO> o;
    for (int i = 0; i < 4; i++) store_as(&o.v[i], p[k][i] * (d[k][i] - fdot));
    reinterpret_cast<Quad<TO> *>(out + R * S)[q] = o;
  }
}

/* Softmax rows (forward): the fast path when the shape allows, else the
 * general kernel. */
template <class T, class TD>
static void softmax_rows(T *P, TD *drop, const int32_t *mask, int S, int nh, size_t rows,
                         AttnDropout ad) {
  const unsigned grid = warp_rows_grid("attn_fwd softmax", rows);
  switch (quads_per_lane(S, {P, drop, mask})) {
  case 1: softmax_rows_quads<1, T, TD><<<grid, THREADS>>>(P, drop, mask, S, nh, rows, ad); break;
  case 2: softmax_rows_quads<2, T, TD><<<grid, THREADS>>>(P, drop, mask, S, nh, rows, ad); break;
  case 4: softmax_rows_quads<4, T, TD><<<grid, THREADS>>>(P, drop, mask, S, nh, rows, ad); break;
  default: softmax_rows_kernel<T, TD><<<grid, THREADS>>>(P, drop, mask, S, nh, rows, ad);
  }
}

/* Softmax rows (backward): the fast path when the shape allows, else the
 * general kernel. */
template <class TO, class TD, class TP>
static void softmax_bwd(TO *out, const TD *dP, const TP *probs, int S, size_t rows,
                        AttnDropout ad) {
  const unsigned grid = warp_rows_grid("attn_bwd softmax", rows);
  switch (quads_per_lane(S, {out, dP, probs})) {
  case 1: softmax_bwd_quads<1, TO, TD, TP><<<grid, THREADS>>>(out, dP, probs, S, rows, ad); break;
  case 2: softmax_bwd_quads<2, TO, TD, TP><<<grid, THREADS>>>(out, dP, probs, S, rows, ad); break;
  case 4: softmax_bwd_quads<4, TO, TD, TP><<<grid, THREADS>>>(out, dP, probs, S, rows, ad); break;
  default: softmax_bwd_kernel<TO, TD, TP><<<grid, THREADS>>>(out, dP, probs, S, rows, ad);
  }
}

/* Where the dropped probabilities, the A operand of the product after
 * them, go: operand buffer 0 as bf16 (bf16 products), fp32 scratch pd
 * (dropout), or nowhere (p = 0: probs itself). */
static Mat dropped_operand(const float *probs, float *pd, size_t all, int S, long long sP,
                           long long SS, float p) {
  Mat P = {probs, S, sP, SS};
  if (cuda_bf16()) P.p16 = bf16_buffer(0, all), P.rows16 = S, P.cols16 = S;
  else if (p > 0.0f) P.p = pd;
  return P;
}

/* The backward's dropped probabilities, recomputed from the saved ones into
 * dropped_operand's place. */
static Mat dropped_probs(const float *probs, float *pd, size_t all, int S, long long sP,
                         long long SS, float p, DropoutKey key) {
  const Mat P = dropped_operand(probs, pd, all, S, sP, SS, p);
  if (P.p16) {
    bool x16 = is_act16(probs);
    cuda_dropout_to_bf16((__nv_bfloat16 *)P.p16,
                         x16 ? (const void *)act16(probs) : (const void *)probs, x16, all, p, key);
  } else if (P.p != probs) {
    cuda_dropout_fwd((float *)P.p, probs, all, p, key);
  }
  return P;
}

void cuda_attn_fwd(float *ctx, float *probs, const float *q, const float *k, const float *v,
                   int ld, const int32_t *mask, int B, int S, int nh, int hd, float p,
                   DropoutKey key) {
  ops_check_attn("attn_fwd", ld, B, S, nh, hd, p);
  const bool acts16 = act_bf16("attn_fwd", {ctx, probs, q, k, v}); /* one kind, or die */
  WRITES(ctx, (size_t)B * S * nh * hd);
  WRITES(probs, (size_t)B * nh * S * S);
  if (attn_fused_fits(acts16, q, k, v, probs, ld, S, hd)) {
    attn_fused_fwd_launch(ctx, probs, q, k, v, ld, mask, B, S, nh, hd, p, key);
    return;
  }
  const float scale = 1.0f / sqrtf((float)hd);
  const int H = nh * hd;
  const long long SS = (long long)S * S, sQ = (long long)S * ld, sP = nh * SS, sC = (long long)S * H;
  const size_t all = (size_t)B * nh * SS;
  gemm_rm_grid("attn_fwd scores", false, true, S, S, hd, scale, Mat{q, ld, sQ, hd},
               Mat{k, ld, sQ, hd}, 0.0f, Mat{probs, S, sP, SS}, B, nh);
  /* the dropped probabilities come out of the softmax pass: into operand
   * buffer 0 as bf16 (bf16 products), into fp32 scratch (dropout), or none
   * (probs themselves) */
  const size_t rows = (size_t)B * nh * S;
  const AttnDropout ad = {p, p > 0.0f ? 1.0f / (1.0f - p) : 1.0f, key};
  float *pd = p > 0.0f && !cuda_bf16() ? (float *)cuda_scratch(all * sizeof(float)) : NULL;
  const Mat P = dropped_operand(probs, pd, all, S, sP, SS, p);
  by_act("attn_fwd", {probs}, [&](auto t) {
    using T = decltype(t);
    if (P.p16)
      softmax_rows(tp<T>(probs), (__nv_bfloat16 *)P.p16, mask, S, nh, rows, ad);
    else
      softmax_rows(tp<T>(probs), P.p != probs ? (float *)P.p : nullptr, mask, S, nh, rows, ad);
  });
  LAUNCH_CHECK("attn_fwd softmax (B=%d S=%d nh=%d)", B, S, nh);
  gemm_rm_grid("attn_fwd ctx", false, false, S, hd, S, 1.0f, P, Mat{v, ld, sQ, hd}, 0.0f,
               Mat{ctx, H, sC, hd}, B, nh);
}

/* dS from dP (scratch: fp32, or bf16 with bf16 products) and probs: in
 * place in dP, or (bf16 products) into operand buffer 2; returns dS as the
 * operand of the next products. */
static Mat softmax_backward(void *dP, const float *probs, size_t all, int B, int S, int nh,
                            long long sP, long long SS, AttnDropout ad) {
  const size_t rows = (size_t)B * nh * S;
  Mat dS = {(const float *)dP, S, sP, SS};
  by_act("attn_bwd", {probs}, [&](auto t) {
    using TP = decltype(t);
    if (cuda_bf16()) {
      __nv_bfloat16 *d16 = bf16_buffer(2, all);
      softmax_bwd(d16, (const __nv_bfloat16 *)dP, tp<TP>(probs), S, rows, ad);
      dS.p16 = d16, dS.rows16 = S, dS.cols16 = S;
    } else {
      softmax_bwd((float *)dP, (const float *)dP, tp<TP>(probs), S, rows, ad);
    }
  });
  LAUNCH_CHECK("attn_bwd softmax (B=%d S=%d nh=%d)", B, S, nh);
  return dS;
}

/* With Pd = dropout(P): dV = Pd^T dC; dPd = dC V^T; dP = dropout'(dPd);
 * dScores = P * (dP - rowsum(P * dP)); dQ = dScores K / sqrt(hd);
 * dK = dScores^T Q / sqrt(hd). */
void cuda_attn_bwd(float *dq, float *dk, float *dv, const float *dctx, const float *probs,
                   const float *q, const float *k, const float *v, int ld, int B, int S, int nh,
                   int hd, float p, DropoutKey key) {
  ops_check_attn("attn_bwd", ld, B, S, nh, hd, p);
  const bool acts16 = act_bf16("attn_bwd", {dq, dk, dv, dctx, probs, q, k, v}); /* one kind */
  WRITES(dq, (size_t)B * S * ld);
  WRITES(dk, (size_t)B * S * ld);
  WRITES(dv, (size_t)B * S * ld);
  if (attn_fused_fits(acts16, q, k, v, probs, ld, S, hd)) {
    attn_fused_bwd_launch(dq, dk, dv, dctx, probs, q, k, v, ld, B, S, nh, hd, p, key);
    return;
  }
  const float scale = 1.0f / sqrtf((float)hd);
  const int H = nh * hd;
  const long long SS = (long long)S * S, sQ = (long long)S * ld, sP = nh * SS, sC = (long long)S * H;
  const size_t all = (size_t)B * nh * SS;
  /* dP: the scratch, fp32 (with fp32 dropped probabilities after it), or
   * bf16 with bf16 products (the product writes it, two passes read it) */
  const bool bf16 = cuda_bf16(), pd_fp32 = p > 0.0f && !bf16;
  void *dP = cuda_scratch((pd_fp32 ? 2 : 1) * all * (bf16 ? sizeof(__nv_bfloat16) : sizeof(float)));
  const Mat P = dropped_probs(probs, (float *)dP + all, all, S, sP, SS, p, key);
  const Mat Q = {q, ld, sQ, hd}, K = {k, ld, sQ, hd}, V = {v, ld, sQ, hd};
  /* dC is an operand of two products, dS below too: in bf16 converted once */
  const Mat dC = mat_bf16("attn_bwd dctx", 3, Mat{dctx, H, sC, hd}, S, hd, B, nh);
  gemm_rm_grid("attn_bwd dv", true, false, S, hd, S, 1.0f, P, dC, 0.0f, Mat{dv, ld, sQ, hd}, B,
               nh);
  Mat dPm = {(const float *)dP, S, sP, SS};
  if (bf16) dPm.p16 = dP, dPm.same16 = true; /* a bf16 output */
  gemm_rm_grid("attn_bwd dprobs", false, true, S, S, hd, 1.0f, dC, V, 0.0f, dPm, B, nh);
  /* the dropout's backward is applied by the softmax backward as it reads dP */
  const AttnDropout ad = {p, p > 0.0f ? 1.0f / (1.0f - p) : 1.0f, key};
  const Mat dS = softmax_backward(dP, probs, all, B, S, nh, sP, SS, ad);
  gemm_rm_grid("attn_bwd dq", false, false, S, hd, S, scale, dS, K, 0.0f, Mat{dq, ld, sQ, hd}, B,
               nh);
  gemm_rm_grid("attn_bwd dk", true, false, S, hd, S, scale, dS, Q, 0.0f, Mat{dk, ld, sQ, hd}, B,
               nh);
}
