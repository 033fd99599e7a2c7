#!/usr/bin/env bash
# The body of the tfod-finetune Slurm jobs (single_node.sbatch, multi_node.sbatch): runs the
# driver as one srun step and makes the job preemptible.
#
# usage (from a batch script): exec bash run_step.sh [srun options] -- [driver flags]
#
# - USR2 (sent by `#SBATCH --signal=B:USR2@T` before the time limit): forwarded to the step;
#   every task saves its current step and exits 5; then the job requeues itself, and the
#   requeued run (same command, same model_dir) resumes from that step.
# - TERM (scancel, `scontrol requeue`, preemption): forwarded; the tasks save before Slurm's
#   KillWait runs out. Slurm requeues a preempted job itself.
# - TFOD_REHEARSE=1: before the first run's srun step, rehearse on the batch host's CPU
#   (train.finetune --rehearse: the model, the restore, one batch, the losses); when it
#   fails, no srun step starts and the job ends with its exit status (3) and finding.
# Environment: TFOD_PYTHON (default: python), TFOD_ROOT (the project; default: the
# submission folder), TFOD_REHEARSE.
set -uo pipefail

srun_args=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
  srun_args+=("$1")
  shift
done
if [ "$#" -eq 0 ]; then
  echo "run_step.sh: usage: run_step.sh [srun options] -- [driver flags]" >&2
  exit 2
fi
shift

# A requeued run must resume, not start over: drop --fresh after the first run.
if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then
  driver_args=()
  for arg in "$@"; do
    case "$arg" in
      --fresh | --fresh=true | --fresh=True) echo "run_step.sh: requeued run: resuming (--fresh dropped)" ;;
      *) driver_args+=("$arg") ;;
    esac
  done
  set -- "${driver_args[@]}"
fi

python=${TFOD_PYTHON:-python}
root=${TFOD_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}
cd "$root" || exit 2
say() { echo "[tfod-finetune job ${SLURM_JOB_ID:-?}] $*"; }
say "run ${SLURM_RESTART_COUNT:-0} on $(hostname -s): srun ${srun_args[*]} $python -m train.finetune $*"

if [ "${TFOD_REHEARSE:-0}" = "1" ] && [ "${SLURM_RESTART_COUNT:-0}" -eq 0 ]; then
  say "rehearsing on $(hostname -s) before the step: $python -m train.finetune $* --rehearse"
  "$python" -m train.finetune "$@" --rehearse
  rehearsal=$?
  if [ "$rehearsal" -ne 0 ]; then
    say "rehearsal failed (status $rehearsal): no step started"
    exit "$rehearsal"
  fi
fi

requeue=0
step=""
# shellcheck disable=SC2329  # called from the traps below
forward() {
  [ -n "$step" ] && kill "-$1" "$step" 2>/dev/null
}
# shellcheck disable=SC2329  # called from the traps below
on_usr2() {
  say "USR2: the time limit is near; saving, then requeueing"
  requeue=1
  forward USR2
}
# shellcheck disable=SC2329  # called from the traps below
on_term() {
  say "TERM: saving, then stopping"
  forward TERM
}
trap on_usr2 USR2
trap on_term TERM

# --wait: once one task has ended, the others get this long to save and end by themselves
# (a worker that stopped would otherwise have its peers killed before the chief saves).
srun --wait=120 "${srun_args[@]}" "$python" -m train.finetune "$@" &
step=$!
# `wait` returns early whenever a trapped signal arrives: keep waiting while the step runs.
while kill -0 "$step" 2>/dev/null; do
  wait "$step"
done
wait "$step"
status=$?
say "step ended with status $status"

if [ "$requeue" -eq 1 ] && [ "$status" -eq 5 ]; then
  say "requeueing job ${SLURM_JOB_ID} (it resumes from the checkpoint just saved)"
  scontrol requeue "${SLURM_JOB_ID}"
fi
exit "$status"
