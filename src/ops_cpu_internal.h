/* Shared by the ops_cpu_*.c files: the CPU implementations that ops_cpu()
 * puts in its table, and the fixed work partitions that make every
 * reduction independent of the thread count. */
#ifndef BERTRAIN_OPS_CPU_INTERNAL_H
#define BERTRAIN_OPS_CPU_INTERNAL_H

#include <math.h>

#include "ops.h"

#ifdef BERTRAIN_VECTOR_MATH
/* glibc's libmvec (2.35 on) has erff and expf four and eight at a time,
 * within 2 and 3 ulp; declared so, `omp simd` loops call them, about ten
 * times faster than the scalar calls (the GELU was a fifth of a CPU
 * fine-tuning step, the cross-entropy's exps a third of a pre-training
 * step). math.h only declares them so under -ffast-math, which we do not
 * want. CMakeLists.txt defines the macro when such a loop links. */
#pragma omp declare simd notinbranch
float erff(float);
#pragma omp declare simd notinbranch
float expf(float);
#endif

/* Column reductions (bias, gamma/beta, scatter-adds) give each task COL_CHUNK
 * columns and walk the rows in order; global sums add SUM_BLOCK-element
 * partials in block order. Neither partition depends on the thread count. */
#define COL_CHUNK 64
#define SUM_BLOCK 8192

static inline size_t min_size(size_t a, size_t b) { return a < b ? a : b; }
static inline size_t n_blocks(size_t n, size_t block) { return (n + block - 1) / block; }

/* acc[j] += sum over rows r of x[r*c + j] (rows in order, double partials). */
void cpu_colsum_acc(float *acc, const float *x, int rows, int c);

/* out[i] = x[i] / (1 - p) where dropout_rng.h's mask keeps element e0 + i,
 * else 0, for i < n; out may be x. One thread. */
void cpu_drop_run(float *out, const float *x, size_t n, float p, DropoutKey k, uint64_t e0);

/* ops_cpu_linear.c */
void cpu_linear_fwd(float *y, const float *x, const float *w, const float *b, int n, int in,
                    int out);
void cpu_linear_bwd(float *dx, float *dw, float *db, const float *dy, const float *x,
                    const float *w, int n, int in, int out, int accumulate_dx);
void cpu_attn_fwd(float *ctx, float *probs, const float *q, const float *k, const float *v,
                  int ld, const int32_t *mask, int B, int S, int nh, int hd, float p,
                  DropoutKey key);
void cpu_attn_bwd(float *dq, float *dk, float *dv, const float *dctx, const float *probs,
                  const float *q, const float *k, const float *v, int ld, int B, int S, int nh,
                  int hd, float p, DropoutKey key);

/* ops_cpu_rows.c */
void cpu_embed_fwd(float *out, const int32_t *word_ids, const int32_t *type_ids,
                   const float *wte, const float *wpe, const float *wtt, int B, int S, int H,
                   int vocab, int ntypes);
void cpu_embed_bwd(float *dwte, float *dwpe, float *dwtt, const float *dout,
                   const int32_t *word_ids, const int32_t *type_ids, int B, int S, int H, int vocab,
                   int ntypes);
void cpu_layernorm_fwd(float *out, float *mean, float *rstd, const float *x, const float *gamma,
                       const float *beta, int n, int c, float eps);
void cpu_layernorm_bwd(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                       const float *mean, const float *rstd, const float *gamma, int n, int c);
void cpu_gather_fwd(float *out, const float *x, const int32_t *idx, int n, int rows, int c);
void cpu_gather_bwd(float *dx, const float *dout, const int32_t *idx, int n, int rows, int c);
void cpu_xent_fwd(float *out, const float *logits, const int32_t *labels, int n, int v, int ld);
void cpu_xent_bwd(float *dlogits, float *out, const float *logits, const int32_t *labels, int n,
                  int v, int ld, float scale);

/* ops_cpu_optim.c */
void cpu_adamw(float *w, const float *g, float *m, float *v, const ParamRange *r, int nr,
               const OptParams *o);
void cpu_lamb(float *w, const float *g, float *m, float *v, const ParamRange *r, int nr,
              const OptParams *o);
void cpu_sumsq(float *out, const float *x, size_t n);

#endif
