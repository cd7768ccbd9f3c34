#include "rng.h"

#include <string.h>

#include "util.h"

void rng_shuffle(Rng *r, void *base, size_t n, size_t elem) {
  unsigned char *p = base, tmp[64];
  if (elem > sizeof tmp) die("rng_shuffle: element of %zu bytes is too large (shuffle indices instead)", elem);
  for (size_t i = n; i > 1; i--) {
    size_t j = rng_below(r, (uint32_t)i);
    if (j == i - 1) continue;
    memcpy(tmp, p + j * elem, elem);
    memcpy(p + j * elem, p + (i - 1) * elem, elem);
    memcpy(p + (i - 1) * elem, tmp, elem);
  }
}
