/* The collective operations data-parallel training needs, behind one small
 * interface: the CPU build implements it with MPI (comm_mpi.c); a GPU build
 * can put NCCL behind comm_allreduce_sum_f32 for device buffers while MPI
 * keeps the small host-side operations.
 *
 * Every rank must make the same calls in the same order. Every failure dies
 * naming the operation and the rank (util.h's die() then ends the whole job),
 * so no rank is left waiting. With one rank every operation is a no-op. */
#ifndef BERTRAIN_COMM_H
#define BERTRAIN_COMM_H

#include <stddef.h>

typedef struct CommInfo {
  int rank, size;             /* in the whole job */
  int local_rank, local_size; /* among the ranks sharing this node's memory */
} CommInfo;

/* After mpi_start(): makes MPI errors return codes (checked here), finds
 * the node-local rank (MPI_Comm_split_type, shared memory: works under
 * mpirun and srun alike). Without MPI running: one rank. */
CommInfo comm_init(void);
CommInfo comm_info(void);

/* buf[i] = sum over ranks of buf[i], in place, identical on every rank.
 * buf is a model buffer (model_grads_dev): device memory on GPU backends. */
void comm_allreduce_sum_f32(float *buf, size_t n);
/* The same sum, started now and left to run (MPI_Iallreduce, or NCCL on its
 * own stream) while the caller goes on, e.g. with the backward of earlier
 * layers; buf must not be touched until comm_allreduce_wait, which waits
 * for every sum started. Each call also lets the earlier ones progress. */
void comm_allreduce_start_f32(float *buf, size_t n);
void comm_allreduce_wait(void);
/* GPU runs: from now on comm_allreduce_sum_f32 takes device buffers and
 * sums them with NCCL, one communicator for the run (its unique id made on
 * rank 0 and broadcast over MPI). Every rank calls it once, after its
 * device is selected; with one rank it does nothing. Dies in a build
 * without CUDA. */
void comm_use_nccl(void);
/* Ends what comm_use_nccl started (before MPI_Finalize); safe to call
 * when nothing was started. */
void comm_stop(void);
/* The same for a few host doubles (losses, counts, flags). */
void comm_allreduce_sum_f64(double *buf, int n);
/* Copies root's host buffer to every rank. */
void comm_broadcast(void *buf, size_t bytes, int root);
void comm_barrier(void);

#endif
