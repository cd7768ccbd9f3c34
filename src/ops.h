/* The operations BERT training needs, as a table of function pointers that
 * each backend fills (ops_cpu(): C + OpenBLAS + OpenMP; later CUDA). The
 * model is written once against this table.
 *
 * Contract:
 * - Memory. Every float / int32_t pointer argument is DEVICE memory from
 *   ops->alloc (on the CPU backend that is ordinary host memory, but the model
 *   must not rely on it). Pointer arithmetic on device pointers is fine; the
 *   host never reads or writes their elements: it moves data with to_device /
 *   to_host / copy and asks for results (losses, norms) through small device
 *   buffers. Only ParamRange / OptParams / DropoutKey are host values.
 * - Layouts. Row-major. Activations are [rows, cols] with rows = B*S
 *   (sample outermost, then position). Linear weights are [out, in] as in
 *   PyTorch (y = x W^T + b), so HF checkpoints load without transposes, the
 *   tied MLM decoder is linear_fwd with W = word embeddings (stored with
 *   ParamTable.vocab_rows rows, the rows past V zero, as is the bias), and a
 *   fused QKV weight is Wq, Wk, Wv stacked as [3H, H]. Attention Q, K, V are
 *   [B, S, heads*head_dim] with a row stride ld (H when separate, 3H when they
 *   are the thirds of a fused QKV output); head h is columns h*hd..h*hd+hd-1.
 *   Attention probabilities are [B, heads, S, S].
 * - Gradients. Parameter gradients (dW, db, dgamma, dbeta, embedding tables)
 *   ALWAYS ACCUMULATE (+=): zero them once per optimizer step, which also gives
 *   gradient accumulation over micro-batches. Activation gradients are
 *   OVERWRITTEN (=), except linear_bwd's dx (+= when accumulate_dx, for the
 *   residual and Q/K/V fan-out) and gather_bwd's dx (always +=, since the MLM
 *   and CLS gathers read the same sequence output).
 * - Aliasing. Elementwise ops (add, gelu, tanh, dropout) and layernorm_bwd's
 *   dx / dy, xent_bwd's dlogits / logits may alias; nothing else may.
 * - Sizes are ints for dimensions and size_t for flat element counts.
 * - Determinism. For fixed inputs every op gives bit-identical results from
 *   run to run and for any thread count (CPU: fixed-block reductions and
 *   fixed GEMM tiles over single-threaded OpenBLAS, no atomics). Scatter-adds (embedding, gather backward) add in row order.
 * - Errors (bad ids, sizes) die() with a message where the backend can see
 *   them; the model still validates ids on the host before upload. */
#ifndef BERTRAIN_OPS_H
#define BERTRAIN_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "dropout_rng.h"

/* Added to attention scores at padded key positions (input_mask 0), as the
 * original BERT and older HF versions do; current HF adds the float minimum
 * instead. Both give probabilities of exactly 0 in float32 unless scores
 * within a row differ by more than about 9900. */
#define ATTN_MASK_NEG (-10000.0f)

/* One parameter tensor in the flat parameter buffer (host metadata). */
typedef struct ParamRange {
  size_t offset, count; /* elements */
  int decay;            /* 1: weight decay applies and, for LAMB, the trust ratio;
                           0 (biases, LayerNorm): neither */
} ParamRange;

/* Optimizer hyper-parameters for one step (host values). */
typedef struct OptParams {
  float lr, beta1, beta2, eps, weight_decay;
  float grad_scale;    /* gradients are multiplied by this first (clipping); 1 = none */
  int step;            /* 1 for the first step; used for bias correction */
  int bias_correction; /* 1: divide m, v by (1 - beta^step); 0: original BERT */
  /* NULL, or the gradient's sum of squares in the backend's memory
   * (sumsq's out): the gradient is then also scaled by
   * optim_clip_factor(*grad_sumsq, max_norm) (optim_moments.h), taken where
   * the step runs, so that the host does not wait for the norm; when the
   * norm is not finite the step leaves w, m and v as they are. */
  const float *grad_sumsq;
  float max_norm; /* 0: no clipping */
} OptParams;

/* What a backend runs on, for benchmark reports. */
typedef struct DeviceInfo {
  char name[128];
  double peak_bf16_flops; /* dense bf16 tensor FLOP/s; 0 when unknown (CPU) */
  char peak_basis[96];    /* how peak_bf16_flops was found */
  size_t peak_bytes;      /* most device memory the backend held at once; 0: not tracked */
  unsigned long long launches; /* kernels and library products issued so far; 0: not counted */
} DeviceInfo;

