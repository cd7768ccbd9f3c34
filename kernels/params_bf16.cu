/* bf16 copies of the models' parameter buffers (Ops.params_at), for bf16
 * products: a weight is an operand of two products per step (forward, and
 * the backward's dx) and changes only at the optimizer step, whose kernels
 * write the copy along with the new value; so it is converted once per
 * step, not before every product. Any other write to a parameter buffer
 * (to_device, copy, zero, or an op's output: every op reports what it
 * writes with WRITES) makes its copy stale, and the next product that
 * needs it converts the whole buffer in one launch. */
#include <cuda_bf16.h>

#include "ops_cuda_internal.cuh"

#define MAX_COPIES 4 /* models alive at once; more go without a copy */

struct Copy {
  const float *p; /* NULL: a free entry */
  size_t n;
  __nv_bfloat16 *b; /* allocated on first use */
  int valid;
};

static Copy g_copies[MAX_COPIES];

static Copy *entry_at(const float *p) {
  for (int i = 0; i < MAX_COPIES; i++)
    if (g_copies[i].p == p) return &g_copies[i];
  return NULL;
}

static void drop(Copy *c) {
  dev_free(c->b, "bf16 parameter copy");
  *c = Copy{NULL, 0, NULL, 0};
}

static bool overlaps(const Copy *c, const char *lo, const char *hi) {
  const char *b = (const char *)c->p, *e = (const char *)(c->p + c->n);
  return c->p && lo < e && b < hi;
}

void cuda_params_at(const float *w, size_t n) {
  Copy *c = w ? entry_at(w) : NULL;
  if (c) drop(c);
  if (!w || !n || !(c = entry_at(NULL))) return;
  *c = Copy{w, n, NULL, 0};
}

void params_forget(const void *p) {
  size_t bytes = dev_size(p);
  const char *lo = (const char *)p;
  for (int i = 0; i < MAX_COPIES; i++)
    if (overlaps(&g_copies[i], lo, lo + bytes)) drop(&g_copies[i]);
}

void params_written(const void *p, size_t bytes) {
  const char *lo = (const char *)p;
  for (int i = 0; i < MAX_COPIES; i++)
    if (overlaps(&g_copies[i], lo, lo + bytes)) g_copies[i].valid = 0;
}

const __nv_bfloat16 *params_bf16(const float *p, size_t n) {
  for (int i = 0; i < MAX_COPIES; i++) {
    Copy *c = &g_copies[i];
    if (!c->p || p < c->p || p + n > c->p + c->n) continue;
    if (!c->b) c->b = (__nv_bfloat16 *)dev_alloc(c->n * sizeof *c->b, "bf16 parameter copy");
    if (!c->valid) {
      cuda_to_bf16("parameters", c->b, c->p, c->n);
      c->valid = 1;
    }
    return c->b + (p - c->p);
  }
  return NULL;
}

__nv_bfloat16 *params_bf16_for_update(const float *w, size_t extent) {
  Copy *c = entry_at(w);
  if (c && c->valid && extent <= c->n) return c->b;
  params_written(w, extent * sizeof *w);
  return NULL;
}
