"""Preflight: every check of config, checkpoint, label map, data and model_dir, in one pass."""

from __future__ import annotations

import dataclasses
import time
import traceback

from train.preflight.context import Context
from train.preflight.findings import ERROR, Finding, sort_key
from train.preflight.registry import checks


@dataclasses.dataclass
class Report:
    """The outcome of one preflight pass."""

    findings: list[Finding]
    checkpoint: dict | None
    wall_s: float

    def errors(self) -> list[Finding]:  # noqa: D102
        return [f for f in self.findings if f.severity == ERROR]

    def blocking(self, fix: str) -> list[Finding]:
        """Errors that stop the run: all of them with --fix=never, else the unfixable ones."""
        return [f for f in self.errors() if fix == "never" or not f.fixable]


def run_preflight(ctx: Context) -> Report:
    """Runs every registered check; a crashing check becomes an INTERNAL finding."""
    start = time.monotonic()
    findings: list[Finding] = []
    for name, check in checks().items():
        try:
            findings.extend(check(ctx) or ())
        except Exception as e:  # noqa: BLE001 - one broken check must not hide the others
            last = traceback.extract_tb(e.__traceback__)[-1]
            findings.append(
                Finding(
                    "INTERNAL",
                    ERROR,
                    f"preflight check {name!r} crashed: {type(e).__name__}: {e} "
                    f"({last.filename}:{last.lineno})",
                    "please report this bug; rerun with --fix=never to see the other findings",
                )
            )
    info, _ = ctx.checkpoint_info
    summary = None
    if info is not None:
        from train.preflight.checks_checkpoint import head_classes

        summary = {**info.summary(), "num_classes": head_classes(ctx.config, info)}
    findings.sort(key=sort_key)
    return Report(findings, summary, time.monotonic() - start)
