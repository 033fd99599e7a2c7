#!/usr/bin/env bash
# GPU check (under 10 minutes on one GPU): install the GPU stack, then every GPU-only path of
# the driver (scripts/gpu_smoke.py: driver vs raw train_loop steps/s on MirroredStrategy,
# --batch_size auto on GPU memory, a forced TRAIN.oom, --eval_on_gpu, a GPU-trained export),
# printed as one JSON line; then the Docker image on the real base when it can be pulled.
#
# usage: bash scripts/gpu_smoke.sh [STEPS]        (env: VENV, default .venv-gpu; OUT)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-200}
venv=${VENV:-.venv-gpu}
out=${OUT:-bench_out/gpu}
start=$(date +%s)

if ! nvidia-smi -L; then
  echo "gpu_smoke: no GPU visible (nvidia-smi failed)" >&2
  exit 1
fi
bash scripts/setup_env.sh tf215-gpu "$venv"
echo "gpu_smoke: stack ready after $(($(date +%s) - start)) s"
"$venv/bin/python" - <<'PY'
from train import compat

compat.apply()
import tensorflow as tf

gpus = tf.config.list_physical_devices("GPU")
print(f"gpu_smoke: TensorFlow {tf.__version__}, built with CUDA {tf.test.is_built_with_cuda()}")
for gpu in gpus:
    details = tf.config.experimental.get_device_details(gpu)
    print(f"gpu_smoke: {gpu.name}: {details.get('device_name')} cc {details.get('compute_capability')}")
if not gpus:
    raise SystemExit("gpu_smoke: TensorFlow sees no GPU")
PY
# Every GPU-only path of the driver, one JSON line (scripts/gpu_smoke.py).
smoke_rc=0
"$venv/bin/python" scripts/gpu_smoke.py --steps "$steps" --out "$out" || smoke_rc=$?

# The container path on the GPU: the real image from the real base, when this machine has a
# Docker engine and can pull the base; otherwise one line saying why not.
base=tensorflow/tensorflow:$(sed -n 's/^tensorflow-cpu==//p' constraints/tf215-cpu.txt)-gpu
if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
  echo "gpu_smoke: container: skipped, no Docker engine runs here"
elif ! timeout 300 docker pull -q "$base" >/dev/null 2>&1; then
  echo "gpu_smoke: container: skipped, $base could not be pulled (no registry reachable?)"
elif ! docker build -q -t tfod-finetune:gpu-smoke . >"$out/container-build.log" 2>&1; then
  echo "gpu_smoke: container: the image did not build (log: $out/container-build.log)"
else
  mkdir -p "$out/container-runs" && chown 1000:1000 "$out/container-runs" 2>/dev/null || true
  rc=0
  docker run --gpus all --init --rm --user 1000:1000 -v "$(pwd)/$out/container-runs:/runs" \
    --entrypoint python tfod-finetune:gpu-smoke -m train.demo --out /runs/demo \
    >"$out/container-demo.log" 2>&1 || rc=$?
  gpus=$(docker run --gpus all --rm --entrypoint python tfod-finetune:gpu-smoke -c \
    "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))" 2>/dev/null \
    | tail -1 || true)
  echo "gpu_smoke: container: demo exit $rc with --gpus all, GPUs seen in the image: ${gpus:-?}"
fi
echo "gpu_smoke: done in $(($(date +%s) - start)) s"
exit "$smoke_rc"
