/* The emulator's kernel launches: each block of the grid in turn, each CUDA
 * thread of the block a fiber with its own stack. The scheduler runs every
 * runnable fiber until it finishes or waits; then it releases a warp whose
 * live lanes all wait in one shuffle, or else the whole block when every
 * live thread waits at __syncthreads; anything else is a deadlock on a real
 * GPU too, and is reported with the kernel's name. Threads run one at a
 * time and in order, so races between threads are not found here. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <map>

#include "cuda_runtime.h"
#include "emu_internal.h"
#include "mma.h"

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace {

enum State { RUNNABLE, AT_SYNC, AT_SHUFFLE, DONE };

struct Fiber {
#if defined(__x86_64__)
  void *sp;
#else
  ucontext_t ctx;
#endif
  State state;
  const void *site;   /* the __syncthreads it waits at (its return address) */
  uint3 tid;          /* its threadIdx */
  unsigned shuffles;  /* shuffles done; its parity picks the offer slot */
  uint64_t offer[2];
  unsigned offer_mask[2];
};

const size_t STACK_BYTES = 64 * 1024;
const int MAX_THREADS = 1024;
/* Dynamic shared memory: 48 KiB unless a kernel's maximum is raised, up to
 * what an H100 block may have. */
const size_t SHARED_DEFAULT = 48 * 1024, SHARED_MAX = 227 * 1024, SHARED_ALIGN = 128;

/* Each fiber's stack sits above a PROT_NONE page, so an overflow faults. */
char *g_stacks;
size_t g_page, g_stack_stride;
/* The launch's dynamic shared memory ends at g_shared_end, a guard page. */
char *g_shared, *g_shared_end;
size_t g_shared_bytes;
std::map<const void *, size_t> g_shared_limit; /* raised maxima, by kernel address */
Fiber g_fibers[MAX_THREADS];
int g_nthreads, g_cur;
void (*g_body)(void *);
void *g_ctx;
const char *g_kernel; /* non-NULL while a kernel runs */
unsigned long long g_launches, g_gemms;

#if defined(__x86_64__)
void *g_sched_sp;
#else
ucontext_t g_sched_ctx;
#endif

}  // namespace

#if defined(__x86_64__)
/* emu_switch(save, load): saves the callee-saved registers and the stack
 * pointer into *save, then continues the context whose stack pointer is
 * load (a fiber started by fiber_init, or one saved here). */
extern "C" void emu_switch(void **save, void *load);
asm(R"(
  .text
  .globl emu_switch
  .type emu_switch, @function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_switch, .-emu_switch
)");
#endif

static void fiber_main();

/* BERTRAIN_EMU_ORDER=reverse: the threads of a block, and the blocks of a
 * grid, run last first. A kernel whose results depend on that order races
 * on a GPU (a read of what another thread writes with no barrier between,
 * or a block that counts on another one having run). */
static bool g_reverse;

/* The runnable thread that runs after thread t in a round (t = -1 or
 * g_nthreads: the first); g_nthreads when there is none. */
static int next_runnable(int t) {
  if (g_reverse) {
    for (t = t >= g_nthreads ? g_nthreads - 1 : t - 1; t >= 0; t--)
      if (g_fibers[t].state == RUNNABLE) return t;
    return g_nthreads;
  }
  for (t = t < 0 ? 0 : t + 1; t < g_nthreads; t++)
    if (g_fibers[t].state == RUNNABLE) return t;
  return g_nthreads;
}

/* From the scheduler into thread t; back when the round ends. */
static void start_round(int t) {
  g_cur = t;
  threadIdx = g_fibers[t].tid;
#if defined(__x86_64__)
  emu_switch(&g_sched_sp, g_fibers[t].sp);
#else
  swapcontext(&g_sched_ctx, &g_fibers[t].ctx);
#endif
}

/* The running thread has set its state (waiting or done): on to the next
 * runnable thread of this round, straight from fiber to fiber (half the
 * switches of going through the scheduler), or back to the scheduler. */
