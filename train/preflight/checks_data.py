"""Checks on the TFRecords the input readers name (a bounded scan)."""

from __future__ import annotations

import glob
import os

from train.pipeline import fields
from train.preflight.findings import ERROR, WARNING, Finding
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
                yield ctx.finding_at(
                    "input_path",
                    "INPUT_DATA.no_match",
                    ERROR,
                    f"{reader_path}.tf_record_input_reader.input_path {pattern!r} matches no file",
                    "fix the path or glob (relative paths are relative to the current directory)",
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


@register("input_shards")
def check_input_shards(ctx):
    """INPUT_DATA.shards: each worker of a multi-worker run needs its own training files."""
    workers = ctx.topology.num_workers if ctx.topology is not None else 1
    if workers <= 1:
        return
    reader = ctx.config.train_input_reader
    patterns = [p for p in fields.input_paths(reader) if fields.PLACEHOLDER not in p]
    files = {f for pattern in patterns for f in _expand(pattern)}
    if patterns and 0 < len(files) < workers:
        yield ctx.finding_at(
            "input_path",
            "INPUT_DATA.shards",
            ERROR,
            f"train_input_reader matches {len(files)} file(s) but the run has {workers} "
            "workers: the OD API gives each worker whole files, so a worker would get no data "
            "and fail at its first batch (StopIteration / End of sequence)",
            f"split the training TFRecords into at least {workers} files (ideally a multiple "
            f"of {workers}), or run {len(files)} worker(s)",
        )


_SAMPLE = 200  # records scanned per input reader: enough to catch systematic mistakes, < 1 s


def _scan(files: list[str], limit: int):
    """Yields (file, parsed Example or exception) for the first `limit` records in all files."""
    from train import records, wireprotos

    example_class = wireprotos.example()
    count = 0
    for path in files:
        try:
            for payload in records.read_records(path, limit - count):
                yield path, example_class.FromString(payload)
                count += 1
        except Exception as e:  # noqa: BLE001 - corrupt data is a finding
            yield path, e
        if count >= limit:
            return


def _feature(example, key):
    feature = example.features.feature.get(key)
    if feature is None:
        return []
    kind = feature.WhichOneof("kind")
    return list(getattr(feature, kind).value) if kind else []


@register("input_records")
def check_input_records(ctx):
    """INPUT_DATA: a bounded scan of each reader's records against the label map."""
    label_map = ctx.train_label_map
    names = set(label_map.names) if label_map else None
    num_classes = label_map.max_id if label_map else None
    for reader_path, reader in fields.input_readers(ctx.config):
        files = []
        for pattern in fields.input_paths(reader):
            if fields.PLACEHOLDER not in pattern:
                files += [f for f in _expand(pattern) if os.path.isfile(f) and os.path.getsize(f)]
        if not files:
            continue
        unknown: dict[str, int] = {}
        out_of_range: set[int] = set()
        bad_boxes = records = 0
        for path, example in _scan(files, _SAMPLE):
            if isinstance(example, Exception):
                first = str(example).strip().splitlines()[0] if str(example).strip() else ""
                yield Finding(
                    "INPUT_DATA.corrupt",
                    ERROR,
                    f"{path}: not a readable TFRecord of tf.train.Example "
                    f"({type(example).__name__}: {first[:200]})",
                    "regenerate the file; check it was copied whole (not a Git LFS pointer)",
                )
                break
            records += 1
            texts = [
                t.decode("utf-8", "replace") for t in _feature(example, "image/object/class/text")
            ]
            labels = _feature(example, "image/object/class/label")
            if names is not None and texts:
                for text in texts:
                    if text not in names:
                        unknown[text] = unknown.get(text, 0) + 1
            elif num_classes and labels:
                out_of_range.update(x for x in labels if not 1 <= x <= num_classes)
            box = [
                _feature(example, f"image/object/bbox/{k}")
                for k in ("xmin", "ymin", "xmax", "ymax")
            ]
            if any(not 0.0 <= v <= 1.0 for values in box for v in values) or any(
                lo > hi for lo, hi in zip(box[0] + box[1], box[2] + box[3], strict=False)
            ):
                bad_boxes += 1
        where = f"{reader_path} ({files[0]}{' ...' if len(files) > 1 else ''})"
        if unknown:
            listed = ", ".join(f"{t!r} x{n}" for t, n in sorted(unknown.items())[:5])
            yield Finding(
                "INPUT_DATA.class_text",
                ERROR,
                f"{where}: class names not in the label map {label_map.path}: {listed}; the OD "
                "API silently turns those boxes into background",
                "make the label map names match image/object/class/text (case matters)",
            )
        if out_of_range:
            yield Finding(
                "INPUT_DATA.label_range",
                ERROR,
                f"{where}: class labels {sorted(out_of_range)[:10]} outside 1..{num_classes}; "
                "those boxes silently become background",
                "label classes 1..N as in the label map (0 is background)",
            )
        if bad_boxes:
            yield Finding(
                "INPUT_DATA.boxes",
                WARNING,
                f"{where}: {bad_boxes} of {records} scanned records have boxes outside [0, 1] or "
                "with min > max (pixel coordinates instead of normalised ones?)",
                "write normalised coordinates: xmin = x / width, ymin = y / height, ...",
            )
