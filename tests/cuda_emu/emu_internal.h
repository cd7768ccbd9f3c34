/* Shared by the emulator's sources. */
#ifndef EMU_INTERNAL_H
#define EMU_INTERNAL_H

#include <stddef.h>

#include "cuda_runtime.h"

/* The error cudaGetLastError returns next (the first one is kept). */
void emu_set_error(cudaError_t err);
/* Reports a broken rule inside the running kernel and ends the process. */
[[noreturn]] void emu_kernel_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "N bytes past the end of a M-byte allocation" or "not near device
 * memory", for fault reports. */
void emu_describe_address(const void *p, char *out, size_t n);

/* The start and size of the device allocation holding p; NULL when p is
 * not device memory. */
const void *emu_device_alloc(const void *p, size_t *bytes);

/* Counts for BERTRAIN_EMU_STATS=1 (printed at exit): kernel launches and
 * cuBLAS / cuBLASLt product calls. */
void emu_count_gemm(void);

#endif
