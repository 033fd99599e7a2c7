"""Checks on the TFRecords the input readers name (a bounded scan)."""

from __future__ import annotations

import dataclasses
import os
import time

from train import errors, files, records
from train.data.scan import feature as _feature
from train.pipeline import fields
from train.preflight.findings import ERROR, INFO, WARNING, Edit, Finding


def _patterns(reader) -> list[str]:
    return [p for p in fields.input_paths(reader) if fields.PLACEHOLDER not in p]


def _record_files(reader) -> list[str]:
    """The regular, non-empty files a reader's globs match (what training will read)."""
    found = []
    for pattern in _patterns(reader):
        for path in records.expand(pattern):
            if files.problem(path) is None and os.path.getsize(path):
                found.append(path)
    return found


def check_input_data(ctx):
    """INPUT_DATA: every input glob matches readable files, and they are not all empty."""
    for reader_path, reader in fields.input_readers(ctx.config):
        for pattern in _patterns(reader):
            where = f"{reader_path}.tf_record_input_reader.input_path {errors.clip(repr(pattern))}"
            if "\0" in pattern:
                yield ctx.finding_at(
                    "input_path",
                    "INPUT_DATA.bad_path",
                    ERROR,
                    f"{where} contains a NUL byte",
                    "retype the path (a NUL byte cannot be part of a file name)",
                )
                continue
            paths = records.expand(pattern)
            if not paths:
                yield ctx.finding_at(
                    "input_path",
                    "INPUT_DATA.no_match",
                    ERROR,
                    f"{where} matches no file",
                    "fix the path or glob (relative paths are relative to the current directory)",
                    value=pattern,
                )
                continue
            problems = {p: files.problem(p) for p in paths}
            unusable = [(p, why) for p, why in problems.items() if why]
            if unusable:
                path, why = unusable[0]
                yield ctx.finding_at(
                    "input_path",
                    "INPUT_DATA.not_a_file",
                    ERROR,
                    f"{where}: {path} {why}"
                    + (f" (and {len(unusable) - 1} more)" if len(unusable) > 1 else "")
                    + "; training would fail on it",
                    "point input_path at the TFRecord files themselves (a glob like "
                    "'DIR/train-*.record' for a folder of shards)",
                    value=pattern,
                )
            empty = [p for p, why in problems.items() if not why and os.path.getsize(p) == 0]
            if empty and len(empty) == len(paths):
                finding = empty_finding(where, len(empty))
                yield ctx.finding_at(
                    "input_path",
                    finding.code,
                    finding.severity,
                    finding.message,
                    finding.fix,
                    value=pattern,
                )


def check_input_shards(ctx):
    """INPUT_DATA.shards: each worker of a multi-worker run needs its own training files."""
    workers = ctx.topology.num_workers if ctx.topology is not None else 1
    if workers <= 1:
        return
    reader = ctx.config.train_input_reader
    train_files = set(_record_files(reader))
    if _patterns(reader) and 0 < len(train_files) < workers:
        yield ctx.finding_at(
            "input_path",
            "INPUT_DATA.shards",
            ERROR,
            f"train_input_reader matches {len(train_files)} file(s) but the run has {workers} "
            "workers: the OD API gives each worker whole files, so a worker would get no data "
            "and fail at its first batch (StopIteration / End of sequence)",
            f"split the training TFRecords into at least {workers} files (ideally a multiple "
            f"of {workers}), or run {len(train_files)} worker(s)",
        )


_SAMPLE = 200  # records scanned per input reader: enough to catch systematic mistakes, < 1 s


def check_input_records(ctx):
    """INPUT_DATA: each reader's records: framing, checksums, images, labels, boxes.

    A bounded sample by default (the first records, in file order); every record of every
    file with --scan_records all (train.data.scan, in parallel over files).

    Everything here would otherwise surface only in training: a corrupted record ("corrupted
    record at 12", no file name), a record without an image or with an image that does not
    decode (an error deep in the input pipeline), class names or labels the OD API silently
    turns into background, boxes in pixel coordinates (training on garbage) or of zero area
    (NaN losses).
    """
    from train.data import scan

    label_map = ctx.train_label_map
    every = getattr(ctx.options, "scan_records", "sample") == "all"
    for reader_path, reader in fields.input_readers(ctx.config):
        paths = _record_files(reader)
        if not paths:
            continue
        needs = ReaderNeeds.of(reader, ctx.config)
        expect = scan.Expect(
            frozenset(label_map.names) if label_map else None,
            label_map.max_id if label_map else None,
            needs,
        )
        started = time.perf_counter()
        found = scan.scan_files(paths, expect, None if every else _SAMPLE)
        wall = time.perf_counter() - started
        yield from record_findings(reader_path, paths, found, needs, label_map)
        yield _scanned(reader_path, paths, found, every, wall)
        if reader_path == "train_input_reader":
            count = found.records if found.complete else scan.count_records(paths)
            epochs = _epochs(ctx, count)
            if epochs:
                yield epochs


