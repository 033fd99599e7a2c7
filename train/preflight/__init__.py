"""Preflight: every check of config, checkpoint, label map, data and model_dir, in one pass.

The checks are small functions `check(ctx) -> Iterable[Finding]` listed in CHECKS; they must
not raise for user errors (a missing file is a finding). One that raises anyway is a bug, and
becomes an `INTERNAL` finding so that the other checks still run.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable, Iterable

from train import errors, nativeimports
from train.preflight import (
    checks_checkpoint,
    checks_config,
    checks_data,
    checks_env,
    checks_export,
    checks_model,
    checks_pyramid,
)
from train.preflight.context import Context, PreviousRun
from train.preflight.findings import ERROR, Finding, sort_key

Check = Callable[[Context], Iterable[Finding]]

CHECKS: tuple[Check, ...] = (
    checks_checkpoint.check_checkpoint_path,
    checks_checkpoint.check_checkpoint_kind,
    checks_checkpoint.check_model_dir_usable,
    checks_checkpoint.check_model_dir,
    checks_checkpoint.check_checkpoint_cadence,
    checks_checkpoint.check_checkpoint_architecture,
    checks_checkpoint.check_restore_mode,
    checks_config.check_placeholders,
    checks_config.check_checkpoint_version,
    checks_config.check_ignored_fields,
    checks_config.check_freezing,
    checks_config.check_tf1_config,
    checks_config.check_label_maps,
    checks_config.check_num_classes,
    checks_config.check_learning_rate,
    checks_config.check_batch,
    checks_config.check_bounds,
    checks_export.check_export,
    checks_model.check_duplicate_fields,
    checks_model.check_required_parts,
    checks_model.check_ssd_anchors,
    checks_model.check_ssd_image_size,
    checks_pyramid.check_bifpn_input_size,
    checks_model.check_faster_rcnn,
    checks_model.check_post_processing,
    checks_model.check_losses_and_resizer,
    checks_model.check_keypoints_and_masks,
    checks_data.check_input_data,
    checks_data.check_input_shards,
    checks_data.check_input_records,
    checks_env.check_environment,
    checks_env.check_disk_space,
    checks_env.check_native_imports,
    checks_env.check_offline_weights,
)


@dataclasses.dataclass(frozen=True)
class Report:
    """The outcome of one preflight pass.

    Attributes:
      findings: every finding, errors first.
      checkpoint: a summary of the fine-tune checkpoint (None when there is none or it is
        unreadable).
      previous_run: the run model_dir already holds (None when it holds none).
      wall_s: how long the pass took.
    """

    findings: tuple[Finding, ...]
    checkpoint: dict | None
    previous_run: PreviousRun | None
    wall_s: float

    def errors(self) -> list[Finding]:  # noqa: D102
        return [f for f in self.findings if f.severity == ERROR]

    def blocking(self, fix: str) -> list[Finding]:
        """Errors that stop the run: all of them with --fix=never, else the unfixable ones."""
        return [f for f in self.errors() if fix == "never" or not f.fixable]


def _crashed(check: Check, error: Exception) -> Finding:
    last = traceback.extract_tb(error.__traceback__)[-1]
    return Finding(
        "INTERNAL",
        ERROR,
        f"preflight check {check.__name__!r} crashed: {errors.one_line(error)} "
        f"({last.filename}:{last.lineno})",
        "a bug in tfod-finetune: please report it with this line; the other checks ran",
    )


def run_preflight(ctx: Context, checks: Iterable[Check] = CHECKS) -> Report:
    """Runs the checks; a crashing check becomes an INTERNAL finding."""
    start = time.monotonic()
    if checks_env.check_native_imports in checks:  # a subprocess: overlap the other checks
        nativeimports.probe_once(checks_env.child_imports_env())
    findings: list[Finding] = []
    for check in checks:
        try:
            findings.extend(check(ctx) or ())
        except Exception as e:  # noqa: BLE001 - one broken check must not hide the others
            findings.append(_crashed(check, e))
    info, _ = ctx.checkpoint_info
    summary = None
    if info is not None:
        summary = {
            **info.summary(),
            "num_classes": checks_checkpoint.head_classes(ctx.config, info),
        }
    findings.sort(key=sort_key)
    return Report(tuple(findings), summary, ctx.previous_run, time.monotonic() - start)
