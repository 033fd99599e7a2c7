"""Render the preflight outcome and the restore: a human report (stderr) and the JSON report."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata

from train.preflight.findings import ERROR, INFO, WARNING

_PACKAGES = (
    "tensorflow",
    "tensorflow-cpu",
    "tf-keras",
    "keras",
    "tf-models-official",
    "tf-models-research-object-detection",
    "protobuf",
    "numpy",
    "tf-slim",
    "tensorboard",
)


def versions() -> dict[str, str | None]:
    """Installed versions of the stack (read from package metadata; imports nothing)."""
    result: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            result[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            result[name] = None
    return result


def command(argv: list[str]) -> list[str]:
    """The command line as the user typed it.

    `python -m train.finetune ...` for a module of this package (Python puts the module's
    file path in argv[0]), else as given (a console script).
    """
    package = os.path.dirname(os.path.abspath(__file__))
    first = os.path.abspath(argv[0]) if argv else ""
    if first.endswith(".py") and first.startswith(package + os.sep):
        module = os.path.relpath(first[:-3], os.path.dirname(package)).replace(os.sep, ".")
        return ["python", "-m", module.removesuffix(".__main__"), *argv[1:]]
    return list(argv)


def machine() -> dict:
    """Where the run ran: host, OS, CPUs, memory (what a report reader compares runs by)."""
    from train import envinfo

    return {
        "host": platform.node(),
        "system": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_bytes": envinfo.host_memory_bytes(),
    }


def render_text(report, fix: str, changes) -> str:
    """The human report: counts, then each finding with its fix, then the changes made."""
    counts = {s: sum(1 for f in report.findings if f.severity == s) for s in (ERROR, WARNING, INFO)}
    fixable = sum(1 for f in report.findings if f.severity == ERROR and f.fixable)
    head = (
        f"preflight: {counts[ERROR]} error(s) ({fixable} fixable), {counts[WARNING]} "
        f"warning(s), {counts[INFO]} note(s) in {report.wall_s:.1f} s"
    )
    lines = [head]
    for finding in report.findings:
        status = ""
        if finding.fixable:
            status = (
                "  [fixed in the resolved config]" if fix == "auto" else "  [fixable: --fix=auto]"
            )
        lines.append(f"  {finding.severity:<7} {finding.code}: {finding.message}")
        lines.append(f"          fix: {finding.fix}{status}")
    if changes:
        lines.append("changes in the resolved config:")
        lines += [f"  {change}" for change in changes]
    return "\n".join(lines)


def build_json(
    findings,
    preflight,
    changes,
    config_summary: dict,
    restore: dict | None,
    outcome: dict,
    rehearsal: dict | None = None,
    results: dict | None = None,
) -> str:
    """The --report_json document.

    Written on every exit once the flags have parsed: `outcome` says how the run ended
    (status ok/failed/stopped, or started/training while it runs; the exit code; the last
    line), `findings` what the preflight found (a PARSE finding when the config does not
    parse), `preflight_wall_s` null when no preflight ran. `results` adds the end of the run
    (`eval`: {final, best}, `export`, `early_stop`) at the top level.
    """
    document = {
        "outcome": outcome,
        "findings": [f.as_dict() for f in findings],
        "checkpoint": preflight.checkpoint if preflight else None,
        "config": {
            **config_summary,
            "changes": [
                {"field": c.path, "old": c.old, "new": c.new, "why": c.why} for c in changes
            ],
        },
        "versions": versions(),
        "machine": machine(),
        "command": command(sys.argv),
        "preflight_wall_s": round(preflight.wall_s, 3) if preflight else None,
    }
    if restore:
        document["restore"] = restore
    if rehearsal:
        document["rehearsal"] = rehearsal
    document.update(results or {})
    return json.dumps(document, indent=2, sort_keys=True, default=str)


def restore_text(measured: dict) -> str:
    """A child's measurement (the fine-tune restore, the freeze), for a TensorBoard text."""
    body = {k: v for k, v in measured.items() if k != "summary"}
    return f"{measured.get('summary', '')}\n\n{json.dumps(body, indent=2, sort_keys=True)}"
