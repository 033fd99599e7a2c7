"""One run per model_dir: a claim taken before anything is written there, held by the kernel.

Two drivers on one model_dir would both train to the end, writing the same checkpoints. The
claim is an exclusive `flock` on `model_dir/run.claim`, taken by the driver before it writes
anything into model_dir and inherited by every child it starts, so it is held exactly as long
as any process of the run lives: a driver killed with `kill -9` keeps it through its training
child until that child has saved and ended (the child dies with its parent, see runner), and
then it is free. No pid check or timeout decides that a claim is stale; the kernel releases it.

The file's text names the holder (host, pid, since, command) for the refusal's message; the
lock is the claim. The file is removed when the run ends (a claim file found with no lock on
it is a killed run's, taken over); a process that locked a file just removed opens it again.

The workers of one multi-node run are one run: worker 0 holds the claim for all of them (it
is also the one that runs the end of the run, after the others have gone); the other workers
only check that no other run holds it. The claim names the run (Slurm job and step, or
TF_CONFIG's cluster), so a worker tells its own run from another.

Shared file systems: on NFS, Linux emulates `flock` with POSIX locks that the server arbitrates
(NFSv4 leases, NLM for v3), so a claim holds across hosts and a crashed host's claim is freed
when its lease expires (about 90 s). Lustre arbitrates `flock` across clients only when mounted
with `-o flock`; with `localflock` a claim holds per host only, and without either option the
lock call fails: the driver then runs unclaimed and says so (RUN.claim_unsupported).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import socket
import time

from train.launch.rundir import CLAIM as FILE

_HELD: list[int] = []  # the claim descriptors this process holds: its children inherit them


@dataclasses.dataclass(frozen=True)
class Holder:
    """Who holds (or held) a claim: what a refusal names."""

    host: str
    pid: int
    since: str
    run: str  # the multi-node run it belongs to ("" for a single-process run)
    command: str

    def named(self) -> str:  # noqa: D102
        return f"pid {self.pid} on {self.host}, since {self.since} ({self.command})"


def run_identity(environ) -> str:
    """The run a worker belongs to: its Slurm step, or its TF_CONFIG cluster ("" for none)."""
    job, step = environ.get("SLURM_JOB_ID"), environ.get("SLURM_STEP_ID")
    if job:
        return f"slurm job {job} step {step or '-'}"
    tf_config = environ.get("TF_CONFIG")
    if tf_config:
        try:
            cluster = json.loads(tf_config).get("cluster")
        except ValueError:
            return ""
        return "tf_config " + json.dumps(cluster, sort_keys=True) if cluster else ""
    return ""


def me(environ, argv: list[str]) -> Holder:
    """This process as a holder."""
    return Holder(
        host=socket.gethostname(),
        pid=os.getpid(),
        since=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        run=run_identity(environ),
        command=" ".join(argv)[:300],
    )


def _read(fd: int) -> Holder | None:
    try:
        text = os.pread(fd, 65536, 0).decode("utf-8", "replace")
        return Holder(**json.loads(text))
    except (OSError, ValueError, TypeError):
        return None


def _read_held(fd: int) -> Holder | None:
    """The holder of a lock just found taken: it may not have written its name yet."""
    for _ in range(30):
        holder = _read(fd)
        if holder is not None:
            return holder
        time.sleep(0.1)
    return None


def _write(fd: int, holder: Holder) -> None:
    data = (json.dumps(dataclasses.asdict(holder), indent=1) + "\n").encode()
    os.pwrite(fd, data, 0)  # over the earlier holder's text, then cut what is left of it
    os.ftruncate(fd, len(data))
    os.fsync(fd)


@dataclasses.dataclass(frozen=True)
class Claim:
    """The result of `take`: held (or unsupported), or refused with its holder."""

    path: str
    held: bool
    holder: Holder | None = None  # the other run's holder when refused; the earlier one else
    unsupported: str = ""  # why the file system cannot lock (the run goes on unclaimed)
    fd: int = -1
    created_dir: bool = False  # model_dir did not exist before the claim

    @property
    def refused(self) -> bool:  # noqa: D102
        return not (self.held or self.unsupported)

    @property
    def took_over(self) -> bool:
        """An earlier run ended without releasing it (killed): its claim was taken over."""
        return self.held and self.holder is not None


def _same_file(path: str, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def take(model_dir: str, holder: Holder, wait_s: float = 0.0) -> Claim:
    """Claims model_dir for `holder` (creating model_dir), waiting up to `wait_s` for it.

    A lock taken on a file that a releasing run unlinked meanwhile is no claim: the file is
    opened again until the locked file is the one at the path.
    """
    created = not os.path.isdir(model_dir)
    path = os.path.join(model_dir, FILE)
    try:
        os.makedirs(model_dir, exist_ok=True)
        return _take(path, holder, created, time.monotonic() + wait_s)
    except OSError as e:  # not writable, disk full: the preflight names it (MODEL_DIR.*)
        return Claim(path, held=False, unsupported=f"it cannot be written: {e.strerror or e}")


def _take(path: str, holder: Holder, created: bool, deadline: float) -> Claim:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _read_held(fd)
            os.close(fd)
            if time.monotonic() >= deadline:
                return Claim(path, held=False, holder=other)
            time.sleep(1.0)
            continue
        except OSError as e:  # ENOLCK, ENOSYS, EINVAL: a file system without flock
            os.close(fd)
            why = errno.errorcode.get(e.errno, str(e.errno))
            return Claim(path, held=False, unsupported=f"it cannot be locked: {why}, {e.strerror}")
        if _same_file(path, fd):
            break
        os.close(fd)
    earlier = _read(fd)
    try:
        _write(fd, holder)
    except OSError:
        os.close(fd)
        raise
    _HELD.append(fd)
    return Claim(path, held=True, holder=earlier, fd=fd, created_dir=created)


def probe(model_dir: str) -> Holder | None:
    """The holder of model_dir's claim when another process holds it (takes nothing)."""
    path = os.path.join(model_dir, FILE)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:  # its holder may have locked it and not written its name yet
        return _read_held(fd) or Holder("?", 0, "?", "", "unreadable claim")
    except OSError:
        return None
    finally:
        os.close(fd)


