/* What the CUDA backend knows of its device: the memory it holds (every
 * cudaMalloc of the backend goes through dev_alloc, so the peak is exact
 * for our buffers; cuBLAS and NCCL workspaces are not in it), the card's
 * dense bf16 peak for MFU, and CUDA-event timing marks. */
#include <stdio.h>
#include <string.h>

#include "ops_cuda_internal.cuh"

unsigned long long cuda_launches;

/* ---- memory ---- */

typedef struct Block {
  void *p;
  size_t bytes;
} Block;

static Block *g_blocks;
static size_t g_nblocks, g_cap, g_held, g_peak;

void *dev_alloc(size_t bytes, const char *what) {
  void *p = NULL;
  CUDA_CHECK(cudaMalloc(&p, bytes ? bytes : 1), "%s alloc (%zu bytes)", what, bytes);
  grow((void **)&g_blocks, &g_cap, g_nblocks + 1, sizeof *g_blocks);
  g_blocks[g_nblocks++] = Block{p, bytes};
  g_held += bytes;
  if (g_held > g_peak) g_peak = g_held;
  return p;
}

void *grow_buffer(GrowBuffer *b, size_t bytes, const char *what) {
  if (bytes > b->cap) {
    CUDA_CHECK(cudaDeviceSynchronize(), "%s (%zu bytes)", what, bytes);
    dev_free(b->p, what);
    b->p = dev_alloc(bytes, what);
    b->cap = bytes;
  }
  return b->p;
}

unsigned *arrival_counters(GrowBuffer *b, size_t n, const char *what) {
  const size_t had = b->cap;
  void *p = grow_buffer(b, n * sizeof(unsigned), what);
  if (b->cap != had) CUDA_CHECK(cudaMemset(p, 0, b->cap), "%s counters (%zu)", what, n);
  return (unsigned *)p;
}

size_t dev_size(const void *p) {
  for (size_t i = 0; i < g_nblocks; i++)
    if (g_blocks[i].p == p) return g_blocks[i].bytes;
  return 0;
}

size_t dev_bytes_after(const void *p) {
  const char *c = (const char *)p;
  for (size_t i = 0; i < g_nblocks; i++) {
    const char *b = (const char *)g_blocks[i].p;
    if (c >= b && c < b + g_blocks[i].bytes) return (size_t)(b + g_blocks[i].bytes - c);
  }
  return 0;
}

void dev_free(void *p, const char *what) {
  if (!p) return;
  for (size_t i = 0; i < g_nblocks; i++) {
    if (g_blocks[i].p != p) continue;
    g_held -= g_blocks[i].bytes;
    g_blocks[i] = g_blocks[--g_nblocks];
    CUDA_CHECK(cudaFree(p), "%s free (%p)", what, p);
    return;
  }
  die("ops: %s free: %p was not allocated by the CUDA backend", what, p);
}

/* ---- the device ---- */

static int attribute(cudaDeviceAttr a, int dev, const char *name) {
  int v = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&v, a, dev), "cudaDeviceGetAttribute(%s)", name);
  return v;
}

/* Dense bf16 tensor-core FLOPs per SM per clock, by compute capability
 * (from NVIDIA's published peaks: A100 312 TFLOP/s, H100 SXM 989, B200 2250;
 * the GA10x/AD10x parts at fp32 accumulation). 0: not known here. */
static int bf16_flops_per_sm_clock(int major, int minor) {
  int cc = major * 10 + minor;
  switch (cc) {
    case 80: return 2048;
    case 86: case 87: case 89: return 512;
    case 90: return 4096;
    case 100: return 8192;
  }
  return 0;
}

void cuda_device_info(DeviceInfo *out) {
  memset(out, 0, sizeof *out);
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev), "cudaGetDevice");
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties(%d)", dev);
  int sms = attribute(cudaDevAttrMultiProcessorCount, dev, "SMs");
  int khz = attribute(cudaDevAttrClockRate, dev, "clock");
  int major = attribute(cudaDevAttrComputeCapabilityMajor, dev, "cc major");
  int minor = attribute(cudaDevAttrComputeCapabilityMinor, dev, "cc minor");
  snprintf(out->name, sizeof out->name, "%.80s (GPU %d, sm_%d%d, %d SMs)", prop.name, dev, major,
           minor, sms);
  int per = bf16_flops_per_sm_clock(major, minor);
  out->peak_bf16_flops = (double)per * sms * khz * 1e3;
  snprintf(out->peak_basis, sizeof out->peak_basis, "%d SMs x %d MHz x %d bf16 FLOP/clock",
           sms, khz / 1000, per);
  out->peak_bytes = g_peak;
  out->launches = cuda_launches;
}

/* ---- timing marks ---- */

#define MARKS 4
static cudaEvent_t g_marks[MARKS];

static int mark_slot(int slot) {
  if (slot < 0 || slot >= MARKS) die("ops: timing mark %d is outside [0, %d)", slot, MARKS);
  return slot;
}

void cuda_mark(int slot) {
  cudaEvent_t *ev = &g_marks[mark_slot(slot)];
  if (!*ev) CUDA_CHECK(cudaEventCreate(ev), "cudaEventCreate (mark %d)", slot);
  CUDA_CHECK(cudaEventRecord(*ev, 0), "cudaEventRecord (mark %d)", slot);
}

double cuda_mark_ms(int from, int to) {
  cudaEvent_t a = g_marks[mark_slot(from)], b = g_marks[mark_slot(to)];
  if (!a || !b) die("ops: timing marks %d and %d must both be stamped first", from, to);
  float ms = 0.0f;
  CUDA_CHECK(cudaEventSynchronize(b), "cudaEventSynchronize (mark %d)", to);
  CUDA_CHECK(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime (marks %d, %d)", from, to);
  return ms;
}
