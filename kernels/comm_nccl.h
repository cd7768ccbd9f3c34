/* NCCL for the gradient all-reduce on GPUs, behind comm.h: comm_mpi.c
 * creates the communicator once per run (the unique id made on rank 0 and
 * broadcast over MPI) and sends device buffers here. C-callable. */
#ifndef BERTRAIN_COMM_NCCL_H
#define BERTRAIN_COMM_NCCL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of an ncclUniqueId (NCCL_UNIQUE_ID_BYTES). */
#define COMM_NCCL_ID_BYTES 128

/* Rank 0: a new unique id into id (COMM_NCCL_ID_BYTES). */
void comm_nccl_unique_id(void *id);
/* Every rank, after its device is selected: joins the communicator of id
 * and makes the all-reduce stream. */
void comm_nccl_start(const void *id, int rank, int size);
/* buf[i] = sum over ranks, in place, on the all-reduce stream, ordered after
 * all work queued on the default stream and before any work queued there
 * afterwards (the optimizer step). */
void comm_nccl_allreduce_sum_f32(float *buf, size_t n);
/* The same in two halves: start queues the sum (after the work queued so
 * far) and returns; wait orders the default stream after every sum started. */
void comm_nccl_allreduce_start_f32(float *buf, size_t n);
void comm_nccl_allreduce_wait(void);
/* Destroys the communicator (no-op when none). */
void comm_nccl_stop(void);

#ifdef __cplusplus
}
#endif

#endif