typedef struct Ops {
  const char *name;

  /* ---- memory ---- */
  void *(*alloc)(size_t bytes); /* zero-filled; dies on failure */
  /* An activation buffer, sized and addressed as fp32 like alloc's. The
   * backend may store its elements in another type: with set_bf16 on at
   * its allocation, the CUDA backend keeps them as bf16 (half the memory
   * and traffic); to_device / to_host / zero / copy still take fp32 values
   * and fp32 byte counts. Ops never mix such buffers with plain ones among
   * their activation arguments. */
  void *(*alloc_act)(size_t bytes);
  void (*free)(void *p);
  void (*zero)(void *p, size_t bytes);
  void (*to_device)(void *dst, const void *host_src, size_t bytes);
  void (*to_host)(void *host_dst, const void *src, size_t bytes);
  void (*copy)(void *dst, const void *src, size_t bytes); /* device to device */
  void (*sync)(void);           /* wait for all queued work */
  void (*set_threads)(int n);   /* CPU threads (OpenMP); no-op on GPUs */
  /* 1: matrix products may use TF32 tensor cores (10-bit mantissa inputs,
   * fp32 accumulation: about 1e-3 relative error, much faster); 0 (the
   * default): true fp32. No-op on the CPU. */
  void (*set_tf32)(int on);
  /* 1: bf16 mixed precision: activation buffers allocated from now on
   * (alloc_act) hold bf16, matrix products multiply bf16 on the tensor
   * cores with fp32 accumulation, and the elementwise ops compute in fp32
   * from and to bf16 storage; parameters, their gradients and the
   * optimizer state stay fp32 (about 1e-2 relative error). Set it before
   * allocating activations (switching with some allocated dies). GPUs
   * only: the CPU backend dies on 1. */
  void (*set_bf16)(int on);
  /* w[0, n) holds a model's parameters (NULL: none). They change only
   * through to_device, copy, zero, add, scale and the optimizer, so a
   * backend may keep them converted for its products between changes (the
   * CUDA backend keeps a bf16 copy for bf16 products, updated by the
   * optimizer as it writes). Freeing w ends it. */
  void (*params_at)(const float *w, size_t n);
  void (*device_info)(DeviceInfo *out);
  /* Timing on the device's clock (CUDA events; the host clock on the CPU):
   * mark(i) stamps slot i (0..3) after the work queued so far; mark_ms(a, b)
   * waits for stamp b and gives the milliseconds from stamp a to b. */
  void (*mark)(int slot);
  double (*mark_ms)(int from, int to);

  /* ---- linear: y[n,out] = x[n,in] W[out,in]^T + b[out]; b may be NULL ---- */
  void (*linear_fwd)(float *y, const float *x, const float *w, const float *b, int n, int in,
                     int out);
  /* dx = (or += when accumulate_dx) dy W;  dw += dy^T x;  db += column sums
   * of dy. dx, dw or db may be NULL to skip. */
  void (*linear_bwd)(float *dx, float *dw, float *db, const float *dy, const float *x,
                     const float *w, int n, int in, int out, int accumulate_dx);

  /* ---- embeddings: out[b,s] = (wte[word] + wtt[type]) + wpe[s] (HF order).
   * ids are [B,S]; type_ids may be NULL (all 0); positions are 0..S-1, so
   * wpe needs at least S rows. ---- */
  void (*embed_fwd)(float *out, const int32_t *word_ids, const int32_t *type_ids,
                    const float *wte, const float *wpe, const float *wtt, int B, int S, int H,
                    int vocab, int ntypes);
  /* dwte[word] += dout, dwpe[s] += dout, dwtt[type] += dout: the CPU adds in
   * token order, the GPU in a fixed order of its own (kernels/embedding.cu).
   * vocab and ntypes are the tables' rows; ids were checked by embed_fwd. */
  void (*embed_bwd)(float *dwte, float *dwpe, float *dwtt, const float *dout,
                    const int32_t *word_ids, const int32_t *type_ids, int B, int S, int H,
                    int vocab, int ntypes);

  /* ---- layernorm over the last dimension, biased variance, eps inside the
   * sqrt (BERT: 1e-12). Saves mean[n], rstd[n] for the backward. ---- */
  void (*layernorm_fwd)(float *out, float *mean, float *rstd, const float *x,
                        const float *gamma, const float *beta, int n, int c, float eps);
  /* dx = ... (overwrite); dgamma, dbeta += ... */
  void (*layernorm_bwd)(float *dx, float *dgamma, float *dbeta, const float *dy,
                        const float *x, const float *mean, const float *rstd,
                        const float *gamma, int n, int c);

  /* ---- the end of a post-LN sub-block: sum = dropout(y) + res (dropout as
   * below, for elements key.elem_offset + i; p = 0: none), then out =
   * LayerNorm(sum) as layernorm_fwd. sum may be y. One pass on GPUs where
   * dropout, add and layernorm_fwd take three. ---- */
  void (*residual_ln_fwd)(float *out, float *sum, float *mean, float *rstd, const float *y,
                          const float *res, const float *gamma, const float *beta, int n, int c,
                          float eps, float p, DropoutKey key);
  /* Its backward: dx (the gradient of sum, which is also the residual's) as
   * layernorm_bwd (overwrite; may be dy; dgamma, dbeta +=), and dbranch =
   * dropout'(dx), the gradient of y (p = 0: a copy of dx). dbranch may be
   * NULL to skip it. */
  void (*residual_ln_bwd)(float *dx, float *dbranch, float *dgamma, float *dbeta,
                          const float *dy, const float *sum, const float *mean,
                          const float *rstd, const float *gamma, int n, int c, float p,
                          DropoutKey key);

  /* ---- elementwise ---- */
  void (*add)(float *out, const float *a, const float *b, size_t n); /* residual */
  void (*gelu_fwd)(float *out, const float *x, size_t n);            /* exact erf GELU */
  /* dbias (may be NULL): += the column sums of dx, n / c rows of c: the
   * bias gradient of the product before the GELU, as linear_bwd's db would
   * add it, taken in the same pass (on GPUs, a read of dx fewer). */
  void (*gelu_bwd)(float *dx, float *dbias, const float *dy, const float *x, size_t n, int c);
  void (*tanh_fwd)(float *out, const float *x, size_t n);
  void (*tanh_bwd)(float *dx, const float *dy, const float *y, size_t n); /* y = tanh(x) */
  void (*scale)(float *x, size_t n, float s);                            /* x *= s */

  /* ---- dropout: out = x * keep / (1 - p), keep from dropout_rng.h for
   * elements key.elem_offset + i. p = 0 copies. The backward recomputes the
   * mask from the same key. ---- */
  void (*dropout_fwd)(float *out, const float *x, size_t n, float p, DropoutKey key);
  void (*dropout_bwd)(float *dx, const float *dy, size_t n, float p, DropoutKey key);

  /* ---- self-attention: scores = Q K^T / sqrt(hd) + ATTN_MASK_NEG where
   * mask[b, key] == 0; probs = softmax over keys (saved, before dropout);
   * ctx[B,S,nh*hd] (contiguous) = dropout(probs) V. mask [B,S] may be NULL.
   * Dropout element index is the flat index into probs [B,nh,S,S]. A
   * backend may mark the dropped elements of probs by their sign bit (the
   * CUDA backend's fused path does), so |probs| is the softmax. ---- */
  void (*attn_fwd)(float *ctx, float *probs, const float *q, const float *k, const float *v,
                   int ld, const int32_t *mask, int B, int S, int nh, int hd, float p,
                   DropoutKey key);
  /* dq, dk, dv = ... (overwrite; row stride ld, may be thirds of one buffer);
   * probs as this backend's attn_fwd wrote them, with the same q, k, v. */
  void (*attn_bwd)(float *dq, float *dk, float *dv, const float *dctx, const float *probs,
                   const float *q, const float *k, const float *v, int ld, int B, int S,
                   int nh, int hd, float p, DropoutKey key);

  /* ---- row gather: out[i] = x[idx[i]] for i < n, x has rows rows of c ---- */
  void (*gather_fwd)(float *out, const float *x, const int32_t *idx, int n, int rows, int c);
  /* dx[idx[i]] += dout[i]: the CPU adds in order of i, the GPU in a fixed
   * order of its own (as embed_bwd) */
  void (*gather_bwd)(float *dx, const float *dout, const int32_t *idx, int n, int rows, int c);

  /* ---- softmax cross-entropy over rows of logits [n, v], row stride ld
   * >= v (the columns from v to ld are not read); rows with label < 0 are
   * ignored. out[3] (device) = { mean loss over counted rows (0 when none),
   * number of counted rows whose first argmax equals the label, number of
   * counted rows }. ---- */
  void (*xent_fwd)(float *out, const float *logits, const int32_t *labels, int n, int v, int ld);
  /* dlogits = scale * (softmax - onehot(label)) on counted rows, 0 on ignored
   * rows and in the columns from v to ld (so a product over the padded rows
   * adds nothing); scale = 1 / count gives the gradient of the mean loss.
   * out: NULL, or xent_fwd's out of the same rows, from the same pass over
   * them (a training step then need not call xent_fwd: on GPUs, a pass over
   * the MLM logits fewer). */
  void (*xent_bwd)(float *dlogits, float *out, const float *logits, const int32_t *labels, int n,
                   int v, int ld, float scale);

  /* ---- optimizer over the flat buffers w, g, m, v (m, v start at 0);
   * elements outside every range are left alone; the ranges must be
   * ascending and disjoint. ---- */
  /* AdamW as torch.optim.AdamW: g' = grad_scale g; m = b1 m + (1-b1) g';
   * v = b2 v + (1-b2) g'^2; if decay: w *= 1 - lr wd;
   * w -= (lr / c1) m / (sqrt(v) / sqrt(c2) + eps), c = 1 - beta^step
   * (c = 1 without bias correction). */
  void (*adamw)(float *w, const float *g, float *m, float *v, const ParamRange *r, int nr,
                const OptParams *o);
  /* LAMB: m, v as AdamW; u = (m/c1) / (sqrt(v/c2) + eps) + (decay ? wd w : 0);
   * per range, ratio = |w| / |u| when decay and both norms > 0, else 1;
   * w -= lr ratio u. */
  void (*lamb)(float *w, const float *g, float *m, float *v, const ParamRange *r, int nr,
               const OptParams *o);
  /* out[0] (device) = sum of x^2, for the global gradient norm. */
  void (*sumsq)(float *out, const float *x, size_t n);
} Ops;

const Ops *ops_cpu(void);

#endif