static void pass_on() {
  int me = g_cur, next = next_runnable(me);
  Fiber &f = g_fibers[me];
  if (next < g_nthreads) {
    g_cur = next;
    threadIdx = g_fibers[next].tid;
#if defined(__x86_64__)
    emu_switch(&f.sp, g_fibers[next].sp);
#else
    swapcontext(&f.ctx, &g_fibers[next].ctx);
#endif
  } else {
#if defined(__x86_64__)
    emu_switch(&f.sp, g_sched_sp);
#else
    swapcontext(&f.ctx, &g_sched_ctx);
#endif
  }
}

/* A fresh fiber that starts in fiber_main on stack t. */
static void fiber_init(int t) {
  /* Stacks 64 KiB apart would all map to the same cache sets; a per-thread
   * offset of whole cache lines spreads their tops out. */
  char *top = g_stacks + (size_t)(t + 1) * g_stack_stride - (size_t)(t % 64) * 64;
#if defined(__x86_64__)
  /* emu_switch pops six registers, then returns into fiber_main with the
   * stack as after a call (rsp = 8 mod 16); the zero under it is the
   * return address fiber_main never uses. */
  void **sp = (void **)top;
  *--sp = nullptr;
  *--sp = (void *)fiber_main;
  for (int i = 0; i < 6; i++) *--sp = nullptr;
  g_fibers[t].sp = sp;
#else
  ucontext_t &c = g_fibers[t].ctx;
  getcontext(&c);
  c.uc_stack.ss_sp = top - STACK_BYTES;
  c.uc_stack.ss_size = STACK_BYTES;
  c.uc_link = nullptr;
  makecontext(&c, fiber_main, 0);
#endif
  g_fibers[t].state = RUNNABLE;
  g_fibers[t].shuffles = 0;
}

static void fiber_main() {
  g_body(g_ctx);
  g_fibers[g_cur].state = DONE;
  pass_on();
  abort(); /* a finished fiber is never resumed */
}

/* ---- errors ---- */

void emu_kernel_fail(const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "cuda emulator: kernel %s, block (%u,%u,%u), thread (%u,%u,%u): %s\n",
          g_kernel ? g_kernel : "?", blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x,
          threadIdx.y, threadIdx.z, msg);
  fflush(stderr);
  _exit(1);
}

/* A fault inside a kernel (mostly a read or write past the end of an
 * allocation, into its guard page) is reported with the kernel's name. */
static void describe_fault(const void *p, char *out, size_t n) {
  uintptr_t a = (uintptr_t)p, shared_end = (uintptr_t)g_shared + g_shared_bytes;
  uintptr_t stacks = (uintptr_t)g_stacks;
  if (a >= (uintptr_t)g_shared_end && a < (uintptr_t)g_shared_end + g_page) {
    snprintf(out, n, "%zu bytes past the end of the launch's %zu bytes of dynamic shared memory",
             (size_t)(a - shared_end), g_shared_bytes);
  } else if (a >= stacks && a < stacks + MAX_THREADS * g_stack_stride &&
             (a - stacks) % g_stack_stride < g_page) {
    snprintf(out, n, "the fiber stack of thread %zu overflowed: the emulator gives each CUDA "
             "thread %zu KiB", (size_t)((a - stacks) / g_stack_stride), STACK_BYTES / 1024);
  } else {
    emu_describe_address(p, out, n);
  }
}

static void on_fault(int sig, siginfo_t *si, void *) {
  if (!g_kernel) {
    signal(sig, SIG_DFL);
    return; /* the fault repeats, now with the default action */
  }
  char where[160];
  describe_fault(si->si_addr, where, sizeof where);
  emu_kernel_fail("memory fault at %p (%s)", si->si_addr, where);
}

static void print_stats() {
  fprintf(stderr, "cuda emulator: %llu kernel launches, %llu cuBLAS/cuBLASLt products\n",
          g_launches, g_gemms);
}

void emu_count_gemm(void) { g_gemms++; }

static void *map_guarded(size_t bytes, const char *what) {
  void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED) {
    fprintf(stderr, "cuda emulator: %s: mmap failed\n", what);
    _exit(1);
  }
  return p;
}

static void guard(char *page, const char *what) {
  if (mprotect(page, g_page, PROT_NONE) != 0) {
    fprintf(stderr, "cuda emulator: %s: mprotect failed\n", what);
    _exit(1);
  }
}

