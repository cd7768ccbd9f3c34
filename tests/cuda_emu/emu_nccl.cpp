/* The emulator's NCCL: one communicator over MPI_COMM_WORLD; the
 * all-reduce is MPI_Allreduce on the (host) buffers at the call, in chunks
 * MPI's int counts can hold. */
#include <limits.h>
/* the C API only (Open MPI's mpi.h pulls in its C++ bindings otherwise) */
#define OMPI_SKIP_MPICXX 1
#include <mpi.h>
#include <string.h>

#include "emu_internal.h"
#include "nccl.h"

struct EmuNccl {
  int rank, size;
};

extern "C" {

const char *ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (emulator)";
    case ncclSystemError: return "unhandled system error (emulator)";
    case ncclInternalError: return "internal error (emulator)";
    case ncclInvalidArgument: return "invalid argument (emulator)";
    case ncclInvalidUsage: return "invalid usage (emulator)";
  }
  return "unknown result (emulator)";
}

const char *ncclGetLastError(ncclComm_t) { return nullptr; }

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
  memset(id, 0, sizeof *id);
  memcpy(id->internal, "bertrain-emu", 12);
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
  int init = 0, size = 0, me = -1;
  if (MPI_Initialized(&init) != MPI_SUCCESS || !init) return ncclInvalidUsage;
  if (memcmp(id.internal, "bertrain-emu", 12) != 0) return ncclInvalidArgument;
  if (MPI_Comm_size(MPI_COMM_WORLD, &size) != MPI_SUCCESS ||
      MPI_Comm_rank(MPI_COMM_WORLD, &me) != MPI_SUCCESS)
    return ncclSystemError;
  if (nranks != size || rank != me) return ncclInvalidArgument;
  *comm = new EmuNccl{rank, nranks};
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t type,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t) {
  if (!comm || type != ncclFloat || op != ncclSum) return ncclInvalidArgument;
  if (count && (!emu_is_device_range(send, count * sizeof(float)) ||
                !emu_is_device_range(recv, count * sizeof(float))))
    return ncclInvalidArgument;
  for (size_t off = 0; off < count;) {
    int n = count - off > (size_t)INT_MAX ? INT_MAX : (int)(count - off);
    float *r = (float *)recv + off;
    const void *s = send == recv ? MPI_IN_PLACE : (const void *)((const float *)send + off);
    if (MPI_Allreduce(s, r, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
      return ncclSystemError;
    off += (size_t)n;
  }
  return ncclSuccess;
}

}  // extern "C"
