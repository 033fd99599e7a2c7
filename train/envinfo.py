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


def _meminfo_total(path: str = "/proc/meminfo") -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _limit(path: str) -> int | None:
    """A cgroup memory limit file's value in bytes (None: absent, unreadable or "max")."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def cgroup_memory_limits(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup"):
    """The memory limits (bytes) of this process's cgroup and of every cgroup above it.

    cgroup v2 (`memory.max`) and v1 (`memory/…/memory.limit_in_bytes`). A container sees its
    own group at the mount's root while /proc still names the host's path, so each ancestor
    of the named path, down to the root, is tried. Slurm's `--mem` and Docker's `--memory`
    are such limits: the kernel kills a process past them however much RAM the host has.
    """
    try:
        with open(proc_cgroup, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # v2: one unified hierarchy
            bases = [(root, "memory.max"), (os.path.join(root, "unified"), "memory.max")]
        elif "memory" in controllers.split(","):
            bases = [(os.path.join(root, "memory"), "memory.limit_in_bytes")]
        else:
            continue
        steps = [p for p in path.strip("/").split("/") if p]
        for base, name in bases:
            for depth in range(len(steps), -1, -1):
                value = _limit(os.path.join(base, *steps[:depth], name))
                if value is not None:
                    found.append(value)
    return found


def host_memory_bytes() -> int | None:
    """The memory this process may use: the RAM, or its cgroup's limit when that is lower."""
    candidates = [v for v in (_meminfo_total(), *cgroup_memory_limits()) if v]
    return min(candidates) if candidates else None
