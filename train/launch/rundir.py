"""What is already in model_dir: moving an earlier run aside for `--fresh` (never deleting)."""

from __future__ import annotations

import glob
import json
import os
import time


def aside_path(model_dir: str, stamp: str) -> str:
    """Where `--fresh` moves model_dir: a sibling DIR.moved-STAMP (never inside model_dir)."""
    model_dir = os.path.abspath(model_dir).rstrip(os.sep)
    return f"{model_dir}.moved-{stamp}"


DATA = "data"  # --data's conversion of an annotation folder: the run's input, not the run
PROBE = "batch_probe"  # --batch_size auto's measurements, made for the run about to start
CLAIM = "run.claim"  # this run's claim on model_dir (launch/claim.py): moved with its lock
KEPT = (DATA, PROBE, CLAIM)  # what --fresh leaves in model_dir


def inputs_inside(model_dir: str, paths) -> list[str]:
    """The given input paths (config, checkpoint, data) that live inside model_dir.

    model_dir/data (what --data converted) does not count: --fresh keeps it in place.
    """
    root = os.path.abspath(model_dir).rstrip(os.sep) + os.sep
    kept = os.path.join(root, DATA) + os.sep
    return [
        p
        for p in paths
        if p and os.path.abspath(p).startswith(root) and not os.path.abspath(p).startswith(kept)
    ]


def move_aside(model_dir: str) -> str | None:
    """Renames model_dir to a free DIR.moved-TIME and returns it (None when there is none).

    model_dir/data (the conversion of --data), model_dir/batch_probe (--batch_size auto's
    measurements, made by this invocation) and the claim this invocation holds are moved
    back: they belong to the new run (a renamed file keeps its lock).
    """
    if not os.path.exists(model_dir):
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = aside_path(model_dir, stamp), 1
    while os.path.exists(target):
        n += 1
        target = aside_path(model_dir, f"{stamp}-{n}")
    os.rename(model_dir, target)
    for name in KEPT:  # the converted --data and the batch measurements belong to the new run
        if os.path.exists(os.path.join(target, name)):
            os.makedirs(model_dir, exist_ok=True)
            os.rename(os.path.join(target, name), os.path.join(model_dir, name))
    return target


DAMAGED = "damaged"  # where checkpoints that cannot be restored whole are set aside


def set_aside_damaged(model_dir: str, damaged, resume_from: str) -> str:
    """Moves damaged checkpoints into model_dir/damaged; the state names `resume_from`.

    `resume_from` is the newest intact checkpoint; the damaged files are kept, never deleted.

    The OD API resumes from the state file's model_checkpoint_path; its next save numbers
    after the restored checkpoint, so the damaged names could be written over: they move first.
    """
    target = os.path.join(model_dir, DAMAGED)
    os.makedirs(target, exist_ok=True)
    for prefix, _ in damaged:
        for path in glob.glob(glob.escape(prefix) + ".*"):
            os.replace(path, os.path.join(target, os.path.basename(path)))
    kept = sorted(glob.glob(os.path.join(glob.escape(model_dir), "*.index")), key=os.path.getmtime)
    lines = [f"model_checkpoint_path: {json.dumps(os.path.basename(resume_from))}"]
    lines += [
        f"all_model_checkpoint_paths: {json.dumps(os.path.basename(p)[: -len('.index')])}"
        for p in kept
    ]
    state = os.path.join(model_dir, "checkpoint")
    with open(state + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(state + ".tmp", state)
    return target


def wait_until(condition, timeout_s: float, poll_s: float = 1.0) -> bool:
    """Polls `condition()` until it holds (True) or `timeout_s` passes (False).

    For a non-chief worker waiting on worker 0's changes to the shared model_dir (the --fresh
    move, the transplant).
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True


RESUMABLE_CHANGES = ("num_steps", "fine_tune_checkpoint", "fine_tune_checkpoint_type")


def config_changes(previous, resolved) -> list[str]:
    """Sections of the resolved config that differ from the run being resumed.

    The step count may change (that is how a finished run is continued), and the fine-tune
    checkpoint does not matter once a run exists (its own checkpoint replaces it).
    """
    changed = []
    for name in ("model", "train_config", "train_input_reader"):
        before, after = getattr(previous, name), getattr(resolved, name)
        if name == "train_config":
            before, after = _without(before, RESUMABLE_CHANGES), _without(after, RESUMABLE_CHANGES)
        if before != after:
            changed.append(name)
    return changed


def _without(message, names):
    copy = type(message)()
    copy.CopyFrom(message)
    for name in names:
        copy.ClearField(name)
    return copy
