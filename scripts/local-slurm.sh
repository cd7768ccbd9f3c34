#!/usr/bin/env bash
# A throw-away single-node Slurm cluster (slurmctld + slurmd + a private
# munged) on one Debian 12 machine, for the slurm-labelled tests and for
# trying the batch scripts in slurm/ by hand. Needs root (slurmd runs as
# root); no systemd, no cgroups. Installs slurmctld, slurmd, slurm-client
# and munge with apt-get when they are missing.
#
#   eval "$(scripts/local-slurm.sh up)"   # start; stdout = export lines only, logs on stderr
#   sbatch slurm/pretrain.sbatch configs/demo.ini ; squeue ; scontrol show job ID
#   scripts/local-slurm.sh down           # cancel jobs, stop the daemons by PID, keep logs
#   scripts/local-slurm.sh env | status | logs
#
# Settings (environment):
#   LOCAL_SLURM_DIR     state/log/config directory, wiped on 'up'     [/tmp/bertrain-slurm]
#   LOCAL_SLURM_CPUS    pretend the node has N CPUs                   [real count]
#   LOCAL_SLURM_MEM     pretend the node has N MB of memory           [real size]
#   LOCAL_SLURM_GPUS    advertise N fake gres/gpu (/dev/null clones)  [0]
#   LOCAL_SLURM_PORT    slurmctld port; slurmd uses PORT+1            [6817]
#   LOCAL_SLURM_CRED_EXPIRE  seconds; also the delay before a requeued job starts [10]
#
# What batch scripts must respect here (as on most clusters): Debian's Open
# MPI speaks PMIx only, so MpiDefault=pmix (plain 'srun' works; --mpi=pmi2
# fails in MPI_Init); 'sbatch --signal=B:USR1@T' may arrive up to ~30 s early;
# with accounting_storage/none, sacct does not work but 'scontrol show job'
# does (MinJobAge=3600 keeps ended jobs).
set -euo pipefail

D=${LOCAL_SLURM_DIR:-/tmp/bertrain-slurm}
PORT=${LOCAL_SLURM_PORT:-6817}
CRED_EXPIRE=${LOCAL_SLURM_CRED_EXPIRE:-10}
GPUS=${LOCAL_SLURM_GPUS:-0}
CONF=$D/etc/slurm.conf

