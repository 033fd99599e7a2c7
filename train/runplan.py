"""What one driver invocation will do, decided before anything is written (a RunPlan).

`train.driver.plan_run` builds it from the options (reading, never writing); the stages under
train/stages/ carry it out. Frozen: a stage that changes the plan returns a new one.
"""

from __future__ import annotations

import dataclasses
import os

from train.contracts import PrepareSpec
from train.launch import cluster
from train.launch.specs import Launch
from train.options import RunOptions
from train.pipeline import configfile, rewrite
from train.preflight import PreviousRun, Report
from train.preflight.findings import Finding


@dataclasses.dataclass(frozen=True)
class Stop:
    """The invocation ends before any write but the report: its exit code and last line."""

    code: int
    line: str


@dataclasses.dataclass(frozen=True)
class Duties:
    """What this process does beyond training; only worker 0 writes the run's shared files.

    Attributes:
      report: write --report_json.
      move_aside: --fresh: rename model_dir's earlier run (worker 0) ...
      wait_for_move: ... or wait until worker 0 has (the others).
      prepare: "run" the restore dry run / transplant child, "reuse" a current transplant,
        "wait" for worker 0's transplant, "none" (no fine-tune checkpoint), or "" (not asked).
      summaries: write the run's text and HParams summaries.
      tensorboard: serve TensorBoard while training.
    """

    report: bool = True
    move_aside: bool = False
    wait_for_move: bool = False
    prepare: str = ""
    summaries: bool = True
    tensorboard: bool = False


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """Everything one invocation will do, decided before anything is written."""

    options: RunOptions
    stop: Stop | None = None
    lines: tuple[str, ...] = ()  # printed first (the preflight report, warnings)
    findings: tuple[Finding, ...] = ()
    preflight: Report | None = None
    changes: tuple[rewrite.Change, ...] = ()
    source: configfile.PipelineFile | None = None
    resolved_config: object = None
    resolved_text: str = ""
    resolved_path: str | None = None
    previous_run: PreviousRun | None = None
    topology: cluster.Topology | None = None
    duties: Duties = Duties()
    prepare: PrepareSpec | None = None
    launch: Launch | None = None
    auto_batch: dict | None = None  # --batch_size auto: what was measured (report batch_auto)

    @property
    def work_dir(self) -> str | None:  # noqa: D102
        return os.path.dirname(self.resolved_path) if self.resolved_path else None
