"""Facts about the machine the run will use, without importing TensorFlow."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess


@functools.lru_cache(maxsize=1)
def physical_gpus() -> int:
    """GPUs nvidia-smi lists (0 without a driver)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def visible_gpus() -> int:
    """GPUs TensorFlow will see: nvidia-smi's, limited by CUDA_VISIBLE_DEVICES."""
    gpus = physical_gpus()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return gpus
    ids = [v for v in visible.split(",") if v.strip() and v.strip() != "-1"]
    return min(gpus, len(ids))
