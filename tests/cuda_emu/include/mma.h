/* Warp matrix functions (nvcuda::wmma) as the CPU emulator provides them
 * (tests only): bf16 inputs, float accumulators, the m16n16k16 shape. CUDA
 * leaves unspecified which elements each thread's fragment holds, so here
 * every thread holds the whole 16x16 tile, row-major whatever the memory
 * layout it came from (x[r * 16 + c] is row r, column c). Each load, store
 * and product is a warp barrier whose lanes must all pass the same
 * arguments; pointers must be 32-byte aligned and ldm a multiple of 16
 * bytes, as CUDA requires; a broken rule is reported with the kernel. */
#ifndef EMU_MMA_H
#define EMU_MMA_H

#include <type_traits>

#include "cuda_bf16.h"
#include "cuda_runtime.h"

namespace emu {
/* Checks a wmma call (elem_bytes 0: no memory) and waits for the warp. */
void wmma_enter(const char *op, const void *p, unsigned ldm, unsigned elem_bytes, int layout);
}  // namespace emu

namespace nvcuda {
namespace wmma {

/* Tags only, incomplete as in CUDA. */
struct matrix_a;
struct matrix_b;
struct accumulator;
struct row_major;
struct col_major;
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int m, int n, int k, class T, class Layout = void>
struct fragment {
  static_assert(m == 16 && n == 16 && k == 16, "the emulator has only the m16n16k16 shape");
  static_assert(std::is_same<Use, accumulator>::value
                    ? std::is_same<T, float>::value && std::is_void<Layout>::value
                    : std::is_same<T, __nv_bfloat16>::value &&
                          (std::is_same<Layout, row_major>::value ||
                           std::is_same<Layout, col_major>::value),
                "the emulator has bf16 row_major/col_major operands and float accumulators");
  typedef T element_type;
  typedef T storage_element_type;
  enum { num_elements = 256 };
  T x[num_elements];
};

template <class Use, class T, class Layout>
inline void fill_fragment(fragment<Use, 16, 16, 16, T, Layout> &f,
                          const typename std::common_type<T>::type &v) {
  for (int i = 0; i < 256; i++) f.x[i] = v;
}

/* Element (r, c) of the fragment's tile is p[r * ldm + c] in row-major
 * memory, p[c * ldm + r] in column-major. */
template <class T>
inline void load_tile(T *x, const T *p, unsigned ldm, bool col) {
  for (unsigned r = 0; r < 16; r++)
    for (unsigned c = 0; c < 16; c++) x[r * 16 + c] = col ? p[c * ldm + r] : p[r * ldm + c];
}

template <class Use, class Layout>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, __nv_bfloat16, Layout> &f,
                             const __nv_bfloat16 *p, unsigned ldm) {
  bool col = std::is_same<Layout, col_major>::value;
  emu::wmma_enter("load_matrix_sync", p, ldm, sizeof *p, col);
  load_tile(f.x, p, ldm, col);
}

inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p,
                             unsigned ldm, layout_t layout) {
  emu::wmma_enter("load_matrix_sync", p, ldm, sizeof *p, layout);
  load_tile(f.x, p, ldm, layout == mem_col_major);
}

inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f,
                              unsigned ldm, layout_t layout) {
  emu::wmma_enter("store_matrix_sync", p, ldm, sizeof *p, layout);
  for (unsigned r = 0; r < 16; r++)
    for (unsigned c = 0; c < 16; c++)
      (layout == mem_col_major ? p[c * ldm + r] : p[r * ldm + c]) = f.x[r * 16 + c];
}

/* d = a * b + c in float (bf16 products are exact in float); d may be c. */
template <class LA, class LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d,
                     const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LA> &a,
                     const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LB> &b,
                     const fragment<accumulator, 16, 16, 16, float> &c) {
  emu::wmma_enter("mma_sync", nullptr, 0, 0, 0);
  float bf[256];
  for (int i = 0; i < 256; i++) bf[i] = __bfloat162float(b.x[i]);
  for (int r = 0; r < 16; r++) {
    float ar[16];
    for (int k = 0; k < 16; k++) ar[k] = __bfloat162float(a.x[r * 16 + k]);
    for (int n = 0; n < 16; n++) {
      float s = c.x[r * 16 + n];
      for (int k = 0; k < 16; k++) s += ar[k] * bf[k * 16 + n];
      d.x[r * 16 + n] = s;
    }
  }
}

}  // namespace wmma
}  // namespace nvcuda

#endif
