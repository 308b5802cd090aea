#!/usr/bin/env bash
# A real single-node Slurm on this machine, for the scheduler tests (tests/test_slurm.py).
#   scripts/slurm.sh [start]  install slurm-wlm and munge if missing (apt), write a one-node slurm.conf, start
#                             munged, slurmctld and slurmd, and wait until `sinfo` shows the node idle
#   scripts/slurm.sh stop     stop the three daemons this script started
# Idempotent and quick when everything already runs. Needs root (CI runs as root). No cgroups, no systemd:
# processes are tracked with proctrack/linuxproc, so it works inside containers.
set -euo pipefail

CONF_DIR=/etc/slurm
STATE_DIR=/var/lib/slurm-wyckoffdiff
LOG_DIR=/var/log/slurm-wyckoffdiff
RUN_DIR=/run/slurm-wyckoffdiff
NODE=$(hostname -s)
WAIT_S=60

log() { echo "slurm.sh: $*" >&2; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null; then
        return
    fi
    log 'installing slurm-wlm and munge (apt)'
    export DEBIAN_FRONTEND=noninteractive
    # Other jobs on a shared machine may hold the dpkg lock: wait for it instead of failing.
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

write_config() {
    mkdir -p "$CONF_DIR" "$STATE_DIR/ctld" "$STATE_DIR/d" "$LOG_DIR" "$RUN_DIR"
    local cpus
    cpus=$(nproc)
    # Rewritten every time: the host name or core count of a CI runner can differ from the last run's.
    cat >"$CONF_DIR/slurm.conf" <<EOF
# Written by aiida-wyckoffdiff scripts/slurm.sh: one node, this host, for tests.
ClusterName=wyckoffdiff
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/d
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName=$NODE CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return
    fi
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
        fi
    fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
    chmod 0400 /etc/munge/munge.key
    chmod 0755 /run/munge
    if id munge >/dev/null 2>&1; then
        su -s /bin/sh munge -c 'munged' || munged --force
    else
        munged --force
    fi
    munge -n | unmunge >/dev/null
}

node_idle() { [ "$(sinfo -h -n "$NODE" -o '%t' 2>/dev/null | head -1)" = idle ]; }

start() {
    install_packages
    write_config
    start_munge
    running "$RUN_DIR/slurmctld.pid" || slurmctld
    running "$RUN_DIR/slurmd.pid" || slurmd
    local waited=0
    until node_idle; do
        if [ "$waited" -ge "$WAIT_S" ]; then
            log "node $NODE not idle after ${WAIT_S} s: $(sinfo -h -N -o '%N %t %E' 2>&1 | head -3)"
            tail -5 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
            exit 1
        fi
        # A node left down or drained by an earlier run comes back here.
        scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
        sleep 1
        waited=$((waited + 1))
    done
    log "node $NODE idle ($(nproc) CPUs), partition debug"
}

stop() {
    for daemon in slurmd slurmctld; do
        if running "$RUN_DIR/$daemon.pid"; then
            kill "$(cat "$RUN_DIR/$daemon.pid")"
        fi
    done
    if [ -f /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; then
        kill "$(cat /run/munge/munged.pid)"
    fi
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