def _epochs(ctx, count: int | None) -> Finding | None:
    """TRAIN.epochs: the run's length in passes over the training images."""
    steps = ctx.config.train_config.num_steps
    batch = ctx.config.train_config.batch_size
    if not count or not steps or batch <= 0:
        return None
    images = steps * batch
    return Finding(
        "TRAIN.epochs",
        INFO,
        f"{steps} steps x batch {batch} = {images} images, about {images / count:.3g} epochs of "
        f"{count} training images",
        "nothing to do; set --num_train_steps to about epochs x images / batch for another "
        "length (a few dozen epochs is typical for fine-tuning)",
    )


def _scanned(reader_path: str, paths: list[str], found, every: bool, wall: float) -> Finding:
    """INPUT_DATA.scanned: how much of the data the checks above looked at."""
    megabytes = found.bytes / 1e6
    if every:
        message = (
            f"{reader_path}: scanned every record: {found.records} records, {megabytes:.1f} MB "
            f"in {len(paths)} file(s), {wall:.1f} s ({megabytes / max(wall, 1e-9):.0f} MB/s)"
        )
        fix = "nothing to do"
    elif found.complete:
        message = (
            f"{reader_path}: scanned all {found.records} records ({megabytes:.1f} MB) in "
            f"{len(paths)} file(s)"
        )
        fix = "nothing to do"
    else:
        message = (
            f"{reader_path}: scanned a sample: the first {found.records} records of "
            f"{len(paths)} file(s)"
        )
        fix = "pass --scan_records all to read and check every record (parallel, at disk speed)"
    return Finding("INPUT_DATA.scanned", INFO, message, fix)


def empty_finding(where: str, count: int) -> Finding:
    """INPUT_DATA.empty: no record in what a reader reads.

    The one rule for the preflight and `train.data check`.
    """
    return Finding(
        "INPUT_DATA.empty",
        ERROR,
        f"{where}: every file it matches is empty ({count} file(s)); the OD API would hang at "
        "the first batch",
        "regenerate the TFRecords (the converter found no images or annotations)",
    )


def record_findings(reader_path, paths, found, needs, label_map):
    """The findings of one reader's scan (train.data.scan.FileScan, merged over its files)."""
    scanned = found.records
    tallies = found.tallies
    if scanned == 0 and not found.broken and found.complete:
        yield dataclasses.replace(empty_finding(reader_path, len(paths)), file=paths[0])
        return
    if found.broken:
        more = f" (and {found.broken_files - 1} more file(s))" if found.broken_files > 1 else ""
        yield Finding(
            "INPUT_DATA.corrupt",
            ERROR,
            f"{reader_path}: not a readable TFRecord of tf.train.Example: {found.broken}{more}",
            "regenerate the file; check it was copied whole (not a Git LFS pointer)",
            file=found.broken_path,
        )
    yield from needs.findings(
        reader_path, {k: t for k, t in tallies.items() if k in ReaderNeeds.KINDS}, scanned
    )
    where = f"{reader_path} ({paths[0]}{' ...' if len(paths) > 1 else ''})"
    yield from _image_findings(reader_path, tallies, scanned)
    if found.unknown:
        listed = ", ".join(f"{t!r} x{n}" for t, n in sorted(found.unknown.items())[:5])
        yield Finding(
            "INPUT_DATA.class_text",
            ERROR,
            f"{where}: class names not in the label map {label_map.path}: {listed} (first: "
            f"{tallies['class_text'].first}); the OD API silently turns those boxes into "
            "background",
            "make the label map names match image/object/class/text (case matters)",
        )
    if found.out_of_range:
        yield Finding(
            "INPUT_DATA.label_range",
            ERROR,
            f"{where}: class labels {sorted(found.out_of_range)[:10]} outside "
            f"1..{label_map.max_id} (first: {tallies['label_range'].first}); those boxes "
            "silently become background",
            "label classes 1..N as in the label map (0 is background)",
        )
    yield from _box_findings(reader_path, tallies, scanned)


_REGENERATE = "fix the converter that wrote the records, then regenerate them"


