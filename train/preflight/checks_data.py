"""Checks on the TFRecords the input readers name (a bounded scan)."""

from __future__ import annotations

import dataclasses
import os

from train import errors, files, records
from train.pipeline import fields
from train.preflight.findings import ERROR, WARNING, Edit, Finding


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
                yield ctx.finding_at(
                    "input_path",
                    "INPUT_DATA.empty",
                    ERROR,
                    f"{where}: every file it matches is empty ({len(empty)} files); the OD API "
                    "would hang at the first batch",
                    "regenerate the TFRecords (the converter found no images or annotations)",
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
_NORMALISED = (-0.5, 1.5)  # a coordinate beyond these is a pixel value, not a normalised one


def _scan(paths: list[str], limit: int):
    """Yields (file, record index, parsed Example or exception, payload) for the first records."""
    from train import wireprotos

    example_class = wireprotos.example()
    count = 0
    for path in paths:
        index = 0
        try:
            for payload in records.read_records(path, limit - count):
                try:
                    example = example_class.FromString(payload)
                except Exception as e:  # noqa: BLE001 - a payload that is no Example
                    yield path, index, e, payload
                    return
                yield path, index, example, payload
                index += 1
                count += 1
        except (OSError, records.RecordError) as e:
            yield path, index, e, b""
            return
        if count >= limit:
            return


def _feature(example, key):
    feature = example.features.feature.get(key)
    if feature is None:
        return []
    kind = feature.WhichOneof("kind")
    return list(getattr(feature, kind).value) if kind else []


@dataclasses.dataclass
class _Tally:
    """How many scanned records have one problem, and where it first occurs."""

    count: int = 0
    first: str = ""
    detail: str = ""  # what is wrong with the first one, when the finding says it apart

    def add(self, where: str, detail: str = "") -> None:
        if not self.count:
            self.first, self.detail = where, detail
        self.count += 1


def _box_problems(example) -> tuple[bool, bool, bool]:
    """(pixel coordinates, min > max, slightly outside [0, 1]) for one example's boxes."""
    box = [_feature(example, f"image/object/bbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")]
    values = [v for values in box for v in values]
    pixels = any(not _NORMALISED[0] <= v <= _NORMALISED[1] for v in values)
    inverted = any(lo > hi for lo, hi in zip(box[0] + box[1], box[2] + box[3], strict=False))
    edge = any(not 0.0 <= v <= 1.0 for v in values)
    return pixels, inverted, edge and not pixels


def check_input_records(ctx):
    """INPUT_DATA: a bounded scan of each reader's records: framing, checksums, images, labels.

    Everything here would otherwise surface only in training: a corrupted record ("corrupted
    record at 12", no file name), a record without an image or with an image that is no
    JPEG/PNG/BMP (a decode error deep in the input pipeline), class names or labels the OD API
    silently turns into background, boxes in pixel coordinates (training on garbage).
    """
    label_map = ctx.train_label_map
    names = set(label_map.names) if label_map else None
    num_classes = label_map.max_id if label_map else None
    for reader_path, reader in fields.input_readers(ctx.config):
        paths = _record_files(reader)
        if not paths:
            continue
        unknown: dict[str, int] = {}
        out_of_range: set[int] = set()
        no_image, not_image, pixels, inverted, edge = (_Tally() for _ in range(5))
        scanned = 0
        needs = _ReaderNeeds.of(reader, ctx.config)
        mismatches: dict[str, _Tally] = {}
        for path, index, example, payload in _scan(paths, _SAMPLE):
            where = f"{path} record {index}"
            if isinstance(example, Exception):
                reason = example.reason if isinstance(example, files.InputError) else example
                yield Finding(
                    "INPUT_DATA.corrupt",
                    ERROR,
                    f"{reader_path}: {path}: not a readable TFRecord of tf.train.Example "
                    f"({errors.one_line(reason) if isinstance(reason, Exception) else reason})",
                    "regenerate the file; check it was copied whole (not a Git LFS pointer)",
                    file=path,
                )
                break
            scanned += 1
            problems = needs.problems(example, payload)
            for kind, detail in problems:
                mismatches.setdefault(kind, _Tally()).add(where, detail)
            if any(kind == "record_kind" for kind, _ in problems):
                continue  # a SequenceExample: its image is in its feature lists
            image = records.image_problem(example)
            if image and image[0] == "no_image":
                no_image.add(where)
            elif image:
                not_image.add(f"{where} (starts with {image[1]!r})")
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
            is_pixels, is_inverted, is_edge = _box_problems(example)
            for tally, hit in ((pixels, is_pixels), (inverted, is_inverted), (edge, is_edge)):
                if hit:
                    tally.add(where)
        where = f"{reader_path} ({paths[0]}{' ...' if len(paths) > 1 else ''})"
        yield from needs.findings(reader_path, mismatches, scanned)
        regenerate = "fix the converter that wrote the records, then regenerate them"
        if no_image.count:
            yield Finding(
                "INPUT_DATA.no_image",
                ERROR,
                f"{reader_path}: {no_image.count} of {scanned} scanned records have no "
                f"image/encoded (first: {no_image.first}); training fails on them",
                regenerate + " (each tf.train.Example needs the encoded image bytes)",
            )
        if not_image.count:
            yield Finding(
                "INPUT_DATA.image_format",
                ERROR,
                f"{reader_path}: {not_image.count} of {scanned} scanned records hold an "
                f"image/encoded that is not a JPEG, PNG or BMP image (first: {not_image.first}); "
                "the OD API cannot decode it",
                regenerate + " (write the JPEG or PNG file's bytes, not decoded pixels)",
            )
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
        if pixels.count or inverted.count:
            what = []
            if pixels.count:
                what.append(
                    f"{pixels.count} have coordinates far outside [0, 1], i.e. pixel values "
                    f"(first: {pixels.first})"
                )
            if inverted.count:
                what.append(f"{inverted.count} have min > max (first: {inverted.first})")
            yield Finding(
                "INPUT_DATA.boxes",
                ERROR,
                f"{reader_path}: of {scanned} scanned records {'; '.join(what)}: training would "
                "learn from wrong boxes",
                "write normalised coordinates: xmin = x / width, ymin = y / height, ..., with "
                "xmin < xmax and ymin < ymax",
            )
        if edge.count:
            yield Finding(
                "INPUT_DATA.boxes_edge",
                WARNING,
                f"{reader_path}: {edge.count} of {scanned} scanned records have boxes slightly "
                f"outside [0, 1] (first: {edge.first})",
                "clip the boxes to the image when converting",
            )


_FEATURE_LISTS = 2  # tf.train.SequenceExample's field number of feature_lists


@dataclasses.dataclass(frozen=True)
class _ReaderNeeds:
    """What one input reader is told to load, which each record must then hold.

    The OD API's TfExampleDecoder reads these only when the reader asks for them, and a record
    without them fails deep in the input pipeline ("indices[0] = 0 is not in [0, 0)",
    "Feature list 'image/encoded' is required").
    """

    sequence: bool
    masks: str | None  # "png" | "numerical" | None
    keypoints: int
    context: bool

    @classmethod
    def of(cls, reader, config) -> _ReaderNeeds:
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
