"""What the driver prints and writes to --report_json while it carries out a RunPlan."""

from __future__ import annotations

import os
import sys

from train import errors, files, report
from train.pipeline import fields
from train.preflight.findings import Finding
from train.runplan import RunPlan


def emit(line: str) -> None:
    """Prints one line of the run to stderr at once (a Slurm log interleaves it with others)."""
    print(line, file=sys.stderr, flush=True)


class Reporter:
    """Writes --report_json (when this process's duty) at each stage, the last one wins."""

    def __init__(self, plan: RunPlan):
        self.plan = plan
        self.restore: dict = {}
        self.extra: list[Finding] = []  # found after the preflight (the rehearsal, training)
        self.rehearsal: dict | None = None
        # eval, export, early_stop, freeze, nan_retries, batch_auto, memory
        self.results: dict = {"batch_auto": plan.auto_batch} if plan.auto_batch else {}

    def write(self, status: str, code: int | None = None, message: str = "") -> None:
        """Writes the report as it stands, with the run's `status` (the last write wins)."""
        plan = self.plan
        if not plan.duties.report:
            return
        config = (
            plan.resolved_config
            if plan.resolved_config is not None
            else (plan.source.proto if plan.source else None)
        )
        document = report.build_json(
            (*plan.findings, *self.extra),
            plan.preflight,
            plan.changes,
            _config_summary(plan, config),
            self.restore or None,
            {"status": status, "exit_code": code, "message": message},
            self.rehearsal,
            self.results,
        )
        files.write_atomic(plan.options.report_json, document)


def _config_summary(plan: RunPlan, config) -> dict:
    summary = {
        "source": os.path.abspath(plan.options.pipeline_config),
        "resolved": os.path.abspath(plan.resolved_path) if plan.resolved_path else None,
    }
    if config is None:
        return summary
    path = fields.num_classes_path(config)
    return {
        **summary,
        "meta_arch": fields.meta_arch(config),
        "feature_extractor": fields.feature_extractor_type(config),
        "num_classes": fields.get(config, path) if path else None,
        "fine_tune_checkpoint": config.train_config.fine_tune_checkpoint or None,
        "fine_tune_checkpoint_type": config.train_config.fine_tune_checkpoint_type or None,
        "batch_size": config.train_config.batch_size,
        "num_steps": config.train_config.num_steps,
    }


def status_of(code: int) -> str:
    """The report's status for an exit code."""
    return {errors.EXIT_OK: "ok", errors.EXIT_INTERRUPTED: "stopped"}.get(code, "failed")


def end(reporter: Reporter, code: int, line: str) -> int:
    """Prints the last line and writes the final report; returns `code`."""
    emit(line)
    reporter.write(status_of(code), code, line.split("\n", 1)[0])
    return code
