"""The launch plan: everything the training child needs, computed by pure functions."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys


@dataclasses.dataclass(frozen=True)
class LaunchPlan:
    """How the training child is started (written to model_dir/launch.json for the record)."""

    argv: tuple[str, ...]
    env: dict[str, str]
    pipeline_config: str
    model_dir: str
    num_train_steps: int
    start_step: int
    checkpoint_every_n: int
    checkpoint_max_to_keep: int
    num_steps_per_iteration: int
    log_path: str
    restore_report: str

    def child_spec(self) -> dict:
        """The JSON the child reads (train/launch/child.py)."""
        return {
            "pipeline_config": self.pipeline_config,
            "model_dir": self.model_dir,
            "num_train_steps": self.num_train_steps,
            "checkpoint_every_n": self.checkpoint_every_n,
            "checkpoint_max_to_keep": self.checkpoint_max_to_keep,
            "num_steps_per_iteration": self.num_steps_per_iteration,
            "restore_report": self.restore_report,
        }


def choose_steps_per_iteration(remaining: int, checkpoint_every_n: int, cap: int = 100) -> int:
    """Steps per `tf.function` call of the OD loop.

    `train_loop` runs whole iterations of this many steps, writes summaries and checkpoints
    only between them, and overshoots `train_steps` when this does not divide the remaining
    steps (model_main_tf2 hard-codes 100). So pick the largest value that divides both the
    remaining steps and the checkpoint cadence, and keeps at least ~20 summary points per run.
    """
    if remaining <= 0:
        return 1
    limit = max(1, min(cap, remaining // 20))
    for d in range(limit, 0, -1):
        if remaining % d == 0 and checkpoint_every_n % d == 0:
            return d
    return 1


def build_plan(
    options,
    resolved_config: str,
    num_train_steps: int,
    start_step: int,
    extra_env: dict[str, str],
    python: str = sys.executable,
    log_name: str = "train.log",
) -> LaunchPlan:
    """Builds the launch plan (pure: no I/O)."""
    model_dir = os.path.abspath(options.model_dir)
    remaining = num_train_steps - start_step
    per_iteration = options.num_steps_per_iteration or choose_steps_per_iteration(
        remaining, options.checkpoint_every_n
    )
    env = {
        "TF_CPP_MIN_LOG_LEVEL": "1",
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    }
    spec_path = os.path.join(model_dir, "launch.json")
    return LaunchPlan(
        argv=(python, "-m", "train.launch.child", spec_path),
        env=env,
        pipeline_config=os.path.abspath(resolved_config),
        model_dir=model_dir,
        num_train_steps=num_train_steps,
        start_step=start_step,
        checkpoint_every_n=options.checkpoint_every_n,
        checkpoint_max_to_keep=options.checkpoint_max_to_keep,
        num_steps_per_iteration=per_iteration,
        log_path=os.path.join(model_dir, "logs", log_name),
        restore_report=os.path.join(model_dir, "restore.json"),
    )


def prepare_spec(
    model_dir: str,
    resolved_config: str,
    resolved_text: str,
    checkpoint: str,
    checkpoint_type: str,
    num_classes: int | None,
    transplant: bool,
) -> dict:
    """What train/launch/prepare.py does: the restore dry run, and the transplant if asked."""
    model_dir = os.path.abspath(model_dir)
    return {
        "pipeline_config": os.path.abspath(resolved_config),
        "pipeline_config_text_sha256": hashlib.sha256(resolved_text.encode()).hexdigest(),
        "checkpoint": checkpoint,
        "checkpoint_type": checkpoint_type,
        "num_classes": num_classes,
        "transplant_to": transplant_prefix(model_dir) if transplant else None,
        "report": os.path.join(model_dir, "prepare.json"),
    }


def transplant_prefix(model_dir: str) -> str:
    """Where the transplanted checkpoint is saved (outside the CheckpointManager's files)."""
    return os.path.join(os.path.abspath(model_dir), "transplant", "ckpt-0")


def transplant_source(transplant_to: str) -> str:
    """The record of what a transplanted checkpoint was made from (checkpoint, config hash)."""
    return os.path.join(os.path.dirname(transplant_to), "source.json")


def plan_json(plan: LaunchPlan) -> str:
    """The plan as written to model_dir/launch.json."""
    record = dataclasses.asdict(plan)
    record["child"] = plan.child_spec()
    return json.dumps(record, indent=2, sort_keys=True)