def _image_findings(reader_path, tallies, scanned):
    """Records without an image, with bytes that are no image, or whose header fails."""
    regenerate = _REGENERATE
    if "no_image" in tallies:
        tally = tallies["no_image"]
        yield Finding(
            "INPUT_DATA.no_image",
            ERROR,
            f"{reader_path}: {tally.count} of {scanned} scanned records have no "
            f"image/encoded (first: {tally.first}); training fails on them",
            regenerate + " (each tf.train.Example needs the encoded image bytes)",
        )
    if "not_image" in tallies:
        tally = tallies["not_image"]
        yield Finding(
            "INPUT_DATA.image_format",
            ERROR,
            f"{reader_path}: {tally.count} of {scanned} scanned records hold an "
            f"image/encoded that is not a JPEG, PNG or BMP image (first: {tally.first}); "
            "the OD API cannot decode it",
            regenerate + " (write the JPEG or PNG file's bytes, not decoded pixels)",
        )
    if "image_decode" in tallies:
        tally = tallies["image_decode"]
        yield Finding(
            "INPUT_DATA.image_decode",
            ERROR,
            f"{reader_path}: {tally.count} of {scanned} scanned records hold an image whose "
            f"header does not decode (first: {tally.first}: {tally.detail}); the input "
            "pipeline fails on it",
            regenerate + " (python -m train.data convert re-encodes what Pillow can read)",
        )


def _box_findings(reader_path, tallies, scanned):
    """Boxes in pixels, degenerate boxes (errors), boxes slightly outside the image."""
    pixels, degenerate = tallies.get("pixels"), tallies.get("degenerate")
    if pixels or degenerate:
        what = []
        if pixels:
            what.append(
                f"{pixels.count} have coordinates far outside [0, 1], i.e. pixel values "
                f"(first: {pixels.first})"
            )
        if degenerate:
            what.append(
                f"{degenerate.count} have a box with min >= max, zero or negative area "
                f"(first: {degenerate.first})"
            )
        yield Finding(
            "INPUT_DATA.boxes",
            ERROR,
            f"{reader_path}: of {scanned} scanned records {'; '.join(what)}: training would "
            "learn from wrong boxes (a zero-area box makes the losses NaN)",
            "write normalised coordinates: xmin = x / width, ymin = y / height, ..., with "
            "xmin < xmax and ymin < ymax (python -m train.data convert drops degenerate boxes)",
        )
    if "edge" in tallies:
        tally = tallies["edge"]
        yield Finding(
            "INPUT_DATA.boxes_edge",
            WARNING,
            f"{reader_path}: {tally.count} of {scanned} scanned records have boxes slightly "
            f"outside [0, 1] (first: {tally.first})",
            "clip the boxes to the image when converting",
        )


_FEATURE_LISTS = 2  # tf.train.SequenceExample's field number of feature_lists


