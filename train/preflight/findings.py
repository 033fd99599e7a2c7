"""Findings: what a preflight check reports, and the edits that would fix it."""

from __future__ import annotations

import dataclasses

from train import errors

ERROR, WARNING, INFO = "error", "warning", "info"
_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}


@dataclasses.dataclass(frozen=True)
class Edit:
    """Set one config field (dotted path, see pipeline.fields) to `value`; None clears it."""

    path: str
    value: object
    reason: str


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem (or notice) about the run, with the exact fix.

    Attributes:
      code: stable code (`CKPT_TYPE`, or `CKPT_TYPE.detail`); docs/preflight.md lists them all.
      severity: 'error' | 'warning' | 'info'.
      message: one line naming the file and field (with its line number where known).
      fix: what to change, exactly.
      edits: config edits the rewrite stage can apply; a finding with edits is `fixable`.
      file: the file the finding is about, if any.
      line: 1-based line in that file, if known.
    """

    code: str
    severity: str
    message: str
    fix: str
    edits: tuple[Edit, ...] = ()
    file: str | None = None
    line: int | None = None

    def printed(self) -> str:
        """How the driver prints it when it stops or warns a run: the one place for this form."""
        return f"{self.severity}: {self.code}: {self.message}\n  fix: {self.fix}"

    def __post_init__(self):
        # Values quoted in messages (tokens, paths) can be megabytes long: keep lines readable.
        object.__setattr__(self, "message", errors.clip(self.message))
        object.__setattr__(self, "fix", errors.clip(self.fix))

    @property
    def fixable(self) -> bool:  # noqa: D102
        return bool(self.edits)

    def as_dict(self) -> dict:
        """JSON form (the report schema's `findings[]` entries)."""
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "fix": self.fix,
            "fixable": self.fixable,
            "file": self.file,
            "line": self.line,
            "edits": [{"field": e.path, "value": e.value, "reason": e.reason} for e in self.edits],
        }


def sort_key(finding: Finding):
    """Errors first, then by code, for stable reports."""
    return (_ORDER.get(finding.severity, 9), finding.code, finding.line or 0, finding.message)
