#include <cstdio>

#include <cuda_runtime.h>

#include "cuda_info.h"

extern "C" int cuda_device_count(char *msg, size_t n) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    snprintf(msg, n, "cudaGetDeviceCount: %s", cudaGetErrorString(err));
    return -1;
  }
  return count;
}
