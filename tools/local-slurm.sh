#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for trying `bench sweep --launcher slurm`
# (and for the tests, through tests/slurm_cluster.py).
#
#   tools/local-slurm.sh start [DIR]   write DIR/slurm.conf, start munged, slurmctld, slurmd;
#                                      wait until sinfo shows the node idle
#   tools/local-slurm.sh stop  [DIR]   stop the daemons this script started (by their PID files)
#
# DIR (default: $BENCH_SLURM_DIR or /tmp/bench-slurm) holds the configuration, state,
# spool, PID and log files. Clients find the cluster through SLURM_CONF=DIR/slurm.conf:
# `start` prints the export line. Needs root and Debian's slurm-wlm and munge packages
# (apt-get install slurm-wlm munge). Ports: $BENCH_SLURM_PORT (default 6817) and the next.
set -euo pipefail

cmd=${1:-}
dir=${2:-${BENCH_SLURM_DIR:-/tmp/bench-slurm}}
conf="$dir/slurm.conf"
port=${BENCH_SLURM_PORT:-6817}

die() { echo "local-slurm: $*" >&2; exit 2; }

alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pidfile() {  # stop_pidfile FILE: TERM, wait up to 10 s, then KILL
    local f=$1 pid
    [[ -f $f ]] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

write_conf() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc obeys OMP_NUM_THREADS
    mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    mkdir -p "$dir/state" "$dir/spool"
    cat > "$conf" <<EOF
# Written by tools/local-slurm.sh: a one-node cluster for bench's Slurm launcher.
ClusterName=bench
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
# A requeued job waits until its old credential expires (default 120 s) and the
# scheduler's next pass (default 60 s): here a requeued worker restarts in ~6 s.
AuthInfo=cred_expire=5
SchedulerParameters=sched_interval=1,bf_interval=1
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
KillWait=30
MinJobAge=300
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    if pgrep -x munged >/dev/null; then return 0; fi  # one munged serves the machine
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    [[ -f /etc/munge/munge.key ]] || die "/etc/munge/munge.key missing (reinstall munge)"
    runuser -u munge -- /usr/sbin/munged
    touch "$dir/munged.started"  # ours: `stop` stops it
}

case $cmd in
start)
    [[ $(id -u) == 0 ]] || die "start needs root (slurmd runs jobs as their users)"
    command -v slurmctld >/dev/null || die "slurmctld not found: apt-get install slurm-wlm munge"
    mkdir -p "$dir"
    if alive "$dir/slurmctld.pid" && alive "$dir/slurmd.pid"; then
        echo "already running; export SLURM_CONF=$conf"
        exit 0
    fi
    write_conf
    start_munge
    export SLURM_CONF=$conf
    alive "$dir/slurmctld.pid" || slurmctld -f "$conf"
    alive "$dir/slurmd.pid" || slurmd -f "$conf"
    for _ in $(seq 600); do
        state=$(sinfo -h -o %t 2>/dev/null || true)
        if [[ $state == idle ]]; then
            echo "one-node Slurm cluster up; export SLURM_CONF=$conf"
            exit 0
        fi
        if [[ $state == drain* || $state == down* ]]; then
            scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true
        fi
        sleep 0.1
    done
    die "the node did not become idle within 60 s (sinfo: ${state:-no answer}); see $dir/*.log"
    ;;
stop)
    SLURM_CONF=$conf scancel --quiet --user=root 2>/dev/null || true
    stop_pidfile "$dir/slurmd.pid"
    stop_pidfile "$dir/slurmctld.pid"
    if [[ -f $dir/munged.started ]]; then
        stop_pidfile /run/munge/munged.pid
        rm -f "$dir/munged.started"
    fi
    echo "stopped"
    ;;
*)
    die "usage: tools/local-slurm.sh start|stop [DIR]"
    ;;
esac
