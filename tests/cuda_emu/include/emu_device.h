/* Device-side CUDA as the CPU emulator runs it (C++ only). A kernel is a
 * plain function; every CUDA thread of a block is a fiber on the host, so
 * __syncthreads and warp shuffles really wait for the other threads (a
 * barrier that not every live thread reaches is reported as an error, not
 * left to hang). Launches arrive here from translate.py, which rewrites
 * kernel<<<grid, block>>>(args) into emu::launch("kernel", ...). */
#ifndef EMU_DEVICE_H
#define EMU_DEVICE_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
/* Shared memory is one object per kernel; blocks run one after another. */
#define __shared__ static

struct uint3 {
  unsigned x, y, z;
};

struct alignas(16) float4 {
  float x, y, z, w;
};

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

/* Set by the scheduler before it resumes a thread. */
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
static const int warpSize = 32;

namespace emu {

struct LaunchConfig {
  dim3 grid, block;
  size_t shared_bytes;
  cudaStream_t stream;
};

inline LaunchConfig config(dim3 grid, dim3 block, size_t shared_bytes = 0,
                           cudaStream_t stream = 0) {
  return LaunchConfig{grid, block, shared_bytes, stream};
}

/* Runs body(ctx) as every thread of every block of the grid; key is the
 * kernel's address (what cudaFuncSetAttribute was given). */
void run_grid(const char *kernel, const void *key, const LaunchConfig &c, void (*body)(void *),
              void *ctx);

template <class Kernel, class... Args>
void launch(const char *name, const LaunchConfig &c, Kernel kernel, Args... args) {
  auto call = [&]() { kernel(args...); };
  run_grid(name, reinterpret_cast<const void *>(kernel), c,
           [](void *p) { (*static_cast<decltype(call) *>(p))(); }, &call);
}

/* The launch's dynamic shared memory (translate.py rewrites
 * `extern __shared__ T name[];` into a pointer to it): 128-byte aligned,
 * 0xff bytes at the start of each block, a guard page just past its end. */
void *dynamic_shared();

/* Waits until every live thread of the block is here. */
void sync_block();
/* A warp exchange: this thread offers bits and gets those of lane src
 * (its own when src is outside the warp's width segment). */
uint64_t shuffle(unsigned mask, uint64_t bits, int src_lane, int width);
int lane_id();

template <class T>
T shuffle_as(unsigned mask, T v, int src_lane, int width) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of a type wider than 64 bits");
  uint64_t bits = 0;
  memcpy(&bits, &v, sizeof v);
  bits = shuffle(mask, bits, src_lane, width);
  T r;
  memcpy(&r, &bits, sizeof r);
  return r;
}

}  // namespace emu

inline void __syncthreads() { emu::sync_block(); }

/* A barrier for the warp's live lanes: a shuffle that reads its own lane. */
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  (void)emu::shuffle(mask, 0, emu::lane_id() & 31, 32);
}

template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  int lane = emu::lane_id() & (width - 1);
  return emu::shuffle_as(mask, v, lane ^ lane_mask, width);
}

template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  int lane = emu::lane_id() & (width - 1);
  return emu::shuffle_as(mask, v, lane + (int)delta, width);
}

template <class T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  return emu::shuffle_as(mask, v, src_lane & (width - 1), width);
}

/* Blocks run one after another, each to its end, so every write of one is
 * seen by the next: the fence has nothing to order, and a load that skips
 * L1 is a load. */
inline void __threadfence() {}
template <class T> T __ldcg(const T *p) { return *p; }

/* Threads of one block never run at the same time, so atomics are plain. */
inline int atomicCAS(int *p, int compare, int value) {
  int old = *p;
  if (old == compare) *p = value;
  return old;
}
template <class T>
T atomicAdd(T *p, T v) {
  T old = *p;
  *p = old + v;
  return old;
}
inline int atomicMin(int *p, int v) {
  int old = *p;
  if (v < old) *p = v;
  return old;
}

/* Bit i set when lane i's predicate holds, gathered by butterflies (every
 * lane of the mask must call it). */
inline unsigned __ballot_sync(unsigned mask, int pred) {
  unsigned bits = pred ? 1u << (emu::lane_id() & 31) : 0u;
  for (int o = 16; o > 0; o >>= 1) bits |= __shfl_xor_sync(mask, bits, o);
  return bits & mask;
}
inline int __ffs(unsigned x) { return __builtin_ffs((int)x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }

template <class A, class B>
inline typename std::common_type<A, B>::type min(A a, B b) {
  return a < b ? a : b;
}
template <class A, class B>
inline typename std::common_type<A, B>::type max(A a, B b) {
  return a < b ? b : a;
}

inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
/* One rounding each: the host compiler (no -mfma) never fuses them. */
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }

#endif
