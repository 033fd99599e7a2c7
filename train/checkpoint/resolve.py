"""Turn whatever users put in `fine_tune_checkpoint` into a checkpoint prefix, or say why not.

Pure filesystem logic (no TensorFlow): users point at `ckpt-0.index`, at a `.data-*` shard, at
the `checkpoint/` directory, at the extracted tarball root, or at a path with the OD API's
`PATH_TO_BE_CONFIGURED` left in. The OD API accepts some of these early and fails 20-60 s later
("Unable to open table file", "expected to be an object-based checkpoint"); here each gets a
verdict and, when there is one, the prefix it should have been.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re

from train import files

_SHARD = re.compile(r"\.data-\d{5}-of-\d{5}$")
_STATE_LINE = re.compile(r'^model_checkpoint_path:\s*"(.*)"\s*$', re.M)


@dataclasses.dataclass(frozen=True)
class Resolution:
    """Where a fine_tune_checkpoint value leads.

    Attributes:
      given: the value as written.
      prefix: the checkpoint prefix it resolves to (None when it resolves to nothing).
      problem: None when `given` is already a valid prefix; else a short code detail
        ('placeholder', 'index_file', 'data_file', 'directory', 'tarball_root', 'missing',
        'no_index', 'empty', 'unreadable').
      message: one line describing the problem (empty when there is none).
    """

    given: str
    prefix: str | None
    problem: str | None
    message: str = ""


def checkpoints_in_dir(directory: str) -> list[str]:
    """Every checkpoint prefix in a directory (those with an index), newest step first."""
    indexes = glob.glob(os.path.join(glob.escape(directory), "*.index"))

    def step(path: str) -> int:
        match = re.search(r"-(\d+)\.index$", path)
        return int(match[1]) if match else -1

    return [path[: -len(".index")] for path in sorted(indexes, key=step, reverse=True)]


def latest_in_dir(directory: str) -> str | None:
    """The newest checkpoint prefix in a directory (state file first, else highest step)."""
    state = os.path.join(directory, "checkpoint")
    if os.path.isfile(state):
        try:
            with files.open_input(state) as f:
                match = _STATE_LINE.search(f.read(1 << 20).decode("utf-8", "replace"))
        except OSError:
            match = None  # unreadable state file: fall back to the highest step
        if match:
            name = match[1]
            prefix = name if os.path.isabs(name) else os.path.join(directory, name)
            if os.path.exists(prefix + ".index"):
                return prefix
    indexes = glob.glob(os.path.join(glob.escape(directory), "*.index"))
    if not indexes:
        return None

    def step(path: str) -> int:
        match = re.search(r"-(\d+)\.index$", path)
        return int(match[1]) if match else -1

    return max(indexes, key=step)[: -len(".index")]


def _near_misses(path: str) -> list[tuple[str, str]]:
    """Where a missing prefix usually is.

    A tarball extracted into a folder of the same name (`m/m/checkpoint/ckpt-0` for
    `m/checkpoint/ckpt-0`), a path that skips the `checkpoint/` level, Windows separators,
    or a missing separator (`checkpointckpt-0`). Returns (candidate, problem) pairs.
    """
    candidates = []
    if "\\" in path:  # Windows separators (or a mix) on a POSIX system
        path = path.replace("\\", "/")
        candidates.append((path, "separator"))
    directory, name = os.path.split(path)
    parts = directory.split(os.sep)
    candidates.append((os.path.join(directory, "checkpoint", name), "nested"))
    # A missing separator: ".../checkpointckpt-0" for ".../checkpoint/ckpt-0".
    try:
        entries = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
    except OSError:  # an unreadable folder: no candidates from it
        entries = []
    if entries:
        for entry in entries:
            if (
                name.startswith(entry)
                and name != entry
                and os.path.isdir(os.path.join(directory, entry))
            ):
                candidates.append((os.path.join(directory, entry, name[len(entry) :]), "separator"))
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] and parts[i] != "checkpoint":
            doubled = os.sep.join(parts[: i + 1] + parts[i:])
            candidates += [
                (os.path.join(doubled, name), "nested"),
                (os.path.join(doubled, "checkpoint", name), "nested"),
            ]
    return candidates


def resolve(given: str) -> Resolution:
    """Resolves a `fine_tune_checkpoint` value (see Resolution)."""
    if not given.strip():
        return Resolution(given, None, "empty", "fine_tune_checkpoint is empty")
    if "PATH_TO_BE_CONFIGURED" in given or re.search(r"\$\{?\w+\}?", given):
        return Resolution(given, None, "placeholder", f"placeholder left in the path: {given}")
    path = os.path.expanduser(given)
    if path.endswith(".index"):
        prefix = path[: -len(".index")]
        if os.path.exists(path):
            return Resolution(
                given,
                prefix,
                "index_file",
                "points at the .index file; the OD API needs the prefix without the extension",
            )
        return Resolution(given, None, "missing", f"{given} does not exist")
    if _SHARD.search(path):
        prefix = _SHARD.sub("", path)
        if os.path.exists(prefix + ".index"):
            return Resolution(
                given,
                prefix,
                "data_file",
                "points at a .data shard; the OD API needs the prefix without the extension",
            )
        return Resolution(given, None, "missing", f"{prefix}.index does not exist")
    if os.path.isdir(path):
        prefix = latest_in_dir(path)
        if prefix:
            return Resolution(
                given,
                prefix,
                "directory",
                "points at a directory; the OD API needs a checkpoint prefix inside it",
            )
        inner = os.path.join(path, "checkpoint")
        if os.path.isdir(inner):
            prefix = latest_in_dir(inner)
            if prefix:
                return Resolution(
                    given,
                    prefix,
                    "tarball_root",
                    "points at the extracted zoo model folder; the checkpoint is in its "
                    "checkpoint/ subfolder",
                )
        return Resolution(given, None, "no_index", f"directory {given} holds no checkpoint")
    if os.path.exists(path + ".index"):
        return Resolution(given, path, None)
    if os.path.exists(path):
        return Resolution(
            given,
            None,
            "no_index",
            f"{given} is a file but not a checkpoint prefix ({path}.index is missing)",
        )
    directory = os.path.dirname(path) or "."
    if os.path.isdir(directory) and not os.access(directory, os.R_OK | os.X_OK):
        return Resolution(
            given, None, "unreadable", f"the folder {directory} cannot be read (permission denied)"
        )
    for candidate, problem in _near_misses(path):
        if os.path.exists(candidate + ".index"):
            why = "separators" if problem == "separator" else "nested or partial path"
            return Resolution(
                given, candidate, problem, f"{given} does not exist, but {candidate} does ({why})"
            )
    return Resolution(given, None, "missing", f"{given}.index does not exist")
