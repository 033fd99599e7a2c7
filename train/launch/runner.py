"""Runs a LaunchPlan: starts the children, prints progress, maps their Outcome to an exit code."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from train import errors, files, nativeimports
from train.contracts import (
    FAILED,
    OK,
    STOPPED,
    EarlyStop,
    FinishReport,
    FinishSpec,
    Outcome,
    PrepareReport,
    PrepareSpec,
    TrainingFreeze,
    TrainingRestore,
    TrainSpec,
)
from train.launch.autobatch import Point
from train.launch.plan import LaunchPlan, plan_json
from train.launch.progress import EventTail, ProgressPrinter

STOP_GRACE_S = 120  # how long a stopping child may take to write its last checkpoint
POLL_S = 1.0  # progress and restore-report cadence while the child trains


class _Forwarder:
    """Forwards SIGTERM / SIGUSR2 received by the driver to the training child.

    Slurm (`--signal=B:USR2@T`, preemption) and `kill` signal the driver; the child saves the
    current step and exits (train/tf/child.py). Installed only in the main thread.
    """

    def __init__(self, child):
        self.child = child
        self.signals: list[str] = []
        self.deadline: float | None = None
        self._previous: dict = {}

    def forward(self, signum, frame) -> None:  # noqa: ARG002
        self.signals.append(signal.Signals(signum).name)
        if self.child.poll() is None:
            self.child.send_signal(signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGUSR2):
                self._previous[signum] = signal.signal(signum, self.forward)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def _start(argv, env: dict[str, str], log_path: str):
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv), env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


def _wait(argv, env: dict[str, str], log_path: str) -> int:
    """Starts a child and waits for its exit status; Ctrl-C kills it and is raised again."""
    child = _start(argv, env, log_path)
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.kill()
        child.wait()
        raise


def _ended(outcome_path: str, code: int, log_path: str, what: str) -> Outcome:
    """The Outcome a child wrote, or what its exit says (TRAIN.oom when memory ran out)."""
    outcome = Outcome.read(outcome_path)
    if outcome is not None:
        return outcome
    memory = _out_of_memory(code, log_path, f"the {what}")
    if memory:
        return Outcome(FAILED, error=memory, code="TRAIN.oom")
    return Outcome(FAILED, error=f"the {what} ended with exit status {code}")


def _run_cpu_child(module: str, spec, report_cls, env: dict[str, str], log_path: str, what: str):
    """Writes `spec` beside its report, runs `python -m module SPEC` on CPU and waits.

    Returns (the child's report, read as `report_cls`, or None unless it ended OK; its
    Outcome). CPU only: these children must not hold GPU memory the training needs.
    """
    spec_path = os.path.join(os.path.dirname(spec.report), f"{module.rsplit('.', 1)[-1]}_spec.json")
    os.makedirs(os.path.dirname(spec_path), exist_ok=True)
    spec.write(spec_path)
    for stale in (spec.report, spec.outcome):
        with contextlib.suppress(FileNotFoundError):
            os.remove(stale)
    child_env = {**os.environ, **env, "CUDA_VISIBLE_DEVICES": "-1"}
    code = _wait([sys.executable, "-m", module, spec_path], child_env, log_path)
    outcome = _ended(spec.outcome, code, log_path, what)
    return (report_cls.read(spec.report) if outcome.status == OK else None), outcome


def run_prepare(
    spec: PrepareSpec, env: dict[str, str], log_path: str
) -> tuple[PrepareReport | None, Outcome]:
    """Runs train/tf/prepare.py on CPU; returns its report (None if it wrote none) and Outcome."""
    return _run_cpu_child("train.tf.prepare", spec, PrepareReport, env, log_path, "restore dry run")


def run_finish(
    spec: FinishSpec, env: dict[str, str], log_path: str
) -> tuple[FinishReport | None, Outcome]:
    """Runs train/tf/finish.py on CPU (evaluate, export, verify one pinned checkpoint)."""
    return _run_cpu_child(
        "train.tf.finish", spec, FinishReport, env, log_path, "evaluation/export process"
    )


class ProbeFailed(RuntimeError):
    """A --batch_size auto point failed for another reason than memory (see its Outcome)."""

    def __init__(self, outcome: Outcome):
        super().__init__(outcome.error)
        self.outcome = outcome


def run_probe(spec: TrainSpec, batch: int, env: dict[str, str], log_path: str):
    """Runs one --batch_size auto point (the training child, a few steps) and waits.

    Returns (the Point, the GPU allocators' limits the child read). A point that ran out of
    memory, on a GPU or on the host (the kernel's SIGKILL included), is a Point that failed;
    any other failure raises ProbeFailed. The point's checkpoints and summaries are removed.
    """
    spec_path = os.path.join(spec.model_dir, "train_spec.json")
    spec.write(spec_path)
    argv = [sys.executable, "-m", "train.tf.child", spec_path]
    try:
        code = _wait(argv, {**os.environ, **env}, log_path)
        outcome = _ended(spec.outcome, code, log_path, "batch probe")
    finally:
        shutil.rmtree(spec.model_dir, ignore_errors=True)
    memory = outcome.memory or {}
    peaks, limits = memory.get("peaks", {}), memory.get("limits", {})
    if outcome.status == OK:
        return Point(batch, peaks), limits
    if outcome.code == "TRAIN.oom":
        return Point(batch, peaks, failed=outcome.error), limits
    raise ProbeFailed(outcome)


EVAL_GRACE_S = 900  # how long the evaluation may take for the last checkpoint after training


def _start_eval(plan: LaunchPlan, env: dict[str, str]):
    """Starts train/tf/evaluator.py beside the training (CPU unless --eval_on_gpu)."""
    spec = plan.eval
    for stale in (spec.training_done, spec.outcome, spec.early_stop):
        with contextlib.suppress(FileNotFoundError):
            if stale:
                os.remove(stale)
    spec.write(plan.eval_spec_path)
    eval_env = dict(env)
    eval_env.pop("TF_CONFIG", None)
    if not spec.on_gpu:
        eval_env["CUDA_VISIBLE_DEVICES"] = "-1"
    return _start(plan.eval_argv(), eval_env, spec.log_path)


def _finish_eval(plan: LaunchPlan, evaluator, stopped: bool, emit) -> None:
    """Tells the evaluation the training is over and waits for its last evaluation."""
    spec = plan.eval
    files.write_atomic(spec.training_done, "done\n")
    if stopped:
        evaluator.terminate()
    if not _wait_or_kill(evaluator, EVAL_GRACE_S):
        emit(
            f"warning: evaluation: the last checkpoint was not evaluated within {EVAL_GRACE_S} s "
            f"after training; stopped it (log: {spec.log_path})"
        )
        return
    outcome = Outcome.read(spec.outcome)
    if outcome is not None and outcome.status == OK:
        where = os.path.join(plan.model_dir, "eval")
        emit(f"evaluation: finished; summaries in {where} (log: {spec.log_path})")
    elif not stopped:
        said = outcome.error if outcome is not None else f"exit status {evaluator.returncode}"
        emit(f"warning: evaluation failed: {said} (log: {spec.log_path})")


def _once(contract, path: str, callback, as_report):
    """A poll that calls `callback(as_report(x))` once, when the child has written `path`.

    A no-op without a callback or a path (nobody asked, or an older spec).
    """
    seen = callback is None or not path

    def check() -> None:
        nonlocal seen
        if not seen:
            found = contract.read(path)
            if found is not None:
                seen = True
                callback(as_report(found))

    return check


def _outcome(plan: LaunchPlan, returncode: int, signals: list[str]) -> Outcome:
    """What the child wrote as its Outcome, or what its exit status says when it wrote none."""
    outcome = Outcome.read(plan.train.outcome)
    if outcome is not None:
        return outcome
    if signals:
        return Outcome(STOPPED, signal=signals[0], detail="killed before saving")
    memory = _out_of_memory(returncode, plan.log_path)
    if memory:
        return Outcome(FAILED, error=memory, code="TRAIN.oom", phase="train")
    return Outcome(FAILED, error=f"the training process ended with exit status {returncode}")


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


def _out_of_memory(
    returncode: int,
    log_path: str,
    who: str = "the training process",
    address_limit: int | None = None,
) -> str | None:
    """Why a child that died without an Outcome ran out of memory, or None.

    SIGKILL that nobody here sent is the kernel's (or a container's) out-of-memory killer;
    an abort or exit with an allocation failure in the log is an address-space or allocator
    limit. Under an address-space limit (`ulimit -v`, which the child inherits: read here
    unless `address_limit` is given, bytes) TensorFlow fails where the allocation happens to
    fail: bad_alloc, a thread it cannot start, or a oneDNN primitive it cannot create and then
    a crash (SIGSEGV); so a crash or abort under such a limit counts as out of memory too.
    All are host memory: a GPU allocator failure is a ResourceExhaustedError the child
    reports itself.
    """
    import resource

    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    peak = f"the largest child's peak resident memory was {peak_gb:.1f} GB"
    if returncode == -signal.SIGKILL:
        return (
            f"{who} was killed (SIGKILL) without a stop asked for: the kernel's "
            f"out-of-memory killer, host memory ran out ({peak})"
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


@dataclasses.dataclass(frozen=True)
class Ended:
    """How a launched training ended: the driver's exit code and the child's Outcome."""

    code: int
    outcome: Outcome


def _wait_or_kill(child, timeout_s: float) -> bool:
    """Waits for a child that was asked to end; kills it after `timeout_s`. True if it ended."""
    try:
        child.wait(timeout=timeout_s)
        return True
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        return False


def _stop_child(child) -> None:
    """SIGTERM (the child saves its step, as on a preemption), SIGKILL after the grace time."""
    child.terminate()
    _wait_or_kill(child, STOP_GRACE_S)


def _supervise(child, evaluator, stop: _Forwarder, watchers, emit) -> None:
    """Waits for the training child, calling each watcher once a second until it ends.

    Forwarded signals and an early stop give it STOP_GRACE_S to save; Ctrl-C is passed on;
    if the driver itself cannot go on (a malformed report), nothing is left running.
    """
    try:
        with stop:
            while True:
                try:  # returns as soon as the child ends: no idle second at the end of a run
                    child.wait(timeout=POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    pass
                for watch in watchers:
                    watch()
                if stop.signals and stop.deadline is None:
                    emit(f"{stop.signals[0]}: saving the current step, then stopping")
                    stop.deadline = time.monotonic() + STOP_GRACE_S
                if stop.deadline is not None and time.monotonic() > stop.deadline:
                    child.kill()  # it had its chance to save; the last checkpoint stays
    except KeyboardInterrupt:
        emit("interrupted: saving the current step, then stopping")
        stop.forward(signal.SIGINT, None)
        _wait_or_kill(child, STOP_GRACE_S)
    except BaseException:
        _stop_child(child)
        if evaluator is not None:
            evaluator.kill()
            evaluator.wait()
        raise


def run(
    plan: LaunchPlan, log_every_s: float, emit=None, on_restore=None, explain=None, on_freeze=None
) -> Ended:
    """Executes the plan; returns how it ended: Ended(exit code, the child's Outcome).

    `on_restore(report)` is called once, when the child has measured its fine-tune restore;
    `on_freeze(report)` once, when it has decided which variables train.
    `explain(outcome)` may turn a failure into the line to print (a finding with its fix).
    """
    emit = emit or (lambda line: print(line, file=sys.stderr, flush=True))
    files.write_atomic(os.path.join(plan.work_dir, "launch.json"), plan_json(plan))
    plan.train.write(plan.train_spec_path)
    stale_files = (plan.train.restore_report, plan.train.outcome, plan.train.freeze_report)
    for stale in [p for p in stale_files if p]:  # an earlier run's
        with contextlib.suppress(FileNotFoundError):
            os.remove(stale)
    env = {**os.environ, **plan.env}
    tail = EventTail(os.path.join(plan.model_dir, "train"))
    printer = ProgressPrinter(plan.num_train_steps, plan.start_step, log_every_s, emit)

    def progress(final: bool = False) -> None:
        if plan.is_chief:  # the other workers' summaries go to scratch folders
            printer.feed(tail.poll(final=final))

    check_restore = _once(
        TrainingRestore, plan.train.restore_report, on_restore, TrainingRestore.as_report
    )
    check_freeze = _once(
        TrainingFreeze, plan.train.freeze_report, on_freeze, lambda found: found.report
    )

    emit(
        f"training: {plan.num_train_steps - plan.start_step} steps from step {plan.start_step} "
        f"({plan.train.num_steps_per_iteration} per iteration); log: {plan.log_path}"
    )
    evaluator = _start_eval(plan, env) if plan.eval else None
    child = _start(plan.argv, env, plan.log_path)
    stop = _Forwarder(child)
    early: EarlyStop | None = None

    def check_early_stop() -> None:
        nonlocal early
        if early is None and plan.eval and plan.eval.early_stop:
            early = EarlyStop.read(plan.eval.early_stop)
            if early is not None:
                emit(
                    f"early stop: {early.metric} has not improved for {early.evaluations} "
                    f"evaluations (best {early.best_value:.4g} at step {early.best_step}); "
                    "saving the current step, then stopping"
                )
                child.send_signal(signal.SIGTERM)  # the child saves as on a preemption
                stop.deadline = time.monotonic() + STOP_GRACE_S

    _supervise(
        child, evaluator, stop, (check_restore, check_freeze, progress, check_early_stop), emit
    )
    outcome = _outcome(plan, child.returncode, stop.signals)
    stopped_early = early is not None and not stop.signals and outcome.status == STOPPED
    if evaluator is not None:
        _finish_eval(plan, evaluator, outcome.status != OK and not stopped_early, emit)
    check_restore()
    check_freeze()
    progress(final=True)
    if stopped_early:
        emit(f"stopped early: {outcome.detail}")
        return Ended(errors.EXIT_OK, outcome)
    if outcome.status == STOPPED:
        emit(
            f"stopped by {outcome.signal}: {outcome.detail}; rerun the same command to resume "
            f"from {plan.model_dir}"
        )
        return Ended(errors.EXIT_INTERRUPTED, outcome)
    if outcome.status != OK:
        explained = explain(outcome) if explain else None
        emit(explained or f"error: training failed: {outcome.error} (full log: {plan.log_path})")
        return Ended(errors.EXIT_TRAINING, outcome)
    return Ended(errors.EXIT_OK, outcome)


def finish(spec: FinishSpec, emit, env: dict[str, str] | None = None):
    """Runs the end of a run and prints it; returns (exit code, FinishReport or None).

    The exit code is EXIT_FINISH when the child failed or an export disagrees with its
    checkpoint (that export is in export_dir/rejected/), else EXIT_OK.
    """
    from train import compat, results

    log_path = os.path.join(os.path.dirname(spec.report), "finish.log")
    asked = (["final eval"] if spec.evaluate else []) + [f"export {f}" for f in spec.formats]
    emit(f"{', '.join(asked) or 'detections'}: {spec.checkpoint} (step {spec.step}) on CPU ...")
    report, outcome = run_finish(spec, compat.child_environment() if env is None else env, log_path)
    if report is None and outcome.code == nativeimports.CODE and outcome.failed_import:
        found = nativeimports.finding(outcome.failed_import, log_path)
        emit(found.printed())
        return errors.EXIT_FINISH, None
    if report is None:
        emit(
            f"error: {outcome.phase or 'finish'} failed: {outcome.error} (log: {log_path}); "
            "the checkpoints are untouched"
        )
        return errors.EXIT_FINISH, None
    if report.eval:
        emit(results.render_eval(report.eval))
    for line in results.render_export(report.export or {}):
        emit(line)
    if report.contact_sheet:
        emit(f"detections drawn: {report.contact_sheet}")
    bad = results.rejected(report.export)
    if bad:
        emit(
            f"error: EXPORT.verify: {', '.join(bad)} detect(s) differently from the checkpoint "
            f"(moved to {os.path.join(spec.export_dir, 'rejected')}); the checkpoints are "
            f"untouched (log: {log_path})"
        )
        return errors.EXIT_FINISH, report
    return errors.EXIT_OK, report
