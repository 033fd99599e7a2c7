"""How a child that wrote no Outcome died: out of memory (with evidence), or killed.

The runner asks here only when a child ended without writing its Outcome (train/contracts.py):
the kernel's OOM killer, an allocator that gave up under an address-space limit, or someone
else's kill -9. Out of memory is said only with evidence: the kernel's OOM-kill count rising
while the child ran, or an allocation failure in its log.
"""

from __future__ import annotations

import functools
import os
import signal


def oom_kill_count() -> int | None:
    """The kernel's count of out-of-memory kills (/proc/vmstat oom_kill), None if unknown.

    It counts the kills of every memory cgroup too (a container's, a Slurm job's), so a rise
    while a child ran is the evidence that its SIGKILL was the OOM killer's.
    """
    try:
        with open("/proc/vmstat", encoding="ascii") as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        return None
    return None


def killed_detail(oom_kills_before: int | None) -> str:
    """The Outcome's detail for a child killed by SIGKILL without evidence of the OOM killer."""
    after = oom_kill_count()
    why = (
        "not for memory: the kernel's out-of-memory kill count did not change"
        if oom_kills_before is not None and after is not None
        else "the kernel's out-of-memory kill count cannot be read here, so it may have been "
        "the OOM killer: check `dmesg` or the scheduler's log"
    )
    return (
        f"killed by SIGKILL from outside the run ({why}); the steps since the last checkpoint "
        "are lost"
    )


# What a process that ran out of host memory leaves in its log when it dies without an Outcome.
_MEMORY_MARKERS = (
    "std::bad_alloc",
    "Cannot allocate memory",
    "MemoryError",
    "out of memory",
    # TensorFlow aborts when pthread_create fails (EAGAIN): under an address-space limit
    # that is the new thread's stack that could not be mapped, often before any tensor.
    "creation via pthread_create() failed",
)


def out_of_memory(
    returncode: int,
    log_path: str,
    who: str = "the training process",
    address_limit: int | None = None,
    oom_kills_before: int | None = None,
) -> str | None:
    """Why a child that died without an Outcome ran out of memory, or None.

    A SIGKILL nobody here sent is the kernel's (or a container's) out-of-memory killer only when
    the kernel's OOM-kill count rose while the child ran (`oom_kills_before`, from
    oom_kill_count() at its start); else it is someone's kill -9
    (train/launch/runner.ChildRun.ended). An abort or exit with an allocation failure in the log
    is an address-space or allocator limit. Under an address-space limit (`ulimit -v`, which the
    child inherits: read here unless `address_limit` is given, bytes) TensorFlow fails where the
    allocation happens to fail: bad_alloc, a thread it cannot start, or a oneDNN primitive it
    cannot create and then a crash (SIGSEGV); so a crash or abort under such a limit counts as
    out of memory too. All are host memory: a GPU allocator failure is a ResourceExhaustedError
    the child reports itself.
    """
    import resource

    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    peak = f"the largest child's peak resident memory was {peak_gb:.1f} GB"
    if returncode == -signal.SIGKILL:
        after = oom_kill_count()
        if oom_kills_before is None or after is None or after <= oom_kills_before:
            return None  # no evidence of the OOM killer
        return (
            f"{who} was killed (SIGKILL) without a stop asked for: the kernel's "
            f"out-of-memory killer (its kill count rose by {after - oom_kills_before} while the "
            f"child ran), host memory ran out ({peak})"
        )
    if returncode == 0:
        return None
    how = f"signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, os.path.getsize(log_path) - 20000))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        tail = ""
    found = [m for m in _MEMORY_MARKERS if m in tail]
    if not found:
        if address_limit is None:
            address_limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        crashed = returncode in (-signal.SIGABRT, -signal.SIGSEGV, -signal.SIGBUS)
        if crashed and address_limit != resource.RLIM_INFINITY:
            return (
                f"{who} ran out of host memory (it crashed with {how} under an address-space "
                f"limit of {address_limit / 1024**3:.1f} GB, ulimit -v; {peak})"
            )
        return None
    import re

    allocation = re.search(
        r"OOM when allocating tensor with (shape\[[^\]]*\]).*?device:([A-Z]+:\d+)", tail
    )
    what = (
        f"allocating a tensor of {allocation.group(1)} on {allocation.group(2)}"
        if allocation
        else f"{found[0]!r} in its log"
    )
    return f"{who} ran out of host memory ({what}; it ended with {how}; {peak})"


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@functools.cache
def _prctl():
    """The C library's prctl, looked up once per process (find_library runs ldconfig)."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def dying_with_parent():
    """A Popen `preexec_fn` that makes the child receive SIGTERM when its parent dies.

    A driver killed outright (kill -9, a lost login shell, a crashed node agent) cannot stop
    its children, and a training child left alone trains to the end unsupervised, holding the
    GPU. With the kernel's parent-death signal the child gets SIGTERM instead: the training
    child saves the current step and exits, as on any stop (train/tf/child.py), and the same
    command resumes. The parent may die between fork and prctl, so the child checks it still
    has the parent it was forked from. The signal follows the forking thread: children are
    started from the driver's main thread. None where prctl is not available (not Linux).
    """
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent is already gone
            os._exit(128 + int(signal.SIGTERM))

    return preexec
