"""Runs a Launch: starts the children, prints progress, maps their Outcome to an exit code."""

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

from train import errors, files
from train.contracts import (
    FAILED,
    INTERNAL,
    OK,
    STOPPED,
    ContractError,
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
from train.launch import claim, deaths, paths
from train.launch.autobatch import Point
from train.launch.paths import RunPaths
from train.launch.progress import EventTail, ProgressPrinter
from train.launch.specs import Launch, launch_json
from train.preflight.findings import Finding

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
            list(argv),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=deaths.dying_with_parent(),  # noqa: PLW1509 - prctl only, no locks
            pass_fds=claim.inherited(),  # the run's claim on model_dir lives while it does
        )


@dataclasses.dataclass(frozen=True)
class ChildRun:
    """One child process of a run: one object for all five kinds.

    Training, a batch probe, the evaluation, prepare and finish are each a ChildRun. `start`
    writes the spec (the command line's last argument), removes what an earlier child of the
    same kind left (its Outcome and `stale` outputs) and starts it with its output in its log;
    `ended` turns its end into an Outcome: the one it wrote, else what its exit says. A child
    that could not read its spec (an INTERNAL Outcome, or EXIT_INTERNAL and none) raises
    ContractError naming the spec file: the two sides disagree, a bug.
    """

    argv: tuple[str, ...]
    spec: object  # a train.contracts spec: it has the `outcome` path the child writes
    log_path: str
    what: str  # "training process", "batch probe", ... as messages name it
    env: dict[str, str]
    stale: tuple[str, ...] = ()
    phase: str = ""  # the Outcome's phase when the child died out of memory without one

    @property
    def spec_path(self) -> str:  # noqa: D102
        return self.argv[-1]

    def start(self):
        """Writes the spec, clears stale outputs, starts the child; returns its Popen."""
        os.makedirs(os.path.dirname(self.spec_path), exist_ok=True)
        self.spec.write(self.spec_path)
        for stale in (self.spec.outcome, *self.stale):
            with contextlib.suppress(FileNotFoundError):
                if stale:
                    os.remove(stale)
        return _start(self.argv, self.env, self.log_path)

    def run(self) -> Outcome:
        """Starts the child and waits for its Outcome; Ctrl-C kills it and is raised again."""
        oom_kills = deaths.oom_kill_count()
        watch = deaths.AllocatorWatch(self.log_path)  # from the log's end before the start
        child = self.start()
        memory = _MemoryWatch(watch, child)
        try:
            while True:
                try:
                    returncode = child.wait(timeout=POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    memory()
            return self.ended(returncode, oom_kills_before=oom_kills, memory=memory)
        except KeyboardInterrupt:
            child.kill()
            child.wait()
            raise

    def ended(
        self,
        returncode: int,
        signals: list[str] | tuple = (),
        oom_kills_before: int | None = None,
        memory: _MemoryWatch | None = None,
    ) -> Outcome:
        """The Outcome the child wrote, or what its exit status (and the driver) say.

        `oom_kills_before`: the kernel's OOM-kill count when the child started (the evidence
        that a SIGKILL was the out-of-memory killer's; see _out_of_memory). `memory`: the
        watch that stopped the child if its allocator gave up and it did not end by itself.
        """
        outcome = Outcome.read(self.spec.outcome)
        if outcome is not None and outcome.code == INTERNAL:
            raise ContractError(outcome.error, self.spec_path)
        if memory is not None and memory.killed and (outcome is None or outcome.status != FAILED):
            error = memory.watch.outcome_error(f"the {self.what}")
            return Outcome(FAILED, error=error, code="TRAIN.oom", phase=self.phase)
        if outcome is not None:
            return outcome
        if returncode == errors.EXIT_INTERNAL:
            raise ContractError(
                f"the {self.what} could not read it (log: {self.log_path})", self.spec_path
            )
        if signals:
            return Outcome(STOPPED, signal=signals[0], detail="killed before saving")
        memory = deaths.out_of_memory(
            returncode, self.log_path, f"the {self.what}", oom_kills_before=oom_kills_before
        )
        if memory:
            return Outcome(FAILED, error=memory, code="TRAIN.oom", phase=self.phase)
        if returncode == -signal.SIGKILL:  # someone else's kill -9, or a scheduler's
            return Outcome(STOPPED, signal="SIGKILL", detail=deaths.killed_detail(oom_kills_before))
        return Outcome(FAILED, error=f"the {self.what} ended with exit status {returncode}")


class _MemoryWatch:
    """A watcher: kills a child whose allocator gave up and that has not ended since.

    The step is lost once an allocation failed (deaths.AllocatorWatch says why waiting longer
    only delays the same end); SIGKILL, not SIGTERM: the child would save only between steps,
    and the failed step does not return. The last checkpoint stays. `killed` once it did.
    """

    def __init__(self, watch: deaths.AllocatorWatch, child):
        self.watch, self.child, self.killed = watch, child, False

    def __call__(self) -> None:
        if not self.killed and self.child.poll() is None and self.watch.overdue():
            self.child.kill()
            self.killed = True


def module_argv(module: str, spec_path: str) -> tuple[str, ...]:
    """`python -m module SPEC`: how every TensorFlow child is started (train/tf/harness.py)."""
    return (sys.executable, "-m", module, spec_path)


def _run_cpu_child(name: str, spec, report_cls, env: dict[str, str], log_path: str, what: str):
    """Runs train/tf/NAME.py on CPU and waits: it must not hold GPU memory the training needs.

    Its spec goes beside its report (RunPaths). Returns (the child's report, read as
    `report_cls`, or None unless it ended OK; its Outcome).
    """
    spec_path = RunPaths(os.path.dirname(spec.report)).spec(name)
    cpu = {**os.environ, **env, "CUDA_VISIBLE_DEVICES": "-1"}
    argv = module_argv(f"train.tf.{name}", spec_path)
    child = ChildRun(argv, spec, log_path, what, cpu, stale=(spec.report,))
    outcome = child.run()
    return (report_cls.read(spec.report) if outcome.status == OK else None), outcome


def run_prepare(
    spec: PrepareSpec, env: dict[str, str], log_path: str
) -> tuple[PrepareReport | None, Outcome]:
    """Runs train/tf/prepare.py on CPU; returns its report (None if it wrote none) and Outcome."""
    return _run_cpu_child(paths.PREPARE, spec, PrepareReport, env, log_path, "restore dry run")


def run_finish(
    spec: FinishSpec, env: dict[str, str], log_path: str
) -> tuple[FinishReport | None, Outcome]:
    """Runs train/tf/finish.py on CPU (evaluate, export, verify one pinned checkpoint)."""
    return _run_cpu_child(
        paths.FINISH, spec, FinishReport, env, log_path, "evaluation/export process"
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
    spec_path = RunPaths(spec.model_dir).spec(paths.TRAIN)
    child = ChildRun(
        module_argv("train.tf.child", spec_path),
        spec,
        log_path,
        "batch probe",
        {**os.environ, **env},
        phase="train",
    )
    try:
        outcome = child.run()
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


def _eval_child(launch: Launch, env: dict[str, str]) -> ChildRun:
    """train/tf/evaluator.py beside the training (CPU unless --eval_on_gpu)."""
    spec = launch.eval
    eval_env = {k: v for k, v in env.items() if k != "TF_CONFIG"}
    if not spec.on_gpu:
        eval_env["CUDA_VISIBLE_DEVICES"] = "-1"
    argv = (launch.argv[0], "-m", "train.tf.evaluator", launch.paths.spec(paths.EVAL))
    stale = (spec.training_done, spec.early_stop)
    return ChildRun(argv, spec, spec.log_path, "evaluation", eval_env, stale=stale)


def _finish_eval(launch: Launch, run: ChildRun, evaluator, stopped: bool, emit) -> None:
    """Tells the evaluation the training is over and waits for its last evaluation."""
    spec = launch.eval
    files.write_atomic(spec.training_done, "done\n")
    if stopped:
        evaluator.terminate()
    if not _wait_or_kill(evaluator, EVAL_GRACE_S):
        emit(
            f"warning: evaluation: the last checkpoint was not evaluated within {EVAL_GRACE_S} s "
            f"after training; stopped it (log: {spec.log_path})"
        )
        return
    outcome = run.ended(evaluator.returncode)
    if outcome.status == OK:
        where = os.path.join(launch.model_dir, "eval")
        emit(f"evaluation: finished; summaries in {where} (log: {spec.log_path})")
    elif not stopped:
        emit(f"warning: evaluation failed: {outcome.error} (log: {spec.log_path})")


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


class _EarlyStopWatch:
    """A watcher: once the evaluator has written its EarlyStop, stops the training (it saves).

    `found` is the EarlyStop once seen. No-op without a path (no --eval, or no --patience).
    """

    def __init__(self, path: str, child, stop: _Forwarder, emit):
        self.path, self.child, self.stop, self.emit = path, child, stop, emit
        self.found: EarlyStop | None = None

    def __call__(self) -> None:
        if self.found is not None or not self.path:
            return
        self.found = early = EarlyStop.read(self.path)
        if early is not None:
            self.emit(
                f"early stop: {early.metric} has not improved for {early.evaluations} "
                f"evaluations (best {early.best_value:.4g} at step {early.best_step}); "
                "saving the current step, then stopping"
            )
            self.child.send_signal(signal.SIGTERM)  # the child saves as on a preemption
            self.stop.deadline = time.monotonic() + STOP_GRACE_S


def run(
    launch: Launch, log_every_s: float, emit=None, on_restore=None, explain=None, on_freeze=None
) -> Ended:
    """Starts the training (and evaluation) children and supervises them to their end.

    Returns Ended(exit code, the training child's Outcome).

    `on_restore(report)` is called once, when the child has measured its fine-tune restore;
    `on_freeze(report)` once, when it has decided which variables train.
    `explain(outcome)` may turn a failure into the line to print (a finding with its fix).
    """
    emit = emit or (lambda line: print(line, file=sys.stderr, flush=True))
    files.write_atomic(launch.paths.report("launch"), launch_json(launch))
    env = {**os.environ, **launch.env}
    training = ChildRun(
        launch.argv,
        launch.train,
        launch.log_path,
        "training process",
        env,
        stale=(launch.train.restore_report, launch.train.freeze_report),  # an earlier run's
        phase="train",
    )
    tail = EventTail(os.path.join(launch.model_dir, "train"))
    printer = ProgressPrinter(launch.num_train_steps, launch.start_step, log_every_s, emit)

    def progress(final: bool = False) -> None:
        if launch.is_chief:  # the other workers' summaries go to scratch folders
            printer.feed(tail.poll(final=final))

    check_restore = _once(
        TrainingRestore, launch.train.restore_report, on_restore, TrainingRestore.as_report
    )
    check_freeze = _once(
        TrainingFreeze, launch.train.freeze_report, on_freeze, lambda found: found.report
    )

    emit(
        f"training: {launch.num_train_steps - launch.start_step} steps "
        f"from step {launch.start_step} "
        f"({launch.train.num_steps_per_iteration} per iteration); log: {launch.log_path}"
    )
    evaluation = _eval_child(launch, env) if launch.eval else None
    evaluator = evaluation.start() if evaluation else None
    oom_kills = deaths.oom_kill_count()
    watch = deaths.AllocatorWatch(launch.log_path)  # from the log's end before the start
    child = training.start()
    memory = _MemoryWatch(watch, child)
    stop = _Forwarder(child)
    early = _EarlyStopWatch(launch.eval.early_stop if launch.eval else "", child, stop, emit)
    watchers = (check_restore, check_freeze, progress, early, memory)
    _supervise(child, evaluator, stop, watchers, emit)
    outcome = training.ended(child.returncode, stop.signals, oom_kills, memory)
    stopped_early = early.found is not None and not stop.signals and outcome.status == STOPPED
    if evaluator is not None:
        failed = outcome.status != OK and not stopped_early
        _finish_eval(launch, evaluation, evaluator, failed, emit)
    check_restore()
    check_freeze()
    progress(final=True)
    return _ended(launch, outcome, stopped_early, explain, emit)


def _ended(launch: Launch, outcome: Outcome, stopped_early: bool, explain, emit) -> Ended:
    """The exit code of a training that ended with `outcome`, and the line that says how."""
    if stopped_early:
        emit(f"stopped early: {outcome.detail}")
        return Ended(errors.EXIT_OK, outcome)
    if outcome.status == STOPPED:
        emit(
            f"stopped by {outcome.signal}: {outcome.detail}; rerun the same command to resume "
            f"from {launch.model_dir}"
        )
        return Ended(errors.EXIT_INTERRUPTED, outcome)
    if outcome.status != OK:
        explained = explain(outcome) if explain else None
        emit(explained or f"error: training failed: {outcome.error} (full log: {launch.log_path})")
        return Ended(errors.EXIT_TRAINING, outcome)
    return Ended(errors.EXIT_OK, outcome)


@dataclasses.dataclass(frozen=True)
class Finished:
    """How the end of a run went.

    Attributes:
      code: the exit code (EXIT_OK or EXIT_FINISH).
      report: the child's FinishReport, None when it wrote none.
      finding: when it failed or an export was rejected (built by train/outcomes.py).
    """

    code: int
    report: FinishReport | None
    finding: Finding | None = None


def finish(spec: FinishSpec, emit, env: dict[str, str] | None = None) -> Finished:
    """Runs the end of a run and prints it.

    The exit code is EXIT_FINISH when the child failed or an export disagrees with its
    checkpoint (that export is in export_dir/rejected/), else EXIT_OK.
    """
    from train import compat, outcomes, results

    log_path = RunPaths(os.path.dirname(spec.report)).log(paths.FINISH)
    asked = (["final eval"] if spec.evaluate else []) + [f"export {f}" for f in spec.formats]
    emit(f"{', '.join(asked) or 'detections'}: {spec.checkpoint} (step {spec.step}) on CPU ...")
    report, outcome = run_finish(spec, compat.child_environment() if env is None else env, log_path)
    if report is None:
        finding = outcomes.of_finish(outcome, log_path)
        emit(finding.printed())
        return Finished(errors.EXIT_FINISH, None, finding)
    if report.eval:
        emit(results.render_eval(report.eval))
    if report.curves:
        emit(results.render_curves(report.curves))
    for line in results.render_export(report.export or {}):
        emit(line)
    if report.contact_sheet:
        emit(f"detections drawn: {report.contact_sheet}")
    bad = results.rejected(report.export)
    if bad:
        finding = outcomes.export_rejected(bad, spec.export_dir, log_path)
        emit(finding.printed())
        return Finished(errors.EXIT_FINISH, report, finding)
    return Finished(errors.EXIT_OK, report)
