"""Checks on the TFRecords the input readers name (a bounded scan)."""

from __future__ import annotations

import glob
import os

from train.pipeline import fields
from train.preflight.findings import ERROR, Finding
from train.preflight.registry import register


def _expand(pattern: str) -> list[str]:
    """Files an input_path matches, the way tf.io.gfile.glob does for local paths."""
    if any(ch in pattern for ch in "*?["):
        return sorted(glob.glob(pattern))
    return [pattern] if os.path.exists(pattern) else []


@register("input_data")
def check_input_data(ctx):
    """INPUT_DATA: every input glob matches files, and they are not empty."""
    for reader_path, reader in fields.input_readers(ctx.config):
        for pattern in fields.input_paths(reader):
            if fields.PLACEHOLDER in pattern:
                continue  # PLACEHOLDER reports it
            files = _expand(pattern)
            if not files:
                yield Finding(
                    "INPUT_DATA.no_match",
                    ERROR,
                    f"{ctx.where('input_path')}: {reader_path}.tf_record_input_reader.input_path "
                    f"{pattern!r} matches no file",
                    "fix the path or glob (relative paths are relative to the current directory)",
                    file=ctx.source.path,
                    line=ctx.line("input_path"),
                )
                continue
            empty = [f for f in files if os.path.isfile(f) and os.path.getsize(f) == 0]
            if empty and len(empty) == len(files):
                yield Finding(
                    "INPUT_DATA.empty",
                    ERROR,
                    f"{reader_path}: every file matched by {pattern!r} is empty "
                    f"({len(empty)} files); the OD API would hang at the first batch",
                    "regenerate the TFRecords (the converter found no images or annotations)",
                )
