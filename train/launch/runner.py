"""Runs a LaunchPlan: starts the child, prints progress, maps the outcome to an exit code."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

from train import errors
from train.launch.plan import LaunchPlan, plan_json
from train.launch.progress import EventTail, ProgressPrinter
from train.pipeline import io


def _tail(path: str, lines: int = 15) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()[-lines:]
    except OSError:
        return []


def _said(path: str, marker: str) -> str | None:
    """What follows `marker` on the last line of the log's tail that has it (None: none)."""
    lines = [line for line in _tail(path, 50) if marker in line]
    return lines[-1].split(marker, 1)[1].strip() if lines else None


STOP_GRACE_S = 120  # how long a stopping child may take to write its last checkpoint


class _Forwarder:
    """Forwards SIGTERM / SIGUSR2 received by the driver to the training child.

    Slurm (`--signal=B:USR2@T`, preemption) and `kill` signal the driver; the child saves the
    current step and exits (train/launch/child.py). Installed only in the main thread.
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


def read_json(path: str) -> dict | None:
    """A JSON report a child wrote, or None when it is absent or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def run_prepare(spec: dict, env: dict[str, str], log_path: str) -> dict | None:
    """Runs train/launch/prepare.py on CPU and returns its report (None if it crashed)."""
    spec_path = os.path.join(os.path.dirname(spec["report"]), "prepare_spec.json")
    io.write_atomic(spec_path, json.dumps(spec, indent=2, sort_keys=True))
    with contextlib.suppress(FileNotFoundError):
        os.remove(spec["report"])
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    # CPU only: the report does not need a GPU, and must not hold one the training needs.
    child_env = {**os.environ, **env, "CUDA_VISIBLE_DEVICES": "-1"}
    with open(log_path, "ab") as log:
        code = subprocess.call(
            [sys.executable, "-m", "train.launch.prepare", spec_path],
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return read_json(spec["report"]) if code == 0 else None


EVAL_GRACE_S = 900  # how long the evaluation may take for the last checkpoint after training


def _start_eval(plan: LaunchPlan, env: dict[str, str]):
    """Starts train/launch/evaluator.py beside the training (CPU unless --eval_on_gpu)."""
    spec = plan.eval
    with contextlib.suppress(FileNotFoundError):
        os.remove(spec["training_done"])
    os.makedirs(os.path.dirname(spec["log_path"]), exist_ok=True)
    eval_env = dict(env)
    eval_env.pop("TF_CONFIG", None)
    if not spec["on_gpu"]:
        eval_env["CUDA_VISIBLE_DEVICES"] = "-1"
    with open(spec["log_path"], "ab") as log:
        return subprocess.Popen(
            [plan.argv[0], "-m", "train.launch.evaluator", plan.argv[-1]],
            env=eval_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def _finish_eval(plan: LaunchPlan, evaluator, stopped: bool, emit) -> None:
    """Tells the evaluation the training is over and waits for its last evaluation."""
    io.write_atomic(plan.eval["training_done"], "done\n")
    if stopped:
        evaluator.terminate()
    try:
        evaluator.wait(timeout=EVAL_GRACE_S)
    except subprocess.TimeoutExpired:
        evaluator.kill()
        evaluator.wait()
        emit(
            f"warning: evaluation: the last checkpoint was not evaluated within {EVAL_GRACE_S} s "
            f"after training; stopped it (log: {plan.eval['log_path']})"
        )
        return
    where = os.path.join(plan.model_dir, "eval")
    if evaluator.returncode == 0:
        emit(f"evaluation: finished; summaries in {where} (log: {plan.eval['log_path']})")
    elif not stopped:
        said = _said(plan.eval["log_path"], "evaluation failed:") or "see the log"
        emit(f"warning: evaluation failed: {said} (log: {plan.eval['log_path']})")


def run(plan: LaunchPlan, log_every_s: float, emit=None, on_restore=None) -> int:
    """Executes the plan; returns a driver exit code (errors.EXIT_*).

    `on_restore(report)` is called once, when the child has measured its fine-tune restore.
    """
    emit = emit or (lambda line: print(line, file=sys.stderr, flush=True))
    io.write_atomic(os.path.join(plan.work_dir or plan.model_dir, "launch.json"), plan_json(plan))
    with contextlib.suppress(FileNotFoundError):
        os.remove(plan.restore_report)  # an earlier run's
    restore_seen = on_restore is None
    os.makedirs(os.path.dirname(plan.log_path), exist_ok=True)
    env = {**os.environ, **plan.env}
    tail = EventTail(os.path.join(plan.model_dir, "train"))
    printer = ProgressPrinter(plan.num_train_steps, plan.start_step, log_every_s, emit)

    def progress(final: bool = False) -> None:
        if plan.is_chief:  # the other workers' summaries go to scratch folders
            printer.feed(tail.poll(final=final))

    emit(
        f"training: {plan.num_train_steps - plan.start_step} steps from step {plan.start_step} "
        f"({plan.num_steps_per_iteration} per iteration); log: {plan.log_path}"
    )
    evaluator = _start_eval(plan, env) if plan.eval else None
    with open(plan.log_path, "ab") as log:
        child = subprocess.Popen(
            list(plan.argv), env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        stop = _Forwarder(child)
        try:
            with stop:
                while child.poll() is None:
                    time.sleep(1.0)
                    if not restore_seen and os.path.exists(plan.restore_report):
                        restore_seen = True
                        on_restore(read_json(plan.restore_report))
                    progress()
                    if stop.signals and stop.deadline is None:
                        emit(f"{stop.signals[0]}: saving the current step, then stopping")
                        stop.deadline = time.monotonic() + STOP_GRACE_S
                    if stop.deadline is not None and time.monotonic() > stop.deadline:
                        child.kill()  # it had its chance to save; the last checkpoint stays
        except KeyboardInterrupt:
            emit("interrupted: saving the current step, then stopping")
            stop.forward(signal.SIGINT, None)
            try:
                child.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    if evaluator is not None:
        _finish_eval(plan, evaluator, bool(stop.signals) or child.returncode != 0, emit)
    if not restore_seen and os.path.exists(plan.restore_report):
        on_restore(read_json(plan.restore_report))
    if child.returncode == errors.EXIT_INTERRUPTED or (stop.signals and child.returncode != 0):
        progress(final=True)
        what = _said(plan.log_path, "[tfod-finetune] stopped by") or "killed before saving"
        emit(f"stopped by {what}; rerun the same command to resume from {plan.model_dir}")
        return errors.EXIT_INTERRUPTED
    progress(final=True)
    if child.returncode != 0:
        for line in _tail(plan.log_path):
            emit(f"  | {line}")
        summary = _said(plan.log_path, "training failed:") or f"exit status {child.returncode}"
        emit(f"error: training failed: {summary} (full log: {plan.log_path})")
        return errors.EXIT_TRAINING
    return errors.EXIT_OK