log() { echo "local-slurm: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pidof_file() { if [ -s "$1" ]; then cat "$1"; fi; }

print_env() {
  echo "export SLURM_CONF=$CONF"
  echo "export LOCAL_SLURM_DIR=$D"
  echo "export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"
}

install_pkgs() {
  local need=()
  command -v slurmctld >/dev/null || need+=(slurmctld)
  command -v slurmd    >/dev/null || need+=(slurmd)
  command -v sbatch    >/dev/null || need+=(slurm-client)
  command -v munged    >/dev/null || need+=(munge)
  [ ${#need[@]} -eq 0 ] && return 0
  log "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${need[@]}" >&2 ||
    { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${need[@]}" >&2; } ||
    die "could not install ${need[*]}"
}

wait_until() { # wait_until SECONDS CMD...
  local t=$1; shift; local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do [ $SECONDS -ge $end ] && return 1; sleep 0.2; done
}

node_idle() { [ "$(SLURM_CONF=$CONF sinfo -h -n "$NODE" -o %T 2>/dev/null)" = idle ]; }

cmd_up() {
  [ "$(id -u)" = 0 ] || die "must run as root (slurmd has to be root)"
  if alive "$(pidof_file "$D/run/slurmctld.pid")" || alive "$(pidof_file "$D/run/slurmd.pid")"; then
    die "a cluster is already running from $D (run: $0 down)"
  fi
  install_pkgs
  local t0=$SECONDS p
  for p in $PORT $((PORT + 1)); do
    if (echo > "/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is in use (set LOCAL_SLURM_PORT)"; fi
  done
  UP_STARTED=1   # from here on, a failure tears down what was started
  trap '[ "$UP_STARTED" = 1 ] && { log "bring-up failed, tearing down"; cmd_down; }' EXIT
  rm -rf "$D"
  mkdir -p "$D"/{etc,run,state,spool,log,munge}
  chmod 755 "$D" "$D"/*
  NODE=$(hostname -s)

  # A private munged on its own socket and key: /etc/munge and /run/munge are left alone.
  dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$D/munge/munge.key"
  munged --socket="$D/munge/munge.socket.2" --key-file="$D/munge/munge.key" \
         --pid-file="$D/run/munged.pid" --log-file="$D/log/munged.log" \
         --seed-file="$D/munge/munged.seed" ||
    die "munged failed: $(tail -3 "$D/log/munged.log" 2>/dev/null)"
  wait_until 10 sh -c "munge -n -S '$D/munge/munge.socket.2' | unmunge -S '$D/munge/munge.socket.2'" ||
    die "munge self-test failed"

  # The hardware as slurmd sees it, e.g. "CPUs=2 Boards=1 ... RealMemory=24105".
  local hw overrides="" gres=""
  hw=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //; s/ *UpTime=.*//')
  if [ -n "${LOCAL_SLURM_CPUS:-}" ]; then
    hw="CPUs=$LOCAL_SLURM_CPUS $(echo "$hw" | grep -o 'RealMemory=[0-9]*')"
    overrides="SlurmdParameters=config_overrides"   # else the node is INVAL (config != hardware)
  fi
  if [ -n "${LOCAL_SLURM_MEM:-}" ]; then
    hw=$(echo "$hw" | sed "s/RealMemory=[0-9]*/RealMemory=$LOCAL_SLURM_MEM/")
    overrides="SlurmdParameters=config_overrides"
  fi
  if [ "$GPUS" -gt 0 ]; then
    # gres/gpu needs File= pointing at character devices for CUDA_VISIBLE_DEVICES to be set.
    gres="Gres=gpu:$GPUS"
    mkdir -p "$D/fakedev"; local i
    for i in $(seq 0 $((GPUS - 1))); do mknod "$D/fakedev/nvidia$i" c 1 3; done
    echo "NodeName=$NODE Name=gpu File=$D/fakedev/nvidia[0-$((GPUS - 1))]" > "$D/etc/gres.conf"
  fi

  cat > "$CONF" <<CONFEOF
# generated by bertrain scripts/local-slurm.sh
ClusterName=bertrainci
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/munge.socket.2,cred_expire=$CRED_EXPIRE
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=pmix
ReturnToService=2
MinJobAge=3600
KillWait=5
InactiveLimit=0
MailProg=/bin/true
$( [ "$GPUS" -gt 0 ] && echo "GresTypes=gpu" )
$overrides
NodeName=$NODE NodeAddr=127.0.0.1 $hw $gres State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONFEOF

  # Both daemons fork into the background and write their PID files; cwd
  # $D/log so that core files land there and leftover slurmstepds can be found.
  (cd "$D/log" && slurmctld -f "$CONF") || die "slurmctld failed: $(tail -5 "$D/log/slurmctld.log")"
  wait_until 20 env SLURM_CONF="$CONF" scontrol ping ||
    die "slurmctld not answering: $(tail -5 "$D/log/slurmctld.log")"
  (cd "$D/log" && slurmd -f "$CONF") || die "slurmd failed: $(tail -5 "$D/log/slurmd.log")"
  wait_until 30 node_idle ||
    die "node $NODE not idle: $(SLURM_CONF=$CONF sinfo -N 2>&1) $(tail -5 "$D/log/slurmd.log")"
  log "up in $((SECONDS - t0))s: node $NODE ($hw${gres:+ $gres}), MpiDefault=pmix, dir=$D"
  UP_STARTED=0
  print_env | tee "$D/env.sh"
}

kill_wait() { # kill_wait PID NAME
  local p=$1 n=$2 i
  alive "$p" || return 0
  kill -TERM "$p" 2>/dev/null || true
  for i in $(seq 50); do alive "$p" || return 0; sleep 0.2; done
  log "$n ($p) ignored SIGTERM, sending SIGKILL"; kill -KILL "$p" 2>/dev/null || true
}

cmd_down() {
  [ -d "$D" ] || { log "nothing to stop in $D"; return 0; }
  local ctld slurmd mng p i jobs
  ctld=$(pidof_file "$D/run/slurmctld.pid"); slurmd=$(pidof_file "$D/run/slurmd.pid")
  mng=$(pidof_file "$D/run/munged.pid")
  if alive "$ctld"; then
    jobs=$(SLURM_CONF=$CONF squeue -h -o %A 2>/dev/null | sort -u || true)
    if [ -n "$jobs" ]; then
      log "cancelling jobs: $(echo $jobs)"
      SLURM_CONF=$CONF scancel $jobs 2>/dev/null || true
      for i in $(seq 75); do
        [ -z "$(SLURM_CONF=$CONF squeue -h 2>/dev/null)" ] && break; sleep 0.2
      done
    fi
  fi
  kill_wait "$slurmd" slurmd
  kill_wait "$ctld" slurmctld
  # slurmstepd processes reparent to init; ours have their cwd under $D.
  for p in $(pgrep -x slurmstepd || true); do
    case "$(readlink "/proc/$p/cwd" 2>/dev/null)" in
      "$D"/*) log "killing leftover slurmstepd $p"; kill_wait "$p" slurmstepd ;;
    esac
  done
  kill_wait "$mng" munged
  rm -f "$D"/run/*.pid
  log "down (logs kept in $D/log)"
}

cmd_status() {
  local n p
  for n in munged slurmctld slurmd; do
    p=$(pidof_file "$D/run/$n.pid")
    if alive "$p"; then echo "$n: running (pid $p)"; else echo "$n: stopped"; fi
  done
  if alive "$(pidof_file "$D/run/slurmctld.pid")"; then SLURM_CONF=$CONF sinfo 2>&1 || true; fi
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) print_env ;;
  status) cmd_status ;;
  logs) tail -n 50 "$D"/log/*.log ;;
  *) echo "usage: $0 up|down|env|status|logs" >&2; exit 2 ;;
esac
