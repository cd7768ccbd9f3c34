/* bertrain version: what this binary was built with and what it can see. */
#include <cblas.h> /* OpenBLAS's: openblas_get_config */
#include <hdf5.h>
#include <stdio.h>
#include <utf8proc.h>

#include "commands.h"

#ifdef BERTRAIN_HAVE_CUDA
#include "../kernels/cuda_info.h"
#endif

/* The test build against the CPU emulator (tests/cuda_emu) says so. */
#ifdef BERTRAIN_CUDA_EMULATED
#define CUDA_EMULATED_NOTE " (emulated on the CPU, for tests)"
#else
#define CUDA_EMULATED_NOTE ""
#endif

#ifndef BERTRAIN_VERSION
#define BERTRAIN_VERSION "unknown"
#endif

/* Without libmvec the CPU GELU and cross-entropy call the scalar erff and
 * expf: several times slower, which a user comparing speeds should see. */
#ifdef BERTRAIN_VECTOR_MATH
#define VECTOR_MATH_NOTE "vector erff/expf from glibc's libmvec"
#else
#define VECTOR_MATH_NOTE "scalar erff/expf (no libmvec at build time: slower GELU and cross-entropy)"
#endif

static int run(int argc, char **argv) {
  Config cfg;
  cli_parse(&CMD_VERSION, argc, argv, NULL, 0, &cfg);
  config_free(&cfg);
  unsigned maj, min, rel;
  H5get_libversion(&maj, &min, &rel);
  printf("bertrain %s\n", BERTRAIN_VERSION);
  printf("hdf5 %u.%u.%u, utf8proc %s\n", maj, min, rel, utf8proc_version());
  printf("cpu: %s; %s\n", openblas_get_config(), VECTOR_MATH_NOTE);
#ifdef BERTRAIN_HAVE_CUDA
  char msg[256];
  int n = cuda_device_count(msg, sizeof msg);
  if (n < 0)
    printf("cuda: built in; no usable device (%s)\n", msg);
  else
    printf("cuda: built in; %d device(s) visible%s\n", n, CUDA_EMULATED_NOTE);
#else
  printf("cuda: not built in (configure with -DBERTRAIN_CUDA=ON)\n");
#endif
  return 0;
}

const Command CMD_VERSION = {
  "version", "print the version, the libraries and whether CUDA is built in",
  "usage: bertrain version\n\n"
  "Prints bertrain's version, the HDF5 and utf8proc versions it runs with, the\n"
  "OpenBLAS build and whether the CPU ops use glibc's vector math functions,\n"
  "and whether it was built with CUDA (and how many GPUs it can see).\n",
  run, 0,
};
