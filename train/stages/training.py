"""Training: the Launch run by the runner, with summaries, TensorBoard and NaN retries."""

from __future__ import annotations

import dataclasses
import os

from train import errors, files, rendering
from train.contracts import Outcome
from train.outcomes import of_training
from train.pipeline import rewrite
from train.preflight.findings import WARNING, Finding
from train.reporting import Reporter, emit
from train.runplan import RunPlan


def train(plan: RunPlan, reporter: Reporter):
    """Runs the Launch, with summaries and a TensorBoard server as the duties say.

    Returns the runner's Ended: the exit code and the training child's Outcome.
    """
    from train.launch import board

    launch, options = plan.launch, plan.options
    emit(f"strategy: {plan.topology.describe()}")
    training = _Training(plan, reporter)
    if plan.duties.summaries:
        board.write_run_summaries(
            training.summaries,
            {
                "tfod_finetune/resolved_config": plan.resolved_text,
                "tfod_finetune/preflight": plan.lines[0],
            },
            board.hparams_of(plan.resolved_config, launch),
            launch.start_step,
        )
    if not plan.duties.tensorboard:
        return training.run()
    log_path = launch.paths.log("tensorboard")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    try:
        with board.serve(
            launch.model_dir, options.tensorboard_port, options.tensorboard_bind_all, log_path
        ) as address:
            emit(f"tensorboard: {address} (stops with the run)")
            return training.run()
    except board.ServerError as e:
        emit(f"warning: tensorboard: {e}; training without it")
        return training.run()


class _Training:
    """One training, retried with the rate halved on TRAIN.nan up to --nan_retries times.

    Its methods are what the runner calls back while the child trains (restore and freeze
    reports, a failure to explain).
    """

    def __init__(self, plan: RunPlan, reporter: Reporter):
        self.plan, self.reporter = plan, reporter
        self.summaries = os.path.join(plan.launch.model_dir, "train")
        self.retries: list[dict] = []

    def run(self):
        """Trains; on TRAIN.nan, up to --nan_retries times, again with the rate halved."""
        from train.launch import runner

        plan, launch = self.plan, self.plan.launch
        while True:
            ended = runner.run(
                launch,
                plan.options.log_every_s,
                emit,
                self.on_restore,
                explain=self.explain,
                on_freeze=self.on_freeze,
            )
            if (
                ended.code != errors.EXIT_TRAINING
                or ended.outcome.code != "TRAIN.nan"
                or len(self.retries) >= plan.options.nan_retries
            ):
                return ended
            launch = _nan_retry(plan, self.reporter, launch, ended.outcome, self.retries)

    def text_summary(self, name: str, measured: dict) -> None:
        """A report as a TensorBoard text summary at the run's first step."""
        from train.launch import board

        if self.plan.duties.summaries:
            board.write_run_summaries(
                self.summaries,
                {f"tfod_finetune/{name}": rendering.restore_text(measured)},
                None,
                self.plan.launch.start_step,
            )

    def on_restore(self, measured: dict | None) -> None:
        """The child measured the fine-tune restore."""
        if measured:
            emit(f"restore: {measured['summary']}")
            self.reporter.restore["training"] = measured
            self.reporter.write("training")
            self.text_summary("restore", measured)

    def on_freeze(self, measured: dict) -> None:
        """The child decided what trains; a pattern that matched nothing is a warning."""
        plan, reporter = self.plan, self.reporter
        reporter.results["freeze"] = measured
        if measured["rule"] == "nothing frozen":
            reporter.write("training")
            return
        emit(f"freeze: {measured['summary']} ({measured['rule']})")
        for pattern in measured["unmatched"]:
            finding = Finding(
                "FREEZE.no_match",
                WARNING,
                f"{plan.source.path}: the pattern {pattern!r} matches no trainable variable of "
                "this model, so it changes nothing (TF2 variables are named by Keras layer, "
                "e.g. 'block_3_expand/kernel', not TF1 scopes like 'FeatureExtractor/...')",
                "fix the pattern (re.match from the start of the name), or use --freeze "
                "backbone / backbone,neck",
                file=plan.source.path,
            )
            reporter.extra.append(finding)
            emit(finding.printed())
        reporter.write("training")
        self.text_summary("freeze", measured)

    def explain(self, outcome: Outcome) -> str | None:
        """The line for a failed attempt: its finding, or None for the runner's own line."""
        retries, allowed = len(self.retries), self.plan.options.nan_retries
        if outcome.code == "TRAIN.nan" and retries < allowed:
            return f"TRAIN.nan (retry {retries + 1}/{allowed} follows): {outcome.error}"
        finding = of_training(self.plan, outcome)
        if finding is None:
            return None
        self.reporter.extra.append(finding)
        return finding.printed()


def _nan_retry(plan: RunPlan, reporter: Reporter, launch, outcome: Outcome, retries: list):
    """Halves the learning rates in the resolved config and returns the launch to resume.

    The training child resumes from model_dir's newest checkpoint, which the NaN guard kept
    free of the poisoned step. The retry is printed and recorded in the report
    (`nan_retries`); the TRAIN.nan it answers is no longer a finding of the run.
    """
    from train.pipeline import configfile

    resolved = configfile.load(launch.train.pipeline_config).proto
    number = len(retries) + 1
    halved, changes = rewrite.scale_learning_rate(
        resolved, 0.5, f"--nan_retries: retry {number} after TRAIN.nan"
    )
    files.write_atomic(launch.train.pipeline_config, configfile.to_text(halved))
    step = outcome.step or 0
    rates = ", ".join(f"{c.path.rsplit('.', 1)[1]} {c.old} -> {c.new}" for c in changes)
    emit(
        f"nan retry {number}/{plan.options.nan_retries}: continuing from {outcome.checkpoint} "
        f"with the learning rate halved ({rates})"
    )
    reporter.extra = [f for f in reporter.extra if f.code != "TRAIN.nan"]
    retries.append(
        {
            "retry": number,
            "failed_after_step": step,
            "resumed_from": outcome.checkpoint,
            "cause": outcome.error,
            "changes": [{"field": c.path, "old": c.old, "new": c.new} for c in changes],
        }
    )
    reporter.results["nan_retries"] = list(retries)
    reporter.write("training")
    return dataclasses.replace(launch, start_step=_checkpoint_step(outcome.checkpoint, step))


def _checkpoint_step(prefix: str | None, default: int) -> int:
    """The step a checkpoint holds (from its index, TF-free), else `default`."""
    if not prefix:
        return default
    from train.checkpoint import bundle

    try:
        step = bundle.read_int64(prefix, "step/.ATTRIBUTES/VARIABLE_VALUE")
    except (OSError, ValueError, bundle.UnsupportedIndex):
        return default
    return default if step is None else step
