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

extern "C" int cuda_use_device(int local_rank, char *msg, size_t n) {
  int count = cuda_device_count(msg, n);
  if (count < 1) {
    if (count == 0) snprintf(msg, n, "no CUDA device is visible");
    return -1;
  }
  int dev = local_rank % count;
  cudaError_t err = cudaSetDevice(dev);
  if (err != cudaSuccess) {
    snprintf(msg, n, "cudaSetDevice(%d): %s", dev, cudaGetErrorString(err));
    return -1;
  }
  return dev;
}
