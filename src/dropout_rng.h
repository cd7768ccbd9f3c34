/* The dropout mask as a pure function of (seed, step, tensor, element), so
 * the CPU and CUDA backends, and any number of ranks, drop the same
 * elements. Included by C and by CUDA (host and device) code alike.
 *
 * Mapping (Random123 Philox4x32-10):
 *   key     = { seed low 32 bits, (seed high 32 bits) ^ DROPOUT_KEY_TAG }
 *   counter = { (e / 4) low 32 bits, (e / 4) high 32 bits, tensor, step }
 *   bits    = word (e % 4) of philox4x32(counter, key)
 *   u       = (bits >> 8) * 2^-24, a float in [0, 1) with 24 random bits
 *   keep    = u >= p; a kept element is scaled by 1 / (1 - p).
 * The tag keeps these streams apart from rng.h's (seed, a, b) streams, which
 * put a and b in the same counter words. */
#ifndef BERTRAIN_DROPOUT_RNG_H
#define BERTRAIN_DROPOUT_RNG_H

#if defined(__CUDACC__)
#ifndef R123_CUDA_DEVICE
#define R123_CUDA_DEVICE __host__ __device__
#endif
#define DROPOUT_FN __host__ __device__ static inline
#elif defined(__GNUC__)
/* Inlined whole so that a loop over blocks can be vectorised (ops_cpu.c). */
#define DROPOUT_FN static inline __attribute__((always_inline))
#else
#define DROPOUT_FN static inline
#endif

#include <Random123/philox.h>
#include <math.h>
#include <stdint.h>

#define DROPOUT_KEY_TAG 0x44524f50u /* "DROP" */

/* Names one dropout site in one training step. elem_offset is the global
 * index of the first element the call covers: for a tensor laid out with
 * the sample index outermost, (first global sample) * (elements per sample),
 * so a rank holding samples [r*b, r*b+b) draws the single-process mask. */
typedef struct DropoutKey {
  uint64_t seed;
  uint32_t step;
  uint32_t tensor;
  uint64_t elem_offset;
} DropoutKey;

/* The four words for elements 4*block .. 4*block+3. */
DROPOUT_FN philox4x32_ctr_t dropout_block(uint64_t seed, uint32_t step, uint32_t tensor,
                                          uint64_t block) {
  philox4x32_key_t k;
  philox4x32_ctr_t c;
  k.v[0] = (uint32_t)seed;
  k.v[1] = (uint32_t)(seed >> 32) ^ DROPOUT_KEY_TAG;
  c.v[0] = (uint32_t)block;
  c.v[1] = (uint32_t)(block >> 32);
  c.v[2] = tensor;
  c.v[3] = step;
  return philox4x32(c, k);
}

DROPOUT_FN float dropout_uniform(uint32_t bits) {
  return (float)(bits >> 8) * (1.0f / 16777216.0f);
}

/* The least t with t * 2^-24 >= p: dropout_uniform(bits) >= p exactly when
 * (bits >> 8) >= t, a test on integers (p * 2^24 is exact, a scaling by a
 * power of two). */
DROPOUT_FN uint32_t dropout_threshold(float p) {
  return (uint32_t)ceilf(p * 16777216.0f);
}

/* 1 when element e is kept, given the words r of its block (e / 4). */
DROPOUT_FN int dropout_keep_in(philox4x32_ctr_t r, uint64_t e, float p) {
  return dropout_uniform(r.v[e & 3]) >= p;
}

/* 1 when element e (global index) is kept at drop probability p. */
DROPOUT_FN int dropout_keep(uint64_t seed, uint32_t step, uint32_t tensor, uint64_t e, float p) {
  return dropout_keep_in(dropout_block(seed, step, tensor, e >> 2), e, p);
}

#endif