static void setup_once() {
  if (g_stacks) return;
  const char *stats = getenv("BERTRAIN_EMU_STATS"), *order = getenv("BERTRAIN_EMU_ORDER");
  if (stats && strcmp(stats, "1") == 0) atexit(print_stats);
  g_reverse = order && strcmp(order, "reverse") == 0;
  g_page = (size_t)sysconf(_SC_PAGESIZE);
  g_stack_stride = STACK_BYTES + g_page;
  g_stacks = (char *)map_guarded(g_stack_stride * MAX_THREADS, "fiber stacks");
  for (int t = 0; t < MAX_THREADS; t++) guard(g_stacks + t * g_stack_stride, "fiber stacks");
  size_t shared = (SHARED_MAX + g_page - 1) / g_page * g_page;
  g_shared_end = (char *)map_guarded(shared + g_page, "dynamic shared memory") + shared;
  guard(g_shared_end, "dynamic shared memory");
  static char alt[64 * 1024];
  stack_t ss = {};
  ss.ss_sp = alt;
  ss.ss_size = sizeof alt;
  sigaltstack(&ss, nullptr);
  struct sigaction sa = {};
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGBUS, &sa, nullptr);
}

/* ---- inside a kernel ---- */


void emu::sync_block() {
  if (!g_kernel) {
    fprintf(stderr, "cuda emulator: __syncthreads outside a kernel\n");
    _exit(1);
  }
  g_fibers[g_cur].state = AT_SYNC;
  g_fibers[g_cur].site = __builtin_return_address(0);
  pass_on();
}

int emu::lane_id() { return g_cur & (warpSize - 1); }

void *emu::dynamic_shared() {
  if (!g_kernel) {
    fprintf(stderr, "cuda emulator: extern __shared__ memory outside a kernel\n");
    _exit(1);
  }
  return g_shared;
}

/* A wmma load or store: its pointer 32-byte aligned (measured from the
 * allocation's start, which CUDA aligns to 256 bytes and the emulator only
 * to 16), ldm a multiple of 16 bytes, all 16 rows inside the memory. */
static void check_tile(const char *op, const void *p, unsigned ldm, unsigned elem_bytes) {
  size_t span = ((size_t)15 * ldm + 16) * elem_bytes, bytes = 0;
  uintptr_t a = (uintptr_t)p, start = a;
  const char *where = nullptr;
  if (a >= (uintptr_t)g_shared && a < (uintptr_t)g_shared + g_shared_bytes) {
    start = (uintptr_t)g_shared, bytes = g_shared_bytes;
    where = "the launch's dynamic shared memory";
  } else if (const void *s = emu_device_alloc(p, &bytes)) {
    start = (uintptr_t)s;
    where = "its device allocation";
  }
  if ((a - start) % 32)
    emu_kernel_fail("wmma::%s: pointer %p is not 256-bit (32-byte) aligned", op, p);
  if (ldm * elem_bytes % 16)
    emu_kernel_fail("wmma::%s: ldm %u is not a multiple of %u elements (16 bytes)", op, ldm,
                    16 / elem_bytes);
  if (where && span > start + bytes - a)
    emu_kernel_fail("wmma::%s: the 16x16 tile at %p (ldm %u) spans %zu bytes, %zu past the end "
                    "of %s", op, p, ldm, span, (size_t)(a + span - start - bytes), where);
}

void emu::wmma_enter(const char *op, const void *p, unsigned ldm, unsigned elem_bytes, int layout) {
  if (!g_kernel) {
    fprintf(stderr, "cuda emulator: wmma::%s outside a kernel\n", op);
    _exit(1);
  }
  int lane = g_cur & (warpSize - 1), first = g_cur - lane;
  if (first + warpSize > g_nthreads)
    emu_kernel_fail("wmma::%s in a warp of %d threads: it needs all 32", op, g_nthreads - first);
  if (elem_bytes) check_tile(op, p, ldm, elem_bytes);
  /* Every lane must make the same call with the same arguments: compared
   * through a butterfly, which also reaches any lane that has exited. */
  uint64_t token = 1469598103934665603ull;
  for (const char *c = op; *c; c++) token = (token ^ (unsigned char)*c) * 1099511628211ull;
  token = (token ^ (uintptr_t)p) * 1099511628211ull;
  token = (token ^ ((uint64_t)ldm << 8 | (unsigned)layout)) * 1099511628211ull;
  for (int o = warpSize / 2; o > 0; o >>= 1)
    if (shuffle(0xffffffffu, token, lane ^ o, warpSize) != token)
      emu_kernel_fail("wmma::%s: lane %d is not at the same wmma call with the same pointer, ldm "
                      "and layout (every lane of the warp must be)", op, lane ^ o);
}