@dataclasses.dataclass(frozen=True)
class ReaderNeeds:
    """What one input reader is told to load, which each record must then hold.

    The OD API's TfExampleDecoder reads these only when the reader asks for them, and a record
    without them fails deep in the input pipeline ("indices[0] = 0 is not in [0, 0)",
    "Feature list 'image/encoded' is required").
    """

    KINDS = ("record_kind", "mask_type", "masks", "keypoints", "context")

    sequence: bool
    masks: str | None  # "png" | "numerical" | None
    keypoints: int
    context: bool

    @classmethod
    def of(cls, reader, config) -> ReaderNeeds:
        """What `reader` loads, less what MODEL.keypoints / MODEL.masks_unused remove.

        Keypoints or masks the model has no task for are a config finding whose fix removes
        them from the readers; the records are then not asked for them.
        """
        from train.preflight import checks_model

        masks = None
        if reader.load_instance_masks and checks_model.predicts_masks(config):
            png = fields.display(reader, "mask_type") == "PNG_MASKS"
            masks = "png" if png else "numerical"
        keypoints = reader.num_keypoints if checks_model.keypoint_tasks(config) else 0
        return cls(
            fields.display(reader, "input_type") == "TF_SEQUENCE_EXAMPLE",
            masks,
            keypoints,
            reader.load_context_features,
        )

    def problems(self, example, payload: bytes) -> list[tuple[str, str]]:
        """[(kind, detail)] of what this record lacks for this reader."""
        is_sequence = _FEATURE_LISTS in records.top_level_fields(payload)
        if self.sequence != is_sequence:
            kind = "tf.train.SequenceExample" if is_sequence else "tf.train.Example"
            return [("record_kind", f"a {kind}")]
        boxes = len(_feature(example, "image/object/bbox/xmin"))
        found = []
        if self.masks and boxes:
            found += self._mask_problems(example, boxes)
        if self.keypoints and boxes:
            want = boxes * self.keypoints
            for axis in ("x", "y", "visibility"):
                got = len(_feature(example, f"image/object/keypoint/{axis}"))
                if got != want and not (axis == "visibility" and got == 0):
                    found.append(
                        (
                            "keypoints",
                            f"{boxes} boxes x {self.keypoints} keypoints needs {want} "
                            f"image/object/keypoint/{axis} values, has {got}",
                        )
                    )
                    break
        if self.context:
            for key in ("image/context_features", "image/context_feature_length"):
                if not _feature(example, key):
                    found.append(("context", f"no {key}"))
                    break
        return found

    def _mask_problems(self, example, boxes: int) -> list[tuple[str, str]]:
        feature = example.features.feature.get("image/object/mask")
        kind = feature.WhichOneof("kind") if feature is not None else None
        values = _feature(example, "image/object/mask")
        if not values:
            return [("masks", f"{boxes} boxes and no image/object/mask")]
        if self.masks == "png":
            if kind != "bytes_list":
                return [("mask_type", "numerical masks (a float list)")]
            if len(values) != boxes:
                return [("masks", f"{boxes} boxes and {len(values)} PNG masks")]
            if not all(v.startswith(records.PNG_SIGNATURE) for v in values):
                return [("masks", "an image/object/mask that is not a PNG")]
            return []
        if kind == "bytes_list":
            return [("mask_type", "PNG-encoded masks")]
        height = _feature(example, "image/height")
        width = _feature(example, "image/width")
        if height and width and len(values) != boxes * height[0] * width[0]:
            return [
                (
                    "masks",
                    f"{len(values)} mask values for {boxes} boxes of {height[0]}x{width[0]} "
                    f"(needs {boxes * height[0] * width[0]})",
                )
            ]
        return []

    def findings(self, reader_path: str, mismatches: dict, scanned: int):
        """One finding per kind of mismatch, naming the first record and the config field."""
        for kind, tally in mismatches.items():
            counted = f"{tally.count} of {scanned} scanned records"
            first = f"{tally.first}: {tally.detail}"
            if kind == "record_kind":
                if self.sequence:
                    message = (
                        f"{reader_path} has input_type: TF_SEQUENCE_EXAMPLE but {counted} are "
                        f"plain tf.train.Example (first: {first}); the input pipeline fails "
                        "(\"Feature list 'image/encoded' is required\")"
                    )
                    fix = f"remove input_type from {reader_path} (TF_EXAMPLE is the default)"
                    edits = (Edit(f"{reader_path}.input_type", None, "the records are Examples"),)
                else:
                    message = (
                        f"{reader_path} reads tf.train.Example (input_type TF_EXAMPLE) but "
                        f"{counted} are tf.train.SequenceExample (first: {first})"
                    )
                    fix = f"set input_type: TF_SEQUENCE_EXAMPLE in {reader_path}"
                    edits = ()
            elif kind == "mask_type":
                configured = "PNG_MASKS" if self.masks == "png" else "NUMERICAL_MASKS"
                other = "NUMERICAL_MASKS" if self.masks == "png" else "PNG_MASKS"
                message = (
                    f"{reader_path} has mask_type {configured} but {counted} hold "
                    f"{tally.detail} (first: {tally.first})"
                )
                fix = f"set mask_type: {other} in {reader_path}"
                edits = ()
            elif kind == "masks":
                message = (
                    f"{reader_path} loads instance masks (load_instance_masks: true) but {counted} "
                    f"have no mask per box (first: {first}); the input pipeline fails "
                    '("indices[0] = 0 is not in [0, 0)")'
                )
                fix = (
                    "write one image/object/mask per box into the records, or set "
                    f"load_instance_masks: false in {reader_path} (and drop the mask head)"
                )
                edits = ()
            elif kind == "keypoints":
                message = (
                    f"{reader_path} has num_keypoints: {self.keypoints} but {counted} do not hold "
                    f"that many keypoints per box (first: {first}); the input pipeline "
                    'fails ("indices[0] = 0 is not in [0, 0)")'
                )
                fix = (
                    "write image/object/keypoint/x and /y (boxes x num_keypoints values each) "
                    f"into the records, or remove num_keypoints from {reader_path} when the "
                    "model has no keypoint task"
                )
                edits = ()
            else:
                message = (
                    f"{reader_path} has load_context_features: true but {counted} have "
                    f"{tally.detail} (first: {tally.first})"
                )
                fix = (
                    "write the context features into the records, or set "
                    "load_context_features: false"
                )
                edits = ()
            yield Finding(f"INPUT_DATA.{kind}", ERROR, message, fix, edits=edits)
