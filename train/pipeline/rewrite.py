"""Build the resolved config: command-line overrides, then the preflight's safe fixes.

Pure functions over parsed protos; `write_resolved` is the only one that touches disk. The
user's file is never written: the result goes to model_dir/pipeline.config with a unified diff
(model_dir/pipeline.diff) against the canonical text of the input.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os

from train import files
from train.pipeline import configfile, fields


@dataclasses.dataclass(frozen=True)
class Change:
    """One field changed in the resolved config."""

    path: str
    old: str
    new: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}: {self.old} -> {self.new} ({self.why})"


def _set(config, path: str, value, why: str, changes: list[Change]) -> None:
    old = fields.display(config, path)
    fields.set_value(config, path, value)
    new = fields.display(config, path)
    if old != new:
        changes.append(Change(path, old, new, why))


def apply_overrides(config, options) -> tuple[object, list[Change]]:
    """Returns (a copy of `config` with the command-line overrides, the changes made)."""
    config = copy.deepcopy(config)
    changes: list[Change] = []
    if options.checkpoint is not None:
        _set(
            config, "train_config.fine_tune_checkpoint", options.checkpoint, "--checkpoint", changes
        )
    if options.label_map is not None:
        for path, _ in fields.input_readers(config):
            _set(config, f"{path}.label_map_path", options.label_map, "--label_map", changes)
    if options.train_input_path:
        _set(
            config,
            "train_input_reader.tf_record_input_reader.input_path",
            list(options.train_input_path),
            "--train_input_path",
            changes,
        )
    if options.eval_input_path:
        if not config.eval_input_reader:
            config.eval_input_reader.add()
        for path, _ in fields.input_readers(config)[1:]:
            _set(
                config,
                f"{path}.tf_record_input_reader.input_path",
                list(options.eval_input_path),
                "--eval_input_path",
                changes,
            )
    if options.num_classes is not None:
        path = fields.num_classes_path(config)
        if path:
            _set(config, path, options.num_classes, "--num_classes", changes)
    if options.batch_size is not None:
        why = "--batch_size auto: measured" if options.batch_size_auto else "--batch_size"
        _set(config, "train_config.batch_size", options.batch_size, why, changes)
    if options.num_train_steps is not None:
        _set(
            config, "train_config.num_steps", options.num_train_steps, "--num_train_steps", changes
        )
    return config, changes


def apply_fixes(config, findings) -> tuple[object, list[Change]]:
    """Returns (a copy of `config` with every fixable finding's edits, the changes made)."""
    config = copy.deepcopy(config)
    changes: list[Change] = []
    for finding in findings:
        for edit in finding.edits:
            _set(config, edit.path, edit.value, f"{finding.code}: {edit.reason}", changes)
    return config, changes


def restore_from_transplant(config, prefix: str) -> tuple[object, list[Change]]:
    """Points the resolved config at the transplanted checkpoint, restored whole ("full")."""
    config = copy.deepcopy(config)
    changes: list[Change] = []
    why = "--restore=transplant"
    _set(config, "train_config.fine_tune_checkpoint", prefix, why, changes)
    _set(config, "train_config.fine_tune_checkpoint_type", "full", why, changes)
    return config, changes


def scale_learning_rate(config, factor: float, why: str) -> tuple[object, list[Change]]:
    """A copy of `config` with every learning rate of its optimizer multiplied by `factor`.

    Every float field whose name holds "learning_rate" under the optimizer's learning_rate
    message: a constant rate, an exponential or cosine schedule's base and warm-up rates,
    each step of a manual schedule (--nan_retries halves them all).
    """
    config = copy.deepcopy(config)
    changes: list[Change] = []
    optimizer = config.train_config.optimizer
    kind = optimizer.WhichOneof("optimizer")
    if kind is None:
        return config, changes

    for path, message in fields.messages(
        getattr(optimizer, kind), f"train_config.optimizer.{kind}"
    ):
        for field, value in message.ListFields():
            if field.cpp_type == field.CPPTYPE_FLOAT and "learning_rate" in field.name:
                new = value * factor
                if new != value:  # a rate of 0 stays 0: not a change
                    setattr(message, field.name, new)
                    changes.append(Change(f"{path}.{field.name}", f"{value:g}", f"{new:g}", why))
    return config, changes


def unified_diff(source_text: str, source_path: str, resolved_text: str) -> str:
    """Diff between the canonical text of the input and the resolved config."""
    canonical = configfile.to_text(configfile.parse_text(source_text, source_path))
    return "".join(
        difflib.unified_diff(
            canonical.splitlines(keepends=True),
            resolved_text.splitlines(keepends=True),
            fromfile=f"{source_path} (canonical)",
            tofile="pipeline.config (resolved)",
        )
    )


def write_resolved(config_path: str, source, text: str) -> str:
    """Writes the resolved config's text and its diff (`<name>.diff` beside it) atomically.

    Takes the text (configfile.to_text of the resolved config) that the caller also records
    elsewhere, so the config is rendered once. Returns the diff's path.
    """
    diff_path = os.path.splitext(config_path)[0] + ".diff"
    files.write_atomic(config_path, text)
    files.write_atomic(diff_path, unified_diff(source.text, source.path, text))
    return diff_path
