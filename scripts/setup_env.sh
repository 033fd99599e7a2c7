#!/usr/bin/env bash
# Create (or reuse) a virtualenv with one of the tested stacks and the project installed.
#
# usage: scripts/setup_env.sh STACK VENV
#   STACK: tf215-cpu (primary, CI), tf215-gpu (same pins, CUDA wheels), tf221-cpu (newest TF),
#          tf215-image (same pins over the TensorFlow of a tensorflow/tensorflow:2.15.1-gpu
#          image: the Dockerfile's stack)
#
# Each stack is one lock file in constraints/, installed with --no-deps so pip never
# re-resolves it (tf-models-official and the OD sdist declare deps, e.g. plain
# `tensorflow` and tensorflow-text, that would pull a second TF on top of tensorflow-cpu).
# A stamp file keyed on the lock and setup.py makes a second call a no-op.
set -euo pipefail

stack=${1:?usage: setup_env.sh STACK VENV}
venv=${2:?usage: setup_env.sh STACK VENV}
root=$(cd "$(dirname "$0")/.." && pwd)
lock="$root/constraints/$stack.txt"
python=${PYTHON:-python3.11}

case "$stack" in
  tf215-gpu | tf215-image) lock="$root/constraints/tf215-cpu.txt" ;;
esac
[ -f "$lock" ] || { echo "setup_env.sh: unknown stack '$stack' (no $lock)" >&2; exit 2; }

key=$(cat "$lock" "$root/setup.py" "$root/constraints/dev.txt" "$0" | sha1sum | cut -c1-12)
stamp="$venv/.tfod-finetune-$stack-$key"
if [ -f "$stamp" ]; then
  exit 0
fi

start=$(date +%s)
echo "setup_env: creating $venv ($stack)" >&2
rm -rf "$venv"
if [ "$stack" = tf215-image ]; then
  "$python" -m venv --system-site-packages "$venv" # sees the image's TensorFlow + CUDA
else
  "$python" -m venv "$venv"
fi
pip_install() {
  # --no-warn-conflicts: the OD sdist and tf-models-official declare deps we leave out on purpose.
  "$venv/bin/python" -m pip --quiet --disable-pip-version-check install --no-warn-conflicts "$@" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
# The locks go in through uv when it can fetch them: with --no-deps it installs exactly what
# pip would (the same pins), then compileall writes the bytecode pip would have written, on
# every core (the primary stack here in 34 s instead of 72 s, docs/measurements.md). uv reads no
# pip.conf, so where it fails (a pip configured for a private index, say) pip installs instead.
# Not for the image: uv does not count the base image's own packages (the venv sees them) as
# installed and would copy ~250 MB of them into it again; pip leaves them where they are.
use_uv=1
uv_installed=0
[ "$stack" = tf215-image ] && use_uv=0
install() {
  if [ "$use_uv" = 1 ]; then
    # --system-certs: the machine's CA store, as pip with a cert= setting (a TLS proxy's CA).
    if "$venv/bin/uv" pip install --quiet --system-certs --python "$venv/bin/python" "$@"; then
      uv_installed=1
      return 0
    fi
    use_uv=0
    echo "setup_env: uv could not install that; pip installs the rest" >&2
  fi
  pip_install "$@"
}
# setuptools < 81: TensorBoard 2.15 imports pkg_resources, which setuptools 81 removed.
pip_install --upgrade "pip>=24" "setuptools<81" wheel
[ "$use_uv" = 0 ] || pip_install "$(grep '^uv==' "$root/constraints/dev.txt")" || use_uv=0
if [ "$stack" = tf215-gpu ]; then
  # Same pins, but TF with its CUDA 12.2 / cuDNN 8.9 wheels (these resolve their own deps).
  grep -v '^tensorflow-cpu==' "$lock" > "$venv/lock.txt"
  install --no-deps -r "$venv/lock.txt"
  install -c "$venv/lock.txt" "tensorflow[and-cuda]==2.15.1"
elif [ "$stack" = tf215-image ]; then
  # Every pin but TensorFlow itself, which the base image provides (with its CUDA libraries).
  grep -v '^tensorflow-cpu==' "$lock" > "$venv/lock.txt"
  install --no-deps -r "$venv/lock.txt"
  want=$(sed -n 's/^tensorflow-cpu==//p' "$lock")
  have=$("$venv/bin/python" -c "import tensorflow as tf; print(tf.__version__)" 2>/dev/null || true)
  if [ "$have" != "$want" ]; then
    echo "setup_env: the image has TensorFlow '${have:-none}', the lock pins $want" >&2
    exit 1
  fi
else
  install --no-deps -r "$lock"
fi
# The test and lint tools (playwright alone is 170 MB) are not for the image users run.
[ "$stack" = tf215-image ] || install --no-deps -r "$root/constraints/dev.txt"
install --no-deps --no-build-isolation -e "$root"
# Bytecode for what uv installed (pip compiles its own): without it every TensorFlow process
# compiles its imports again where PYTHONDONTWRITEBYTECODE is set (13 s to import, not 4 s).
# A file some package ships for another Python does not compile; that costs nothing.
if [ "$uv_installed" = 1 ]; then
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  "$venv/bin/python" -m compileall -q -j 0 "$site" >/dev/null 2>&1 || true
fi

touch "$stamp"
echo "setup_env: $stack ready in $(( $(date +%s) - start )) s" >&2
