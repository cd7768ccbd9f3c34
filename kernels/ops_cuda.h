/* The CUDA backend of the ops table (see ops.h for the contract). Device
 * memory is plain cudaMalloc memory on the current device; everything runs
 * on the default stream. Callable from C. */
#ifndef BERTRAIN_OPS_CUDA_H
#define BERTRAIN_OPS_CUDA_H

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

const Ops *ops_cuda(void);

#ifdef __cplusplus
}
#endif

#endif
