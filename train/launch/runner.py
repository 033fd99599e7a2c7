"""Runs a LaunchPlan: starts the child, prints progress, maps the outcome to an exit code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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


def run(plan: LaunchPlan, log_every_s: float, emit=None) -> int:
    """Executes the plan; returns a driver exit code (errors.EXIT_*)."""
    emit = emit or (lambda line: print(line, file=sys.stderr, flush=True))
    io.write_atomic(os.path.join(plan.model_dir, "launch.json"), plan_json(plan))
    os.makedirs(os.path.dirname(plan.log_path), exist_ok=True)
    env = {**os.environ, **plan.env}
    tail = EventTail(os.path.join(plan.model_dir, "train"))
    printer = ProgressPrinter(plan.num_train_steps, plan.start_step, log_every_s, emit)
    emit(
        f"training: {plan.num_train_steps - plan.start_step} steps from step {plan.start_step} "
        f"({plan.num_steps_per_iteration} per iteration); log: {plan.log_path}"
    )
    with open(plan.log_path, "ab") as log:
        child = subprocess.Popen(
            list(plan.argv), env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            while child.poll() is None:
                time.sleep(1.0)
                printer.feed(tail.poll())
        except KeyboardInterrupt:
            emit("interrupted: stopping training (the last saved checkpoint is kept)")
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            return errors.EXIT_INTERRUPTED
    printer.feed(tail.poll(final=True))
    if child.returncode != 0:
        for line in _tail(plan.log_path):
            emit(f"  | {line}")
        failure = [line for line in _tail(plan.log_path, 50) if "training failed:" in line]
        summary = (
            failure[-1].split("training failed:", 1)[1].strip()
            if failure
            else (f"exit status {child.returncode}")
        )
        emit(f"error: training failed: {summary} (full log: {plan.log_path})")
        return errors.EXIT_TRAINING
    return errors.EXIT_OK
