/* comm.h over MPI: MPI_Allreduce, MPI_Bcast and MPI_Barrier on
 * MPI_COMM_WORLD, with MPI_ERRORS_RETURN so that each return code is
 * checked and a failure names the operation and the rank; on GPUs, after
 * comm_use_nccl, the gradient all-reduce goes to NCCL (kernels/comm_nccl.cu). */
#include "comm.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>

#include "util.h"

#ifdef BERTRAIN_HAVE_CUDA
#include "comm_nccl.h"
#endif

static CommInfo g_info = {0, 1, 0, 1};
static int g_ready = 0;
#ifdef BERTRAIN_HAVE_CUDA
static int g_nccl = 0;
#endif

/* Largest element count one MPI call moves (MPI counts are ints). */
#define MAX_COUNT (1 << 28)

static void check(int rc, const char *what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "code %d", rc);
  die("%s failed (rank %d of %d): %s", what, g_info.rank, g_info.size, text);
}

CommInfo comm_init(void) {
  if (g_ready) return g_info;
  g_ready = 1;
  if (!mpi_active()) return g_info;
  check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check(MPI_Comm_rank(MPI_COMM_WORLD, &g_info.rank), "MPI_Comm_rank");
  check(MPI_Comm_size(MPI_COMM_WORLD, &g_info.size), "MPI_Comm_size");
  MPI_Comm node;
  check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_info.rank, MPI_INFO_NULL,
                            &node), "MPI_Comm_split_type");
  check(MPI_Comm_rank(node, &g_info.local_rank), "MPI_Comm_rank (node)");
  check(MPI_Comm_size(node, &g_info.local_size), "MPI_Comm_size (node)");
  check(MPI_Comm_free(&node), "MPI_Comm_free");
  return g_info;
}

CommInfo comm_info(void) { return comm_init(); }

static int multi(void) { return comm_init().size > 1; }

void comm_stop(void) {
#ifdef BERTRAIN_HAVE_CUDA
  if (g_nccl) comm_nccl_stop();
  g_nccl = 0;
#endif
}

void comm_use_nccl(void) {
#ifdef BERTRAIN_HAVE_CUDA
  if (!multi() || g_nccl) return;
  unsigned char id[COMM_NCCL_ID_BYTES] = {0};
  if (g_info.rank == 0) comm_nccl_unique_id(id);
  comm_broadcast(id, sizeof id, 0);
  comm_nccl_start(id, g_info.rank, g_info.size);
  g_nccl = 1;
  info("gradients: summed with NCCL across %d ranks, one GPU each", g_info.size);
#else
  die("NCCL requested, but this bertrain was built without CUDA (cmake -DBERTRAIN_CUDA=ON)");
#endif
}

void comm_allreduce_sum_f32(float *buf, size_t n) {
  if (!multi()) return;
#ifdef BERTRAIN_HAVE_CUDA
  if (g_nccl) {
    comm_nccl_allreduce_sum_f32(buf, n);
    return;
  }
#endif
  for (size_t done = 0; done < n;) {
    size_t k = n - done < MAX_COUNT ? n - done : MAX_COUNT;
    check(MPI_Allreduce(MPI_IN_PLACE, buf + done, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
          "MPI_Allreduce of the gradients");
    done += k;
  }
}

/* The sums comm_allreduce_start_f32 has started. */
static MPI_Request *g_reqs;
static int g_nreqs;
static size_t g_reqs_cap;

void comm_allreduce_start_f32(float *buf, size_t n) {
  if (!multi()) return;
#ifdef BERTRAIN_HAVE_CUDA
  if (g_nccl) {
    comm_nccl_allreduce_start_f32(buf, n);
    return;
  }
#endif
  for (size_t done = 0; done < n;) {
    size_t k = n - done < MAX_COUNT ? n - done : MAX_COUNT;
    grow((void **)&g_reqs, &g_reqs_cap, (size_t)g_nreqs + 1, sizeof *g_reqs);
    check(MPI_Iallreduce(MPI_IN_PLACE, buf + done, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                         &g_reqs[g_nreqs++]), "MPI_Iallreduce of a gradient bucket");
    done += k;
  }
  /* Open MPI moves non-blocking collectives on only inside MPI calls. */
  int flag;
  check(MPI_Testall(g_nreqs, g_reqs, &flag, MPI_STATUSES_IGNORE), "MPI_Testall");
}

void comm_allreduce_wait(void) {
  if (!multi()) return;
#ifdef BERTRAIN_HAVE_CUDA
  if (g_nccl) {
    comm_nccl_allreduce_wait();
    return;
  }
#endif
  check(MPI_Waitall(g_nreqs, g_reqs, MPI_STATUSES_IGNORE), "MPI_Waitall of the gradient buckets");
  g_nreqs = 0;
}

void comm_allreduce_sum_f64(double *buf, int n) {
  if (!multi()) return;
  check(MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
        "MPI_Allreduce of host values (step statistics, flags)");
}

void comm_broadcast(void *buf, size_t bytes, int root) {
  if (!multi()) return;
  for (size_t done = 0; done < bytes;) {
    size_t k = bytes - done < MAX_COUNT ? bytes - done : MAX_COUNT;
    check(MPI_Bcast((char *)buf + done, (int)k, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
    done += k;
  }
}

void comm_barrier(void) {
  if (!multi()) return;
  check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
}
