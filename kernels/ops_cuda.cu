/* The CUDA backend's table and memory: device memory from cudaMalloc, the
 * legacy default stream for everything, one cuBLAS handle in plain fp32. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops_cuda_internal.cuh"
#include "ops_cuda.h"

void cuda_fail(const char *err, const char *what, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, what);
  vsnprintf(buf, sizeof buf, what, ap);
  va_end(ap);
  die("cuda: %s: %s", buf, err);
}

int cuda_sync_launches(void) {
  static int flag = -1;
  if (flag < 0) {
    const char *s = getenv("BERTRAIN_CUDA_SYNC");
    int v = 0;
    flag = s && parse_bool(s, &v) == 0 && v;
  }
  return flag;
}

bool cuda_path_on(const char *name) {
  const char *e = getenv(name);
  return !(e && strcmp(e, "0") == 0);
}

/* Plain fp32 GEMMs (CUBLAS_DEFAULT_MATH never uses TF32 for sgemm; TF32 is
 * the explicit switch set_tf32) and no atomics inside cuBLAS, so results are
 * bit-identical from run to run on one GPU model. */
cublasHandle_t cuda_blas(void) {
  static cublasHandle_t h;
  if (!h) {
    CUBLAS_CHECK(cublasCreate(&h), "cublasCreate");
    CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), "cublasSetMathMode (default)");
    CUBLAS_CHECK(cublasSetAtomicsMode(h, CUBLAS_ATOMICS_NOT_ALLOWED), "cublasSetAtomicsMode");
    CUBLAS_CHECK(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST), "cublasSetPointerMode");
  }
  return h;
}

void *cuda_scratch(size_t bytes) {
  static GrowBuffer buf;
  return grow_buffer(&buf, bytes, "scratch");
}

BadId *cuda_bad_id(void) {
  static BadId *rec;
  if (!rec) {
    rec = (BadId *)dev_alloc(sizeof *rec, "bad-id record");
    CUDA_CHECK(cudaMemset(rec, 0, sizeof *rec), "bad-id record memset");
  }
  return rec;
}

/* The record's copy in page-locked memory, so that its read can be queued
 * behind the kernels and land with the wait that follows, where a read of
 * its own after each wait was one more round trip with the device idle. */
static BadId *bad_id_host(void) {
  static BadId *h;
  if (!h) {
    CUDA_CHECK(cudaMallocHost((void **)&h, sizeof *h), "bad-id host record");
    memset(h, 0, sizeof *h);
  }
  return h;
}

static void queue_bad_id_read(void) {
  CUDA_CHECK(cudaMemcpyAsync(bad_id_host(), cuda_bad_id(), sizeof(BadId), cudaMemcpyDeviceToHost,
                             0),
             "bad-id record read");
}

/* After a wait that followed queue_bad_id_read. */
static void report_bad_id_read(void) {
  const BadId h = *bad_id_host();
  if (h.op == BAD_NONE) return;
  /* cleared first, so a caller that catches die() can go on */
  CUDA_CHECK(cudaMemset(cuda_bad_id(), 0, sizeof(BadId)), "bad-id record clear");
  memset(bad_id_host(), 0, sizeof(BadId));
  const char *what = "unknown op", *kind = "id";
  switch (h.op) {
    case BAD_EMBED_WORD: what = "embed_fwd", kind = "word id"; break;
    case BAD_EMBED_TYPE: what = "embed_fwd", kind = "token type id"; break;
    case BAD_GATHER_FWD: what = "gather_fwd", kind = "row"; break;
    case BAD_GATHER_BWD: what = "gather_bwd", kind = "row"; break;
    case BAD_XENT_FWD: what = "xent_fwd", kind = "label"; break;
    case BAD_XENT_BWD: what = "xent_bwd", kind = "label"; break;
  }
  die("ops: %s: %s %d at index %lld is outside [0, %d) (seen on the GPU)", what, kind, h.value,
      h.index, h.limit);
}

/* ---- memory ---- */

static void *cuda_alloc(size_t bytes) {
  void *p = dev_alloc(bytes, "ops");
  CUDA_CHECK(cudaMemset(p, 0, bytes ? bytes : 1), "alloc memset (%zu bytes)", bytes);
  return p;
}

static void cuda_free(void *p) {
  params_forget(p);
  if (!act_free(p)) dev_free(p, "ops");
}

/* The memory ops take sizes in fp32 bytes; on bf16 activation buffers
 * (activations.cu) they move and convert bf16 elements. */
