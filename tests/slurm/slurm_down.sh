#!/usr/bin/env bash
# Stop the test Slurm that slurm_up.sh started: cancel every job, then TERM (and if needed
# KILL) the daemons named in their pid files. Never pkill/killall: only our own pids.
set -uo pipefail

alive() {
  local pidfile=$1 name=$2 pid state
  [ -s "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$name" ] || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo Z)
  [ "$state" != Z ]
}

if command -v squeue >/dev/null 2>&1 && alive /run/slurmctld.pid slurmctld; then
  scancel --full --user=root 2>/dev/null || true
  for _ in $(seq 150); do
    [ -z "$(squeue -h 2>/dev/null)" ] && break
    sleep 0.2
  done
fi

daemons=("/run/slurmd.pid slurmd" "/run/slurmctld.pid slurmctld" "/run/munge/munged.pid munged")
for entry in "${daemons[@]}"; do
  read -r pidfile name <<<"$entry"
  alive "$pidfile" "$name" && kill "$(cat "$pidfile")"
done
for entry in "${daemons[@]}"; do
  read -r pidfile name <<<"$entry"
  for _ in $(seq 100); do alive "$pidfile" "$name" || break; sleep 0.1; done
  alive "$pidfile" "$name" && kill -9 "$(cat "$pidfile")"
  [ "$name" = munged ] || rm -f "$pidfile"
done
exit 0
