/* bf16 copies of the models' parameter buffers, for bf16 products: a
 * weight is an operand of two products per step (forward and the
 * backward's dx) and changes only at the optimizer step, so it is
 * converted once per step (by the optimizer kernel itself, as it writes
 * the new value) instead of before every product.
 *
 * A copy is valid until its buffer is written by anything but the
 * optimizer (to_device, copy, zero, add, scale: the ops that can write a
 * parameter buffer); the next product that needs it then converts the
 * whole buffer in one launch. */
#include <cuda_bf16.h>

#include "ops_cuda_internal.cuh"

#define MAX_SHADOWS 4

struct Shadow {
  const float *base; /* NULL: free slot */
  size_t n;
  __nv_bfloat16 *twin; /* allocated on first use */
  int valid;
};

static Shadow g_sh[MAX_SHADOWS];

static Shadow *slot_of(const float *base) {
  for (int i = 0; i < MAX_SHADOWS; i++)
    if (g_sh[i].base == base) return &g_sh[i];
  return NULL;
}

static void drop(Shadow *s) {
  dev_free(s->twin, "bf16 parameter copy");
  *s = Shadow{NULL, 0, NULL, 0};
}

/* Ops.params_at: more buffers than slots just go without a copy. */
void cuda_params_at(const float *w, size_t n) {
  Shadow *s = w ? slot_of(w) : NULL;
  if (s) drop(s);
  if (!w || !n || !(s = slot_of(NULL))) return;
  *s = Shadow{w, n, NULL, 0};
}

void shadow_forget(const void *p) {
  Shadow *s = p ? slot_of((const float *)p) : NULL;
  if (s) drop(s);
}

void shadow_written(const void *p, size_t bytes) {
  const char *lo = (const char *)p, *hi = lo + bytes;
  for (int i = 0; i < MAX_SHADOWS; i++) {
    const char *b = (const char *)g_sh[i].base, *e = b + g_sh[i].n * sizeof(float);
    if (g_sh[i].base && lo < e && b < hi) g_sh[i].valid = 0;
  }
}

const __nv_bfloat16 *shadow_of(const float *w, size_t count) {
  for (int i = 0; i < MAX_SHADOWS; i++) {
    Shadow *s = &g_sh[i];
    if (!s->base || w < s->base || w + count > s->base + s->n) continue;
    if (!s->twin) s->twin = (__nv_bfloat16 *)dev_alloc(s->n * sizeof *s->twin, "bf16 parameter copy");
    if (!s->valid) {
      cuda_to_bf16("parameters", s->twin, s->base, s->n);
      s->valid = 1;
    }
    return s->twin + (w - s->base);
  }
  return NULL;
}

__nv_bfloat16 *shadow_for_update(const float *w, size_t extent) {
  Shadow *s = slot_of(w);
  if (s && s->valid && extent <= s->n) return s->twin;
  shadow_written(w, extent * sizeof(float));
  return NULL;
}