uint64_t emu::shuffle(unsigned mask, uint64_t bits, int src_lane, int width) {
  if (width <= 0 || width > warpSize || (width & (width - 1)))
    emu_kernel_fail("shuffle width %d is not a power of two up to 32", width);
  int me = g_cur, lane = me & (warpSize - 1);
  if (!(mask >> lane & 1u)) emu_kernel_fail("shuffle with mask %#x leaves out lane %d, the caller", mask, lane);
  Fiber &f = g_fibers[me];
  unsigned slot = f.shuffles & 1u;
  f.offer[slot] = bits;
  f.offer_mask[slot] = mask;
  f.state = AT_SHUFFLE;
  pass_on();
  f.shuffles++;
  int seg = lane & ~(width - 1);
  if (src_lane < 0 || src_lane >= width) return bits;
  int src = me - lane + seg + src_lane;
  if (!(mask >> (seg + src_lane) & 1u))
    emu_kernel_fail("shuffle reads lane %d, which mask %#x leaves out", seg + src_lane, mask);
  if (src >= g_nthreads) emu_kernel_fail("shuffle reads lane %d, beyond the block's last thread", seg + src_lane);
  Fiber &o = g_fibers[src];
  if (o.state == DONE && o.shuffles <= f.shuffles - 1)
    emu_kernel_fail("shuffle reads lane %d, which has exited", seg + src_lane);
  if (o.offer_mask[slot] != mask)
    emu_kernel_fail("shuffle masks differ: %#x here, %#x in lane %d", mask, o.offer_mask[slot], seg + src_lane);
  return o.offer[slot];
}

/* ---- the scheduler ---- */

/* A warp whose live lanes all wait in a shuffle goes on. */
static bool release_warps() {
  bool any = false;
  for (int w0 = 0; w0 < g_nthreads; w0 += warpSize) {
    int w1 = w0 + warpSize < g_nthreads ? w0 + warpSize : g_nthreads, live = 0, waiting = 0;
    for (int t = w0; t < w1; t++) {
      live += g_fibers[t].state != DONE;
      waiting += g_fibers[t].state == AT_SHUFFLE;
    }
    if (waiting == 0 || waiting != live) continue;
    for (int t = w0; t < w1; t++)
      if (g_fibers[t].state == AT_SHUFFLE) g_fibers[t].state = RUNNABLE;
    any = true;
  }
  return any;
}

/* Every live thread at the same __syncthreads: all go on (threads that
 * exited count as arrived, as on current GPUs). Live threads at different
 * __syncthreads calls are a divergent barrier: reported. */
static bool release_block() {
  int first = -1;
  for (int t = 0; t < g_nthreads; t++) {
    if (g_fibers[t].state == DONE) continue;
    if (g_fibers[t].state != AT_SYNC) return false;
    if (first < 0) first = t;
    if (g_fibers[t].site != g_fibers[first].site) {
      threadIdx = g_fibers[t].tid;
      emu_kernel_fail("divergent barrier: this thread and thread %d wait at different "
                      "__syncthreads calls", first);
    }
  }
  for (int t = 0; t < g_nthreads; t++)
    if (g_fibers[t].state == AT_SYNC) g_fibers[t].state = RUNNABLE;
  return true;
}

static void report_deadlock() {
  int sync = 0, shuffle = 0, done = 0, first_sync = -1, first_shuffle = -1;
  for (int t = 0; t < g_nthreads; t++) {
    State s = g_fibers[t].state;
    if (s == AT_SYNC) sync++, first_sync = first_sync < 0 ? t : first_sync;
    if (s == AT_SHUFFLE) shuffle++, first_shuffle = first_shuffle < 0 ? t : first_shuffle;
    done += s == DONE;
  }
  threadIdx = g_fibers[first_shuffle >= 0 ? first_shuffle : 0].tid;
  emu_kernel_fail("deadlock: %d threads wait at __syncthreads (first %d), %d in a warp shuffle "
                  "whose warp never completes (first %d), %d have exited",
                  sync, first_sync, shuffle, first_shuffle, done);
}

