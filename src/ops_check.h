/* Argument checks both backends make, with the same messages, so that a bad
 * call dies the same way on the CPU and on the GPU. C and C++ (CUDA) alike;
 * in C++ include it inside extern "C" {}. */
#ifndef BERTRAIN_OPS_CHECK_H
#define BERTRAIN_OPS_CHECK_H

#include "util.h"

/* Dies unless every dimension is positive. */
static inline void ops_check_dims(const char *op, int a, int b, int c) {
  if (a <= 0 || b <= 0 || c <= 0)
    die("ops: %s: dimensions must be positive (%d, %d, %d)", op, a, b, c);
}

/* For ops that run as no-ops on empty input: 1 when a dimension is 0;
 * dies when one is negative. */
static inline int ops_no_work(const char *op, int a, int b, int c) {
  if (a < 0 || b < 0 || c < 0)
    die("ops: %s: dimensions must not be negative (%d, %d, %d)", op, a, b, c);
  return a == 0 || b == 0 || c == 0;
}

static inline void ops_check_dropout(const char *op, float p) {
  if (!(p >= 0.0f && p < 1.0f))
    die("ops: %s: dropout probability must be in [0, 1) (got %g)", op, p);
}

/* With bias (the column sums of a gelu_bwd), n elements must be rows of c. */
static inline void ops_check_rows(const char *op, const void *bias, size_t n, int c) {
  if (bias && (c <= 0 || n % (size_t)c != 0))
    die("ops: %s: %zu elements are not rows of %d", op, n, c);
}

/* Cross-entropy: positive sizes, rows of v within the row stride ld. */
static inline void ops_check_xent(const char *op, int n, int v, int ld) {
  ops_check_dims(op, n, v, 1);
  if (ld < v) die("ops: %s: row stride %d is less than the %d columns", op, ld, v);
}

/* Attention: positive sizes, nh heads of hd columns within the row stride
 * ld, a dropout probability. */
static inline void ops_check_attn(const char *op, int ld, int B, int S, int nh, int hd, float p) {
  ops_check_dims(op, B, S, nh);
  if (hd <= 0 || ld < nh * hd)
    die("ops: %s: head_dim %d and row stride %d do not fit %d heads", op, hd, ld, nh);
  ops_check_dropout(op, p);
}

#endif
