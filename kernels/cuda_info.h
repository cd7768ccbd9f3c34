/* Host-callable CUDA queries, usable from C. */
#ifndef BERTRAIN_CUDA_INFO_H
#define BERTRAIN_CUDA_INFO_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of visible CUDA devices, or -1 with the CUDA error in msg. */
int cuda_device_count(char *msg, size_t n);
/* Makes device local_rank % count current for this process (one rank per
 * GPU on a node); returns its index, or -1 with the CUDA error in msg. */
int cuda_use_device(int local_rank, char *msg, size_t n);

#ifdef __cplusplus
}
#endif

#endif
