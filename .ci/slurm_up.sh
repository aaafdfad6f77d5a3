#!/usr/bin/env bash
# A one-node SLURM on this machine (Debian's slurm-wlm 22.05: slurmctld, slurmd, munge),
# for tests/experiments/test_slurm.py. Idempotent: installs what is missing, writes the
# config, starts what is not running, and waits until the node accepts jobs.
# Needs root and apt-get. Prints the reason and exits non-zero when SLURM can't start.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" != 0 ]; then echo "slurm_up: needs root (apt-get, /etc/slurm)" >&2; exit 2; fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
   || ! command -v munged >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi
host=$(hostname -s)
cpus=$(nproc)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
conf=/etc/slurm/slurm.conf
want=$(cat <<CONF
# written by codemix .ci/slurm_up.sh: one node, this machine
ClusterName=codemix
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobRequeue=1
KillWait=30
MinJobAge=3600
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=defer_batch=0
MessageTimeout=30
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
)
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
  echo "$want" > "$conf"
  restart=1
fi
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key /run/munge && chmod 400 /etc/munge/munge.key
chown -R munge:munge /var/lib/munge /var/log/munge 2>/dev/null || true
if ! pgrep -u munge -x munged >/dev/null; then
  runuser -u munge -- /usr/sbin/munged
fi
if [ "${restart:-0}" = 1 ]; then
  [ -f /run/slurmctld.pid ] && kill "$(cat /run/slurmctld.pid)" 2>/dev/null || true
  [ -f /run/slurmd.pid ] && kill "$(cat /run/slurmd.pid)" 2>/dev/null || true
  sleep 1
fi
if ! scontrol ping 2>/dev/null | grep -q UP; then
  /usr/sbin/slurmctld
fi
if ! { [ -f /run/slurmd.pid ] && kill -0 "$(cat /run/slurmd.pid)" 2>/dev/null; }; then
  /usr/sbin/slurmd
fi
for _ in $(seq 60); do
  state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
  case "$state" in
    idle*|mixed*|allocated*) echo "slurm_up: node $host $state"; exit 0 ;;
    down*|drain*) scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
  esac
  sleep 1
done
echo "slurm_up: node $host did not become ready (state: ${state:-none}); see /var/log/slurm/" >&2
exit 1
