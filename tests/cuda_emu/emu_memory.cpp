/* The emulator's device memory and the rest of the runtime API. Each
 * allocation ends where a PROT_NONE guard page begins, so a kernel that
 * reads or writes past the end faults at once (and the fault handler names
 * the kernel); new memory is filled with 0xff bytes (NaN as floats), so
 * results computed from memory nobody wrote show up. Copies check that
 * the device side of each copy is device memory and the host side is not.
 * Streams and events exist for their handles: everything runs at the call. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <map>

#include "cuda_runtime.h"
#include "emu_internal.h"

namespace {

struct Alloc {
  char *map;
  size_t map_bytes, bytes;
};

std::map<uintptr_t, Alloc> g_allocs; /* by the address cudaMalloc returned */
size_t g_in_use;
cudaError_t g_error = cudaSuccess;
const size_t TOTAL_BYTES = (size_t)16 << 30;

size_t page_bytes() {
  static size_t p = (size_t)sysconf(_SC_PAGESIZE);
  return p;
}

/* The allocation holding p, or nullptr. */
const std::pair<const uintptr_t, Alloc> *find_alloc(const void *p) {
  uintptr_t a = (uintptr_t)p;
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return nullptr;
  --it;
  return a < it->first + it->second.bytes ? &*it : nullptr;
}

double now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

}  // namespace

struct EmuStream {
  unsigned flags;
};
struct EmuEvent {
  double ms;
  int recorded;
};

void emu_set_error(cudaError_t err) {
  if (g_error == cudaSuccess) g_error = err;
}

void emu_describe_address(const void *p, char *out, size_t n) {
  uintptr_t a = (uintptr_t)p;
  for (auto &kv : g_allocs) {
    uintptr_t end = kv.first + kv.second.bytes;
    if (a >= end && a < end + page_bytes() + 16) {
      snprintf(out, n, "%zu bytes past the end of a %zu-byte allocation", (size_t)(a - end),
               kv.second.bytes);
      return;
    }
  }
  snprintf(out, n, "not just past a device allocation");
}

const void *emu_device_alloc(const void *p, size_t *bytes) {
  auto *a = find_alloc(p);
  if (!a) return nullptr;
  *bytes = a->second.bytes;
  return (const void *)a->first;
}

extern "C" {

int emu_is_device_range(const void *p, size_t bytes) {
  auto *a = find_alloc(p);
  return a && (uintptr_t)p + bytes <= a->first + a->second.bytes;
}

const char *cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument (emulator)";
    case cudaErrorMemoryAllocation: return "out of memory (emulator)";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument (emulator)";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer (emulator)";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected (emulator)";
    case cudaErrorInvalidDevice: return "invalid device ordinal (emulator)";
  }
  return "unknown error (emulator)";
}

cudaError_t cudaGetLastError(void) {
  cudaError_t e = g_error;
  g_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) { return g_error; }

cudaError_t cudaGetDeviceCount(int *count) {
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int dev) { return dev == 0 ? cudaSuccess : cudaErrorInvalidDevice; }

cudaError_t cudaGetDevice(int *dev) {
  *dev = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int dev) {
  if (dev != 0) return cudaErrorInvalidDevice;
  memset(prop, 0, sizeof *prop);
  snprintf(prop->name, sizeof prop->name, "bertrain CUDA emulator (CPU)");
  return cudaSuccess;
}

/* A one-SM sm_90 at 1 MHz: MFU figures from the emulator mean nothing. */
cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int dev) {
  if (dev != 0) return cudaErrorInvalidDevice;
  switch (attr) {
    case cudaDevAttrClockRate: *value = 1000; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = 1; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
  *free_bytes = TOTAL_BYTES - g_in_use;
  *total_bytes = TOTAL_BYTES;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes) {
  if (!p) return cudaErrorInvalidValue;
  size_t user = (bytes + 15) & ~(size_t)15, page = page_bytes();
  if (user == 0) user = 16;
  if (g_in_use + user > TOTAL_BYTES) return cudaErrorMemoryAllocation;
  size_t data = (user + page - 1) / page * page, map_bytes = data + page;
  void *m = mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return cudaErrorMemoryAllocation;
  char *base = (char *)m;
  if (mprotect(base + data, page, PROT_NONE) != 0) {
    munmap(m, map_bytes);
    return cudaErrorMemoryAllocation;
  }
  char *q = base + data - user;
  memset(q, 0xff, user);
  g_allocs[(uintptr_t)q] = Alloc{base, map_bytes, user};
  g_in_use += user;
  *p = q;
  return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
  if (!p) return cudaSuccess;
  auto it = g_allocs.find((uintptr_t)p);
  if (it == g_allocs.end()) return cudaErrorInvalidDevicePointer;
  munmap(it->second.map, it->second.map_bytes);
  g_in_use -= it->second.bytes;
  g_allocs.erase(it);
  return cudaSuccess;
}

cudaError_t cudaMemset(void *p, int value, size_t bytes) {
  if (bytes && !emu_is_device_range(p, bytes)) return cudaErrorInvalidValue;
  if (bytes) memset(p, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t) {
  return cudaMemset(p, value, bytes);
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind) {
  if (!bytes) return cudaSuccess;
  int dst_dev = emu_is_device_range(dst, bytes), src_dev = emu_is_device_range(src, bytes);
  int ok = 1;
  switch (kind) {
    case cudaMemcpyHostToHost: ok = !dst_dev && !src_dev; break;
    case cudaMemcpyHostToDevice: ok = dst_dev && !find_alloc(src); break;
    case cudaMemcpyDeviceToHost: ok = !find_alloc(dst) && src_dev; break;
    case cudaMemcpyDeviceToDevice: ok = dst_dev && src_dev; break;
    case cudaMemcpyDefault: break;
  }
  if (!ok) return cudaErrorInvalidValue;
  memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
                            cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMallocHost(void **p, size_t bytes) {
  *p = malloc(bytes ? bytes : 1);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}

cudaError_t cudaFreeHost(void *p) {
  free(p);
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
  *s = new EmuStream{flags};
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t e, unsigned) {
  return e ? cudaSuccess : cudaErrorInvalidValue;
}

cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, 0); }

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) {
  *e = new EmuEvent{0.0, 0};
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  if (!e) return cudaErrorInvalidValue;
  e->ms = now_ms();
  e->recorded = 1;
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e) { return e ? cudaSuccess : cudaErrorInvalidValue; }

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
  if (!start || !end || !start->recorded || !end->recorded) return cudaErrorInvalidValue;
  *ms = (float)(end->ms - start->ms);
  return cudaSuccess;
}

}  // extern "C"
