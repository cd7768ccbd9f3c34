/* One pretrain job per run directory. A second job started on the same
 * directory (the same sbatch submitted twice, a run started again before
 * the first has ended) would resume from the same checkpoint and then
 * overwrite the first one's checkpoints and metrics in turn. */
#ifndef BERTRAIN_RUN_LOCK_H
#define BERTRAIN_RUN_LOCK_H

/* Takes an exclusive lock on RUN_DIR/pretrain.lock, held until the process
 * ends however it ends (a POSIX record lock, which also works on NFS with
 * its lock service), and writes who holds it into the file. Dies, naming
 * the holder, when a live process of this machine holds it; a holder on
 * another machine is waited for up to 3 minutes first (a crashed node's
 * lock outlives it that long on NFS). Warns and goes on unprotected where
 * the file system has no locks. Call on one rank. */
void run_lock(const char *run_dir);

#endif
