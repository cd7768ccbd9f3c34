/* bf16 copies of fp32 buffers, for bf16 products: an operand that is an
 * operand of more than one product, or that a kernel of ours writes anyway,
 * is converted once (or written as bf16 by its producer in the same pass)
 * instead of converted before each product.
 *
 * Two kinds of copies, one table:
 * - Parameters (Ops.params_at): a weight is an operand of two products per
 *   step (forward, and the backward's dx) and changes at the optimizer step,
 *   whose kernels write the copy along with the new value. The whole buffer
 *   is converted in one launch when a product finds its copy stale.
 * - Activations: the kernels that write an activation which a linear layer
 *   then multiplies (LayerNorm and residual + LayerNorm outputs, GELU,
 *   dropout, the gradients that feed the linear backward) write its bf16
 *   copy in the same pass (bf16_copy_for_write).
 * - Converted operands kept: an activation a product converts (a linear
 *   layer's input, attention's Q, K and V) is converted into a copy that
 *   is kept (bf16_copy_make), so the backward's products find it.
 * A copy is exact: the bf16 rounding of the fp32 value, as the conversion
 * before the product gives, so results are the same bits either way. Every
 * other write to a buffer (every op's outputs, and to_device, copy, zero)
 * makes the copies it touches stale (bf16_copies_written); a product then
 * converts as before. */
#include <cuda_bf16.h>

#include "ops_cuda_internal.cuh"

#define MAX_COPIES 512

struct Copy {
  const float *p; /* NULL: a free entry */
  size_t n, cap;  /* elements copied; elements b holds */
  __nv_bfloat16 *b; /* allocated on first use */
  int valid;
  int params; /* 1: a parameter buffer (converted whole when stale) */
};

static Copy g_copies[MAX_COPIES];
static int g_used; /* entries [0, g_used) may be in use */

static Copy *entry_at(const float *p) {
  for (int i = 0; i < g_used; i++)
    if (g_copies[i].p == p) return &g_copies[i];
  return NULL;
}

static Copy *free_entry(void) {
  for (int i = 0; i < g_used; i++)
    if (!g_copies[i].p) return &g_copies[i];
  return g_used < MAX_COPIES ? &g_copies[g_used++] : NULL;
}

static void drop(Copy *c) {
  dev_free(c->b, "bf16 copy");
  *c = Copy{NULL, 0, 0, NULL, 0, 0};
}

static bool overlaps(const Copy *c, const char *lo, const char *hi) {
  const char *b = (const char *)c->p, *e = (const char *)(c->p + c->n);
  return c->p && lo < e && b < hi;
}

/* b holds at least n elements (earlier products may still read the old
 * ones, so a bigger buffer waits for them). */
static void reserve(Copy *c, size_t n) {
  if (c->b && c->cap >= n) return;
  if (c->b) CUDA_CHECK(cudaDeviceSynchronize(), "bf16 copy (%zu elements)", n);
  dev_free(c->b, "bf16 copy");
  c->b = (__nv_bfloat16 *)dev_alloc(n * sizeof *c->b, "bf16 copy");
  c->cap = n;
}

/* Ops.params_at: more buffers than entries just go without a copy. */
void cuda_params_at(const float *w, size_t n) {
  Copy *c = w ? entry_at(w) : NULL;
  if (c) drop(c);
  if (!w || !n || !(c = free_entry())) return;
  *c = Copy{w, n, 0, NULL, 0, 1};
}

void bf16_copies_forget(const void *p) {
  size_t bytes = dev_size(p);
  const char *lo = (const char *)p;
  for (int i = 0; i < g_used; i++)
    if (overlaps(&g_copies[i], lo, lo + bytes)) drop(&g_copies[i]);
}

void bf16_copies_written(const void *p, size_t bytes) {
  const char *lo = (const char *)p;
  for (int i = 0; i < g_used; i++)
    if (overlaps(&g_copies[i], lo, lo + bytes)) g_copies[i].valid = 0;
}

const __nv_bfloat16 *bf16_copy_of(const float *p, size_t n) {
  for (int i = 0; i < g_used; i++) {
    Copy *c = &g_copies[i];
    if (!c->p || p < c->p || p + n > c->p + c->n) continue;
    if (!c->valid && c->params) {
      reserve(c, c->n);
      cuda_to_bf16("parameters", c->b, c->p, c->n);
      c->valid = 1;
    }
    if (c->valid) return c->b + (p - c->p);
  }
  return NULL;
}

__nv_bfloat16 *bf16_copy_for_write(const float *p, size_t n) {
  bf16_copies_written(p, n * sizeof *p);
  if (!cuda_bf16() || !n) return NULL;
  Copy *c = entry_at(p);
  if (c && c->params) return NULL; /* not an activation */
  if (!c && !(c = free_entry())) return NULL;
  c->p = p, c->n = n, c->params = 0;
  reserve(c, n);
  c->valid = 1;
  return c->b;
}

const __nv_bfloat16 *bf16_copy_make(const char *what, const float *p, size_t n) {
  const __nv_bfloat16 *have = bf16_copy_of(p, n);
  if (have) return have;
  __nv_bfloat16 *c = bf16_copy_for_write(p, n);
  if (c) cuda_to_bf16(what, c, p, n);
  return c;
}

__nv_bfloat16 *bf16_copy_for_update(const float *w, size_t extent) {
  Copy *c = entry_at(w);
  if (c && c->params && c->valid && extent <= c->n) return c->b;
  bf16_copies_written(w, extent * sizeof *w);
  return NULL;
}