def release(claim: Claim) -> None:
    """Removes the claim file and lets the lock go.

    model_dir goes too when the claim created it and nothing else was written there: a
    refused or stopped run leaves no trace.
    """
    if not claim.held or claim.fd not in _HELD:
        return
    if _same_file(claim.path, claim.fd):
        os.unlink(claim.path)
    _HELD.remove(claim.fd)
    os.close(claim.fd)
    if claim.created_dir:
        with contextlib.suppress(OSError):  # not empty: the run wrote there
            os.rmdir(os.path.dirname(claim.path))


def inherited() -> tuple[int, ...]:
    """The descriptors a child must inherit so that the claim lives as long as it does."""
    return tuple(_HELD)


def same_run(holder: Holder | None, mine: Holder) -> bool:
    """Whether the holder is a process of this multi-node run.

    For worker 0 that is an earlier incarnation of it: a requeued Slurm job keeps its job
    and step ids.
    """
    return holder is not None and bool(mine.run) and holder.run == mine.run


def orphaned(holder: Holder | None, mine: Holder) -> bool:
    """Whether the holder is a driver on this host that has died.

    What holds its claim then is a child it started, stopping: it saves and ends on its
    parent's death.
    """
    if holder is None or holder.host != mine.host or holder.pid <= 0:
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def refusal(model_dir: str, holder: Holder | None):
    """RUN.in_use: the finding that refuses a second run on a claimed model_dir."""
    from train.preflight.findings import ERROR, Finding

    who = holder.named() if holder else "another process (its claim is unreadable)"
    stop = f"kill -TERM {holder.pid} on {holder.host} stops it after saving; " if holder else ""
    return Finding(
        "RUN.in_use",
        ERROR,
        f"{model_dir} is in use by another run: {who}",
        f"wait for that run to end ({stop}the same command then resumes it), or pass another "
        "--model_dir",
        file=os.path.join(model_dir, FILE),
    )
