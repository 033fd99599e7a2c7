"""How a child that wrote no Outcome died: out of memory (with evidence), or killed.

The runner asks here only when a child ended without writing its Outcome (train/contracts.py):
the kernel's OOM killer, an allocator that gave up under an address-space limit, or someone
else's kill -9. Out of memory is said only with evidence: the kernel's OOM-kill count rising
while the child ran, or an allocation failure in its log.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import time


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

    allocation = re.search(
        r"OOM when allocating tensor with (shape\[[^\]]*\]).*?device:([A-Z]+:\d+)", tail
    )
    what = (
        f"allocating a tensor of {allocation.group(1)} on {allocation.group(2)}"
        if allocation
        else f"{found[0]!r} in its log"
    )
    return f"{who} ran out of host memory ({what}; it ended with {how}; {peak})"


# How long a child whose allocator gave up may take to end by itself. The step is lost once an
# allocation failed; what waiting buys is only the child's own error instead of the watch's,
# the same TRAIN.oom either way. 20 s is two of TensorFlow's 10 s allocation retries (it was
# 60 s: the same verdict 40 s later).
ALLOCATION_GRACE_S = 20.0

# TensorFlow's allocator gave up on an allocation after its retries: the size is followed by
# "(rounded to"; the harmless message (a caller that can do without) says "freed_by_count".
_GAVE_UP = re.compile(r"Allocator \(([^)]+)\) ran out of memory trying to allocate (\S+) \(rounded")
_OP_FAILED = re.compile(r"OOM when allocating tensor with (shape\[[^\]]*\])[^\n]*?device:([A-Z]+)")


def allocation_failure(text: str) -> str | None:
    """What the first allocation that failed for good in `text` (log lines) was, or None.

    Either TensorFlow's allocator giving up ("Allocator (mklcpu) ran out of memory trying to
    allocate 56.25MiB (rounded to ...") or an op failing with RESOURCE_EXHAUSTED. Both end the
    step: the memory it needs is not there.
    """
    gave_up, op = _GAVE_UP.search(text), _OP_FAILED.search(text)
    if gave_up and (op is None or gave_up.start() < op.start()):
        allocator, size = gave_up.groups()
        memory = "GPU" if "gpu" in allocator.lower() else "host"
        return f"{memory} memory: its allocator {allocator} could not allocate {size}"
    if op:
        shape, device = op.groups()
        return f"{'GPU' if device == 'GPU' else 'host'} memory: allocating a tensor of {shape}"
    return None


class AllocatorWatch:
    """Reads a running child's log for an allocation that failed; says when to stop waiting.

    Why: once an allocation of a step has failed, TensorFlow lets every other allocation the
    step still makes wait up to 10 s for memory to be freed before failing too. A CPU step
    with a loop over the batch's images then takes minutes to raise its ResourceExhaustedError
    (more than 10 minutes at batch 48 under `ulimit -v`, measured), or crashes at a random
    point on the way. The step is lost either way, so a child still running `grace_s` after
    the first failure is stopped by the caller and its end is out of memory, `detail`.
    Reads only what the log gained since the watch was made (the log is appended to).
    """

    def __init__(self, log_path: str, grace_s: float | None = None):
        self.log_path = log_path
        self.grace_s = ALLOCATION_GRACE_S if grace_s is None else grace_s
        try:
            self._offset = os.path.getsize(log_path)
        except OSError:
            self._offset = 0
        self._pending = ""  # a line not yet ended
        self.detail: str | None = None  # what failed, once seen
        self._since: float | None = None

    def overdue(self, now: float | None = None) -> bool:
        """True once the child has had `grace_s` since a failed allocation to end by itself."""
        now = time.monotonic() if now is None else now
        if self.detail is None:
            self._read(now)
        return self._since is not None and now - self._since >= self.grace_s

    def _read(self, now: float) -> None:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._offset)
                new = f.read(1 << 20)
        except OSError:
            return
        self._offset += len(new)
        text = self._pending + new.decode("utf-8", "replace")
        complete, _, self._pending = text.rpartition("\n")
        self._pending = self._pending[-4096:]
        self.detail = allocation_failure(complete)
        if self.detail is not None:
            self._since = now

    def outcome_error(self, who: str) -> str:
        """The Outcome's error for a child stopped because of what this watch saw."""
        memory, _, what = (self.detail or "").partition(": ")
        return (
            f"{who} ran out of {memory} ({what}; still running {self.grace_s:.0f} s later, "
            "it was stopped: every allocation left in the step waits 10 s before failing too)"
        )


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
