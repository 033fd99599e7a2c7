"""What each child of a run is told: its spec, built by pure functions (no I/O).

A Launch is the training stage's part of a RunPlan (train/runplan.py, the one thing this project
calls a plan): the training and evaluation children's command lines, environment and specs.
The prepare, probe and finish specs are built here too (finish: train/results.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys

from train.contracts import EvalSpec, PrepareSpec, StrategySpec, TrainSpec
from train.launch import paths
from train.launch.paths import RunPaths


@dataclasses.dataclass(frozen=True)
class Launch:
    """How the training child (and the evaluation beside it) are started.

    Attributes:
      argv: the training child's command line (its spec file is the last argument).
      env: variables added to the driver's environment for the children.
      train: the training child's spec (written to `train_spec_path`).
      start_step: the step training resumes from (0 for a new run).
      log_path: the training child's log.
      work_dir: this process's own files (specs, logs, outcome); model_dir on rank 0.
      eval: the evaluation child's spec, or None without --eval (or on other workers).
    """

    argv: tuple[str, ...]
    env: dict[str, str]
    train: TrainSpec
    start_step: int
    log_path: str
    work_dir: str
    eval: EvalSpec | None = None

    @property
    def model_dir(self) -> str:  # noqa: D102
        return self.train.model_dir

    @property
    def num_train_steps(self) -> int:  # noqa: D102
        return self.train.num_train_steps

    @property
    def strategy(self) -> StrategySpec:  # noqa: D102
        return self.train.strategy

    @property
    def is_chief(self) -> bool:  # noqa: D102
        return self.train.strategy.rank == 0

    @property
    def paths(self) -> RunPaths:  # noqa: D102
        return RunPaths(self.work_dir)

    @property
    def train_spec_path(self) -> str:  # noqa: D102
        return self.argv[-1]


def summary_cadence(remaining: int, checkpoint_every_n: int, cap: int = 100) -> int:
    """Every how many steps train_loop records its summaries (and, on GPU, runs per call).

    `train_loop` writes summaries and checkpoints only between iterations, and overshoots
    `train_steps` when the iteration does not divide the remaining steps (model_main_tf2
    hard-codes 100). So pick the largest value that divides both the remaining steps and the
    checkpoint cadence, and keeps at least ~20 summary points per run.
    """
    if remaining <= 0:
        return 1
    limit = max(1, min(cap, remaining // 20))
    for d in range(limit, 0, -1):
        if remaining % d == 0 and checkpoint_every_n % d == 0:
            return d
    return 1


# Up to this many steps, a CPU run calls the training step once per step (see below).
CPU_SINGLE_STEP_CALLS = 400


def choose_steps_per_iteration(cadence: int, remaining: int, on_gpu: bool) -> int:
    """Steps per `tf.function` call of the OD loop: the summary cadence, but 1 on short CPU runs.

    An iteration of several steps traces the training step twice (train_loop's loop body and
    its last step are two calls of it in one function): on the demo 48 s from the restore to
    the end of the first iteration, against 17 s to the first step with one step per call.
    What several steps per call save is a Python round trip per step: on the demo's 300
    steps 1.85 against 1.99 steps/s, ~0.04 s a step (60-step runs: 1.77-1.95 against 1.93,
    within this machine's noise; docs/measurements.md). So a CPU run of up to
    CPU_SINGLE_STEP_CALLS steps gains (both costs grow with the model's graph), a longer one
    pays the second trace once. On GPU, where a step takes milliseconds, the round trip
    matters and the cadence stays. The input images are recorded at the cadence either way
    (TrainSpec.input_images_every): every step they would take ~100 kB a step.
    """
    if not on_gpu and remaining <= CPU_SINGLE_STEP_CALLS:
        return 1
    return cadence


COMMUNICATION_TIMEOUT_S = 300  # a collective that waits longer fails instead of hanging
EVAL_POLL_S = 5  # how often the evaluation looks for a new checkpoint or the end of training


def strategy_spec(topology) -> StrategySpec:
    """What the child needs to build its tf.distribute strategy (train.launch.cluster)."""
    return StrategySpec(
        kind=topology.kind,
        gpus=tuple(topology.gpus),
        rank=topology.rank,
        num_workers=topology.num_workers,
        replicas=topology.replicas,
        communication_timeout_s=COMMUNICATION_TIMEOUT_S,
    )


def eval_spec(options, resolved_config: str, num_train_steps: int, work_dir: str) -> EvalSpec:
    """The continuous evaluation beside training (train/tf/evaluator.py)."""
    files = RunPaths(work_dir)
    return EvalSpec(
        pipeline_config=os.path.abspath(resolved_config),
        model_dir=os.path.abspath(options.model_dir),
        num_train_steps=num_train_steps,
        poll_s=EVAL_POLL_S,
        training_done=files.training_done,
        on_gpu=options.eval_on_gpu,
        log_path=files.log(paths.EVAL),
        outcome=files.outcome(paths.EVAL),
        best_metric=options.best_metric,
        patience=options.patience,
        min_delta=options.min_delta,
        early_stop=files.early_stop,
    )


def build_launch(
    options,
    resolved_config: str,
    num_train_steps: int,
    start_step: int,
    extra_env: dict[str, str],
    topology=None,
    python: str = sys.executable,
) -> Launch:
    """Builds the Launch (pure: no I/O).

    `topology` (train.launch.cluster.Topology) says which strategy the child builds and, for
    several workers, its TF_CONFIG; None means the CPU/default strategy.
    """
    from train.launch import cluster

    topology = topology or cluster.Topology(kind=cluster.CPU)
    model_dir = os.path.abspath(options.model_dir)
    work_dir = topology.work_dir(model_dir)
    remaining = num_train_steps - start_step
    cadence = options.num_steps_per_iteration or summary_cadence(
        remaining, options.checkpoint_every_n
    )
    per_iteration = options.num_steps_per_iteration or choose_steps_per_iteration(
        cadence, remaining, bool(topology.gpus)
    )
    env = {
        "TF_CPP_MIN_LOG_LEVEL": "1",
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    }
    if topology.tf_config is not None:
        env["TF_CONFIG"] = json.dumps(topology.tf_config, sort_keys=True)
    train = train_spec(
        options,
        os.path.abspath(resolved_config),
        model_dir,
        work_dir,
        strategy_spec(topology),
        num_train_steps=num_train_steps,
        num_steps_per_iteration=per_iteration,
        input_images_every=cadence,
    )
    return Launch(
        argv=(python, "-m", "train.tf.child", RunPaths(work_dir).spec(paths.TRAIN)),
        env=env,
        train=train,
        start_step=start_step,
        log_path=RunPaths(work_dir).log(paths.TRAIN),
        work_dir=work_dir,
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
    checkpoint: str | None,
    checkpoint_type: str,
    num_classes: int | None,
    transplant: bool,
    rehearse_batch: int = 0,
) -> PrepareSpec:
    """What train/tf/prepare.py does: rehearsal (batch > 0), restore dry run, transplant."""
    model_dir = os.path.abspath(model_dir)
    files = RunPaths(model_dir)  # the chief's: only worker 0 prepares
    return PrepareSpec(
        pipeline_config=os.path.abspath(resolved_config),
        pipeline_config_text_sha256=hashlib.sha256(resolved_text.encode()).hexdigest(),
        checkpoint=checkpoint,
        checkpoint_type=checkpoint_type,
        num_classes=num_classes,
        transplant_to=transplant_prefix(model_dir) if transplant else None,
        report=files.report(paths.PREPARE),
        outcome=files.outcome(paths.PREPARE),
        rehearse=rehearse_batch > 0,
        rehearse_batch=rehearse_batch,
    )


def train_spec(
    options, pipeline_config: str, model_dir: str, work_dir: str, strategy, **overrides
) -> TrainSpec:
    """The TrainSpec of a run with these options: the one place options reach the child.

    The training and each --batch_size auto point are built here, so the flags that change
    what trains (--freeze, ...) reach both, in `options` whole; `overrides` are what the
    driver decides differently for each (steps, files).
    """
    files = RunPaths(work_dir)
    spec = TrainSpec(
        pipeline_config=pipeline_config,
        model_dir=model_dir,
        num_train_steps=options.num_train_steps or 0,
        checkpoint_every_n=options.checkpoint_every_n,
        checkpoint_max_to_keep=options.checkpoint_max_to_keep,
        num_steps_per_iteration=options.num_steps_per_iteration or 1,
        restore_report=files.report("restore"),
        outcome=files.outcome(paths.TRAIN),
        strategy=strategy,
        options=options,
        freeze_report=files.report("freeze"),
    )
    return dataclasses.replace(spec, **overrides)


def probe_spec(options, batch: int, strategy: StrategySpec) -> TrainSpec:
    """One --batch_size auto point: the training child, a few steps at `batch`, from scratch.

    Its files go to model_dir/batch_probe/batch-N/ (the caller writes the config there, the
    planned one at this batch); nothing of it is kept but the Outcome's memory.
    """
    from train.launch import autobatch

    folder = os.path.join(autobatch.probe_dir(options.model_dir), f"batch-{batch}")
    return train_spec(
        options,
        os.path.join(folder, "pipeline.config"),
        folder,
        folder,
        strategy,
        num_train_steps=autobatch.PROBE_STEPS,
        checkpoint_every_n=autobatch.PROBE_STEPS + 1,
        checkpoint_max_to_keep=1,
        num_steps_per_iteration=1,
        freeze_report="",
        nan_guard=False,  # a probe measures memory; its two steps' losses do not matter
        gpu_limits=True,
    )


REHEARSAL_MAX_BATCH = 2  # images in the rehearsal's batch on a CPU (the config's when smaller)


def rehearsal_batch(batch_size: int) -> int:
    """The rehearsal's batch: the config's batch size, capped so a login node's CPU copes."""
    return max(1, min(batch_size, REHEARSAL_MAX_BATCH))


def transplant_prefix(model_dir: str) -> str:
    """Where the transplanted checkpoint is saved (outside the CheckpointManager's files)."""
    return os.path.join(os.path.abspath(model_dir), "transplant", "ckpt-0")


def transplant_source(transplant_to: str) -> str:
    """The record of what a transplanted checkpoint was made from (checkpoint, config hash)."""
    return os.path.join(os.path.dirname(transplant_to), "source.json")


def launch_json(plan: Launch) -> str:
    """The plan as written to launch.json (for the record; children read specs)."""
    return json.dumps(dataclasses.asdict(plan), indent=2, sort_keys=True)
