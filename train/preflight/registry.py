"""A flat, ordered registry of preflight checks.

A check is a small function `check(ctx) -> Iterable[Finding]`, registered with `@register`.
Checks must not raise for user errors (a missing file is a finding); if one raises anyway the
runner turns it into an `INTERNAL` finding so that the other checks still run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from train.preflight.findings import Finding

CheckFn = Callable[["object"], Iterable[Finding]]
_CHECKS: dict[str, CheckFn] = {}


def register(name: str) -> Callable[[CheckFn], CheckFn]:
    """Decorator: registers a check under a unique name (duplicates are a bug)."""

    def decorator(fn: CheckFn) -> CheckFn:
        if name in _CHECKS:
            raise KeyError(f"preflight check {name!r} registered twice")
        _CHECKS[name] = fn
        return fn

    return decorator


def checks() -> dict[str, CheckFn]:
    """All registered checks, in registration order."""
    from train.preflight import (  # noqa: F401
        checks_checkpoint,
        checks_config,
        checks_data,
        checks_env,
    )

    return dict(_CHECKS)
