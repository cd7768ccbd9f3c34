/* Activation buffers (Ops.alloc_act). With bf16 on (set_bf16), their
 * elements are stored as bf16: the model and the ops contract address a
 * buffer as fp32 (element i of the buffer at p is p + i), so the buffer's
 * pointer is a view: host address space reserved with no memory behind it
 * (PROT_NONE), which no device code may touch; its bf16 elements live in a
 * device allocation of half the size, element i at dev + i. Every op maps
 * its activation arguments with act_bf16 / tp, and the memory ops convert
 * at the host boundary. A view that reached the device unmapped would fault
 * at once. Buffers are kept sorted by address, so a pointer is found by
 * binary search. */
#include <stdlib.h>
#include <sys/mman.h>

#include "ops_cuda_internal.cuh"

struct ActBuf {
  const char *lo, *hi; /* the fp32 view: [lo, hi) */
  int bf16;
  __nv_bfloat16 *dev; /* bf16: the elements; NULL for an fp32 buffer (lo is its memory) */
};

static ActBuf *g_bufs;
static size_t g_n, g_cap;

/* The index of the first buffer with lo > p. */
static size_t upper(const char *p) {
  size_t a = 0, b = g_n;
  while (a < b) {
    size_t m = (a + b) / 2;
    if (g_bufs[m].lo <= p) a = m + 1;
    else b = m;
  }
  return a;
}

static const ActBuf *find(const void *p) {
  size_t i = upper((const char *)p);
  if (i == 0) return NULL;
  const ActBuf *b = &g_bufs[i - 1];
  return (const char *)p < b->hi ? b : NULL;
}

size_t cuda_act_buffers(void) { return g_n; }

/* bytes of address space for a view, with no memory behind it. */
static void *reserve_view(size_t bytes) {
  void *v = mmap(NULL, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (v == MAP_FAILED) die("ops: cannot reserve %zu bytes of address space for activations", bytes);
  return v;
}

void *cuda_alloc_act(size_t bytes) {
  if (!bytes) bytes = sizeof(float);
  ActBuf b = {NULL, NULL, cuda_bf16(), NULL};
  if (b.bf16) {
    size_t n = ceil_div(bytes, sizeof(float));
    b.lo = (const char *)reserve_view(bytes);
    b.dev = (__nv_bfloat16 *)dev_alloc(n * sizeof *b.dev, "bf16 activations");
    CUDA_CHECK(cudaMemset(b.dev, 0, n * sizeof *b.dev), "bf16 activations memset (%zu)", n);
  } else {
    b.lo = (const char *)dev_alloc(bytes, "activations");
    CUDA_CHECK(cudaMemset((void *)b.lo, 0, bytes), "activations memset (%zu bytes)", bytes);
  }
  b.hi = b.lo + bytes;
  grow((void **)&g_bufs, &g_cap, g_n + 1, sizeof *g_bufs);
  size_t i = upper(b.lo);
  memmove(g_bufs + i + 1, g_bufs + i, (g_n - i) * sizeof *g_bufs);
  g_bufs[i] = b;
  g_n++;
  return (void *)b.lo;
}

bool act_free(void *p) {
  size_t i = upper((const char *)p);
  if (i == 0 || g_bufs[i - 1].lo != (const char *)p) return false;
  ActBuf b = g_bufs[i - 1];
  memmove(g_bufs + i - 1, g_bufs + i, (g_n - i) * sizeof *g_bufs);
  g_n--;
  if (b.bf16) {
    dev_free(b.dev, "bf16 activations");
    if (munmap((void *)b.lo, (size_t)(b.hi - b.lo)) != 0) die("ops: munmap of an activation view");
  } else {
    dev_free(p, "activations");
  }
  return true;
}

bool is_act16(const void *p) {
  const ActBuf *b = p ? find(p) : NULL;
  return b && b->bf16;
}

__nv_bfloat16 *act16(const void *p) {
  const ActBuf *b = find(p);
  if (!b || !b->bf16) die("ops: %p is not in a bf16 activation buffer", p);
  return b->dev + ((const float *)p - (const float *)b->lo);
}

bool act_bf16(const char *op, std::initializer_list<const void *> acts) {
  int bf16 = 0, fp32 = 0;
  for (const void *p : acts)
    if (p) is_act16(p) ? bf16++ : fp32++;
  if (bf16 && fp32)
    die("ops: %s: %d of its activation arguments are bf16 activation buffers and %d are not",
        op, bf16, fp32);
  return bf16 > 0;
}

/* ---- the memory ops on activations (counts as fp32 bytes) ---- */

static size_t elems(const char *what, size_t bytes) {
  if (bytes % sizeof(float)) die("ops: %s of %zu bytes: not whole fp32 elements", what, bytes);
  return bytes / sizeof(float);
}

void act_zero(void *p, size_t bytes) {
  size_t n = elems("zero", bytes);
  CUDA_CHECK(cudaMemset(act16(p), 0, n * sizeof(__nv_bfloat16)), "zero (%zu bf16 elements)", n);
}

void act_to_device(void *dst, const void *src, size_t bytes) {
  size_t n = elems("to_device", bytes);
  __nv_bfloat16 *h = (__nv_bfloat16 *)xmalloc((n ? n : 1) * sizeof *h);
  for (size_t i = 0; i < n; i++) h[i] = __float2bfloat16(((const float *)src)[i]);
  CUDA_CHECK(cudaMemcpy(act16(dst), h, n * sizeof *h, cudaMemcpyHostToDevice),
             "to_device (%zu bf16 elements)", n);
  free(h);
}

void act_to_host(void *dst, const void *src, size_t bytes) {
  size_t n = elems("to_host", bytes);
  __nv_bfloat16 *h = (__nv_bfloat16 *)xmalloc((n ? n : 1) * sizeof *h);
  CUDA_CHECK(cudaMemcpy(h, act16(src), n * sizeof *h, cudaMemcpyDeviceToHost),
             "to_host (%zu bf16 elements)", n);
  for (size_t i = 0; i < n; i++) ((float *)dst)[i] = __bfloat162float(h[i]);
  free(h);
}


/* Activations of one kind (or die), n elements. */
void act_copy_n(const char *op, float *dst, const float *src, size_t n) {
  bool b16 = act_bf16(op, {dst, src});
  CUDA_CHECK(cudaMemcpy(b16 ? (void *)act16(dst) : (void *)dst,
                        b16 ? (const void *)act16(src) : (const void *)src,
                        n * (b16 ? sizeof(__nv_bfloat16) : sizeof(float)), cudaMemcpyDeviceToDevice),
             "%s copy (n=%zu)", op, n);
}
