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
    work_dir: str = ""  # this process's own files (launch.json, logs); model_dir on rank 0
    strategy: dict = dataclasses.field(default_factory=lambda: {"kind": "cpu", "gpus": []})
    eval: dict | None = None  # the evaluation child's spec (train/launch/evaluator.py)

    @property
    def is_chief(self) -> bool:  # noqa: D102
        return self.strategy.get("rank", 0) == 0

    def child_spec(self) -> dict:
        """The JSON the child reads (train/launch/child.py)."""
        return {
            "pipeline_config": self.pipeline_config,
            "model_dir": self.model_dir,
            "strategy": self.strategy,
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


COMMUNICATION_TIMEOUT_S = 300  # a collective that waits longer fails instead of hanging
EVAL_POLL_S = 5  # how often the evaluation looks for a new checkpoint or the end of training


def strategy_spec(topology) -> dict:
    """What the child needs to build its tf.distribute strategy (train.launch.cluster)."""
    return {
        "kind": topology.kind,
        "gpus": list(topology.gpus),
        "rank": topology.rank,
        "num_workers": topology.num_workers,
        "replicas": topology.replicas,
        "communication_timeout_s": COMMUNICATION_TIMEOUT_S,
    }


def eval_spec(options, resolved_config: str, num_train_steps: int, work_dir: str) -> dict:
    """The continuous evaluation beside training (train/launch/evaluator.py)."""
    model_dir = os.path.abspath(options.model_dir)
    return {
        "pipeline_config": os.path.abspath(resolved_config),
        "model_dir": model_dir,
        "num_train_steps": num_train_steps,
        "poll_s": EVAL_POLL_S,
        "training_done": os.path.join(work_dir, "logs", "training.done"),
        "on_gpu": options.eval_on_gpu,
        "log_path": os.path.join(work_dir, "logs", "eval.log"),
    }


def build_plan(
    options,
    resolved_config: str,
    num_train_steps: int,
    start_step: int,
    extra_env: dict[str, str],
    topology=None,
    python: str = sys.executable,
    log_name: str = "train.log",
) -> LaunchPlan:
    """Builds the launch plan (pure: no I/O).

    `topology` (train.launch.cluster.Topology) says which strategy the child builds and, for
    several workers, its TF_CONFIG; None means the CPU/default strategy.
    """
    from train.launch import cluster

    topology = topology or cluster.Topology(kind=cluster.CPU)
    model_dir = os.path.abspath(options.model_dir)
    work_dir = topology.work_dir(model_dir)
    remaining = num_train_steps - start_step
    per_iteration = options.num_steps_per_iteration or choose_steps_per_iteration(
        remaining, options.checkpoint_every_n
    )
    env = {
        "TF_CPP_MIN_LOG_LEVEL": "1",
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    }
    if topology.tf_config is not None:
        env["TF_CONFIG"] = json.dumps(topology.tf_config, sort_keys=True)
    spec_path = os.path.join(work_dir, "launch.json")
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
        log_path=os.path.join(work_dir, "logs", log_name),
        restore_report=os.path.join(work_dir, "restore.json"),
        work_dir=work_dir,
        strategy=strategy_spec(topology),
        eval=(
            eval_spec(options, resolved_config, num_train_steps, work_dir)
            if options.eval and topology.is_chief
            else None
        ),
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
