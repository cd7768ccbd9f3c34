/* Counter-based random numbers (Random123 Philox4x32-10). A stream is named
 * by (seed, a, b): the same names give the same numbers on any rank, in any
 * order of work, which is what makes prep and training rank-independent. */
#ifndef BERTRAIN_RNG_H
#define BERTRAIN_RNG_H

#include <Random123/philox.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Rng {
  philox4x32_key_t key;
  philox4x32_ctr_t ctr;
  philox4x32_ctr_t out;
  int left; /* unused words in out */
} Rng;

static inline void rng_init(Rng *r, uint64_t seed, uint32_t a, uint32_t b) {
  r->key.v[0] = (uint32_t)seed;
  r->key.v[1] = (uint32_t)(seed >> 32);
  r->ctr.v[0] = 0;
  r->ctr.v[1] = 0;
  r->ctr.v[2] = a;
  r->ctr.v[3] = b;
  r->left = 0;
}

static inline uint32_t rng_u32(Rng *r) {
  if (r->left == 0) {
    r->out = philox4x32(r->ctr, r->key);
    if (++r->ctr.v[0] == 0) r->ctr.v[1]++;
    r->left = 4;
  }
  return r->out.v[4 - r->left--];
}

/* Uniform double in [0, 1) with 53 random bits. */
static inline double rng_uniform(Rng *r) {
  uint64_t hi = rng_u32(r) >> 5, lo = rng_u32(r) >> 6;
  return ((double)hi * 67108864.0 + (double)lo) * (1.0 / 9007199254740992.0);
}

/* Uniform integer in [0, n), n > 0, without modulo bias. */
static inline uint32_t rng_below(Rng *r, uint32_t n) {
  uint32_t limit = (uint32_t)(-n) % n; /* 2^32 mod n */
  for (;;) {
    uint64_t m = (uint64_t)rng_u32(r) * n;
    if ((uint32_t)m >= limit) return (uint32_t)(m >> 32);
  }
}

/* Fisher-Yates shuffle of n elements of size elem. */
void rng_shuffle(Rng *r, void *base, size_t n, size_t elem);

#endif
