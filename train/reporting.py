"""What the driver prints and writes to --report_json while it carries out a RunPlan."""

from __future__ import annotations

import os
import sys

from train import errors, files, rendering
from train.pipeline import fields
from train.preflight.findings import Finding
from train.runplan import RunPlan

RUN_JSON = "run.json"  # the driver's report, kept in model_dir for train.report


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
        """Writes the report as it stands, with the run's `status` (the last write wins).

        To --report_json when asked, and to model_dir/run.json once the run has written its
        resolved config there (the folder is this run's: never into another run's folder,
        which the claim and the preflight refuse before that): what `python -m train.report`
        builds the run's page from, interrupted runs included.
        """
        plan = self.plan
        in_run = self.run_json()
        if not plan.duties.report and in_run is None:
            return
        config = (
            plan.resolved_config
            if plan.resolved_config is not None
            else (plan.source.proto if plan.source else None)
        )
        document = rendering.build_json(
            (*plan.findings, *self.extra),
            plan.preflight,
            plan.changes,
            _config_summary(plan, config),
            self.restore or None,
            {"status": status, "exit_code": code, "message": message},
            self.rehearsal,
            self.results,
        )
        if plan.duties.report:
            files.write_atomic(plan.options.report_json, document)
        if in_run is not None:
            files.write_atomic(in_run, document)

    def page(self, announce: bool = True) -> None:
        """Writes model_dir/report.html (train/runreport.py) beside run.json, and says where.

        The page is a view of files already written: one that cannot be built is reported and
        the run's exit code stays what it was. `announce` False: written without a line (after
        a training failure whose error line must stay the last one printed).
        """
        in_run = self.run_json()
        if in_run is None:
            return
        from train import runreport

        model_dir = os.path.dirname(in_run)
        path = os.path.join(model_dir, runreport.REPORT)
        try:
            files.write_atomic(path, runreport.build(model_dir))
        except OSError as e:
            emit(f"warning: the run report {path} was not written: {e}")
            return
        if announce:
            emit(f"run report: {path} (rebuild: python -m train.report {model_dir})")

    def run_json(self) -> str | None:
        """model_dir/run.json for the chief of a run that wrote its resolved config, else None."""
        plan = self.plan
        chief = plan.topology is None or plan.topology.is_chief
        if not (chief and plan.resolved_path and os.path.isfile(plan.resolved_path)):
            return None
        return os.path.join(os.path.dirname(os.path.abspath(plan.resolved_path)), RUN_JSON)


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
    reporter.write(status_of(code), code, line.split("\n", 1)[0])
    reporter.page()
    emit(line)  # the last line is the run's verdict (an error's one line)
    return code