static void run_block() {
  for (int t = 0; t < g_nthreads; t++) fiber_init(t);
  for (;;) {
    int first = next_runnable(g_reverse ? g_nthreads : -1);
    if (first < g_nthreads) start_round(first);
    int live = 0;
    for (int t = 0; t < g_nthreads; t++) live += g_fibers[t].state != DONE;
    if (live == 0) return;
    if (!release_warps() && !release_block()) report_deadlock();
  }
}

static const char *bad_config(const emu::LaunchConfig &c) {
  const dim3 &g = c.grid, &b = c.block;
  if (b.x == 0 || b.y == 0 || b.z == 0 || g.x == 0 || g.y == 0 || g.z == 0) return "a zero dimension";
  if (b.x > 1024 || b.y > 1024 || b.z > 64 || (size_t)b.x * b.y * b.z > 1024)
    return "more than 1024 threads per block";
  if (g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535) return "grid beyond 2^31-1 x 65535 x 65535";
  return nullptr;
}

static size_t shared_limit(const void *key) {
  auto it = g_shared_limit.find(key);
  return it == g_shared_limit.end() ? SHARED_DEFAULT : it->second;
}

extern "C" cudaError_t emu_func_set_attribute(const void *func, cudaFuncAttribute attr, int value) {
  if (!func || attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      (size_t)value > SHARED_MAX)
    return cudaErrorInvalidValue;
  g_shared_limit[func] = (size_t)value;
  return cudaSuccess;
}

void emu::run_grid(const char *kernel, const void *key, const LaunchConfig &c,
                   void (*body)(void *), void *ctx) {
  setup_once();
  if (const char *why = bad_config(c)) {
    fprintf(stderr, "cuda emulator: launch of %s refused: %s (grid %u,%u,%u block %u,%u,%u)\n",
            kernel, why, c.grid.x, c.grid.y, c.grid.z, c.block.x, c.block.y, c.block.z);
    emu_set_error(cudaErrorInvalidConfiguration);
    return;
  }
  size_t limit = shared_limit(key);
  if (c.shared_bytes > limit) {
    fprintf(stderr, "cuda emulator: launch of %s refused: %zu bytes of dynamic shared memory, "
            "above its maximum of %zu (cudaFuncAttributeMaxDynamicSharedMemorySize%s)\n",
            kernel, c.shared_bytes, limit,
            limit == SHARED_DEFAULT ? " was not raised" : "");
    emu_set_error(cudaErrorInvalidValue);
    return;
  }
  g_shared_bytes = c.shared_bytes;
  g_shared = g_shared_end - (g_shared_bytes + SHARED_ALIGN - 1) / SHARED_ALIGN * SHARED_ALIGN;
  g_launches++;
  g_kernel = kernel;
  g_body = body;
  g_ctx = ctx;
  gridDim = c.grid;
  blockDim = c.block;
  g_nthreads = (int)(c.block.x * c.block.y * c.block.z);
  for (int t = 0; t < g_nthreads; t++) {
    g_fibers[t].tid.x = (unsigned)t % c.block.x;
    g_fibers[t].tid.y = (unsigned)t / c.block.x % c.block.y;
    g_fibers[t].tid.z = (unsigned)t / (c.block.x * c.block.y);
  }
  const size_t blocks = (size_t)c.grid.x * c.grid.y * c.grid.z;
  for (size_t i = 0; i < blocks; i++) {
    const size_t b = g_reverse ? blocks - 1 - i : i;
    blockIdx.x = (unsigned)(b % c.grid.x), blockIdx.y = (unsigned)(b / c.grid.x % c.grid.y);
    blockIdx.z = (unsigned)(b / ((size_t)c.grid.x * c.grid.y));
    memset(g_shared, 0xff, g_shared_bytes);
    run_block();
  }
  g_kernel = nullptr;
}