static void cuda_zero(void *p, size_t bytes) {
  params_written(p, bytes);
  if (bytes && is_act16(p)) act_zero(p, bytes);
  else if (bytes) CUDA_CHECK(cudaMemset(p, 0, bytes), "zero (%zu bytes)", bytes);
}

static void cuda_to_device(void *dst, const void *src, size_t bytes) {
  params_written(dst, bytes);
  if (bytes && is_act16(dst)) act_to_device(dst, src, bytes);
  else if (bytes)
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "to_device (%zu bytes)", bytes);
}

/* Waits for the device, so bad ids found by kernels are reported here. */
static void cuda_to_host(void *dst, const void *src, size_t bytes) {
  queue_bad_id_read();
  if (bytes && is_act16(src)) act_to_host(dst, src, bytes);
  else if (bytes)
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "to_host (%zu bytes)", bytes);
  else
    CUDA_CHECK(cudaDeviceSynchronize(), "to_host (0 bytes)");
  report_bad_id_read();
}

static void cuda_copy(void *dst, const void *src, size_t bytes) {
  if (!bytes || dst == src) return;
  const char *d = (const char *)dst, *s = (const char *)src;
  if (d < s + bytes && s < d + bytes) die("ops: copy: overlapping device ranges (%zu bytes)", bytes);
  params_written(dst, bytes);
  if (is_act16(dst) || is_act16(src)) {
    if (bytes % sizeof(float)) die("ops: copy of %zu bytes: not whole fp32 elements", bytes);
    act_copy_n("copy", (float *)dst, (const float *)src, bytes / sizeof(float));
  } else {
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "copy (%zu bytes)", bytes);
  }
}

static void cuda_sync(void) {
  queue_bad_id_read();
  CUDA_CHECK(cudaDeviceSynchronize(), "sync");
  report_bad_id_read();
}

static void cuda_set_threads(int n) { (void)n; }

static int g_tf32;

int cuda_tf32(void) { return g_tf32; }

static void cuda_set_tf32(int on) {
  g_tf32 = on;
  CUBLAS_CHECK(cublasSetMathMode(cuda_blas(), on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH),
               "cublasSetMathMode (%s)", on ? "TF32" : "default");
}

extern "C" const Ops *ops_cuda(void) {
  static Ops t;
  if (!t.name) {
    t.alloc = cuda_alloc;
    t.alloc_act = cuda_alloc_act;
    t.free = cuda_free;
    t.zero = cuda_zero;
    t.to_device = cuda_to_device;
    t.to_host = cuda_to_host;
    t.copy = cuda_copy;
    t.sync = cuda_sync;
    t.set_threads = cuda_set_threads;
    t.set_tf32 = cuda_set_tf32;
    t.set_bf16 = cuda_set_bf16;
    t.params_at = cuda_params_at;
    t.device_info = cuda_device_info;
    t.mark = cuda_mark;
    t.mark_ms = cuda_mark_ms;
    t.linear_fwd = cuda_linear_fwd;
    t.linear_bwd = cuda_linear_bwd;
    t.embed_fwd = cuda_embed_fwd;
    t.embed_bwd = cuda_embed_bwd;
    t.layernorm_fwd = cuda_layernorm_fwd;
    t.layernorm_bwd = cuda_layernorm_bwd;
    t.residual_ln_fwd = cuda_residual_ln_fwd;
    t.residual_ln_bwd = cuda_residual_ln_bwd;
    t.add = cuda_add;
    t.gelu_fwd = cuda_gelu_fwd;
    t.gelu_bwd = cuda_gelu_bwd;
    t.tanh_fwd = cuda_tanh_fwd;
    t.tanh_bwd = cuda_tanh_bwd;
    t.scale = cuda_scale;
    t.dropout_fwd = cuda_dropout_fwd;
    t.dropout_bwd = cuda_dropout_bwd;
    t.attn_fwd = cuda_attn_fwd;
    t.attn_bwd = cuda_attn_bwd;
    t.gather_fwd = cuda_gather_fwd;
    t.gather_bwd = cuda_gather_bwd;
    t.xent_fwd = cuda_xent_fwd;
    t.xent_bwd = cuda_xent_bwd;
    t.adamw = cuda_adamw;
    t.lamb = cuda_lamb;
    t.sumsq = cuda_sumsq;
    t.name = "cuda"; /* last: marks the table filled */
  }
  return &t;
}
