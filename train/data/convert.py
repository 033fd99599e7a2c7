"""Convert an annotation folder into split, sharded TFRecords, a label map and a summary.

`plan_split` and `fix_box` are pure and decide everything about an item; `convert` reads the
images (in worker processes), writes the records in a staging folder, and moves them into
place only when all are written, so an interrupted run leaves the previous output whole.

The records hold exactly the features the OD API's `TfExampleDecoder` reads, serialized
deterministically: the same source converted twice gives byte-identical files.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile

from train import files, records
from train.data import images, sources
from train.data.sources import Problem

SUMMARY = "summary.json"
LABEL_MAP = "label_map.pbtxt"
SPLITS = ("train", "eval")
SHARD_BYTES = 150 * 1024 * 1024  # ~100-200 MB per shard: tf.data reads a few in parallel
MIN_INSIDE = 0.5  # a box with less than this share of its area inside the image is dropped
VERSION = 1  # of the records' layout and the decisions here; part of the fingerprint


class ConvertError(Exception):
    """A usage problem: the source or the output folder cannot be used (exit 2)."""


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """What `train.data convert` was asked to do."""

    source: str
    out: str
    format: str = "auto"
    val_fraction: float = 0.1
    shards: int = 0  # 0: by size
    label_map: str | None = None
    skip_empty: bool = False
    jobs: int = 0  # worker processes; 0: one per CPU


def split_of(key: str, val_fraction: float) -> str:
    """The split of an image, by a hash of its relative path: stable when the data grows."""
    return "eval" if _unit(key) < val_fraction else "train"


def _unit(key: str) -> float:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def fix_box(box, width: int, height: int) -> tuple[tuple[float, float, float, float] | None, str]:
    """(normalised box or None, what was done) for a box in pixels of a width x height image.

    Zero or negative area: dropped. Partly outside: clipped (with a note) when at least
    MIN_INSIDE of it is inside, else dropped.
    """
    xmin, ymin, xmax, ymax = box
    if not all(math.isfinite(v) for v in box):
        return None, "coordinates are not numbers"
    if xmax <= xmin or ymax <= ymin:
        return (
            None,
            f"degenerate box ({xmin:g},{ymin:g})-({xmax:g},{ymax:g}): zero or negative area",
        )
    cx1, cy1 = min(max(xmin, 0.0), width), min(max(ymin, 0.0), height)
    cx2, cy2 = min(max(xmax, 0.0), width), min(max(ymax, 0.0), height)
    inside = max(cx2 - cx1, 0.0) * max(cy2 - cy1, 0.0)
    area = (xmax - xmin) * (ymax - ymin)
    normalised = (cx1 / width, cy1 / height, cx2 / width, cy2 / height)
    if inside < MIN_INSIDE * area or inside <= 0:
        return None, (
            f"box ({xmin:g},{ymin:g})-({xmax:g},{ymax:g}) is mostly outside the "
            f"{width}x{height} image ({inside / area:.0%} inside)"
        )
    if (cx1, cy1, cx2, cy2) != (xmin, ymin, xmax, ymax):
        return normalised, (
            f"box ({xmin:g},{ymin:g})-({xmax:g},{ymax:g}) clipped to the {width}x{height} image"
        )
    return normalised, ""


@dataclasses.dataclass(frozen=True)
class _Done:
    """One item, converted in a worker: its record (or None) and what happened."""

    key: str
    payload: bytes | None
    size: int
    names: tuple[str, ...]
    problems: tuple[Problem, ...]


def _convert_item(item: sources.Item, ids: dict[str, int], skip_empty: bool) -> _Done:
    try:
        image = images.prepare(item.image)
    except images.ImageError as e:
        return _Done(item.key, None, 0, (), (Problem(item.image, "skipped image", str(e)),))
    problems = [Problem(item.image, "changed image", change) for change in image.changes]
    stored_frame = False
    if item.width and item.height and (item.width, item.height) != (image.width, image.height):
        stored = (image.stored_width, image.stored_height)
        if images.swaps_sides(image.orientation) and (item.width, item.height) == stored:
            stored_frame = True
            problems.append(
                Problem(
                    item.annotation,
                    "changed box",
                    f"the annotation's size {item.width}x{item.height} is the stored, unrotated "
                    f"image's: its boxes were turned with the image (EXIF {image.orientation})",
                )
            )
        else:
            problems.append(
                Problem(
                    item.annotation,
                    "changed image",
                    f"annotation says {item.width}x{item.height}, the image is "
                    f"{image.width}x{image.height}: using the image's size",
                )
            )
    kept, names = [], []
    for box in item.boxes:
        if box.name not in ids:
            problems.append(
                Problem(box.where, "dropped box", f"class {box.name!r} not in the label map")
            )
            continue
        coords = (box.xmin, box.ymin, box.xmax, box.ymax)
        if box.normalized:
            coords = (
                coords[0] * image.width,
                coords[1] * image.height,
                coords[2] * image.width,
                coords[3] * image.height,
            )
        elif stored_frame:
            coords = images.orient_box(
                image.orientation, coords, image.stored_width, image.stored_height
            )
        fixed, note = fix_box(coords, image.width, image.height)
        if fixed is None:
            problems.append(Problem(box.where, "dropped box", note))
            continue
        if note:
            problems.append(Problem(box.where, "changed box", note))
        kept.append((box, fixed))
        names.append(box.name)
    if not kept and skip_empty:
        return _Done(
            item.key,
            None,
            0,
            (),
            (*problems, Problem(item.image, "skipped image", "no boxes (--skip_empty)")),
        )
    payload = example_bytes(item.key, image, kept, ids)
    return _Done(item.key, payload, len(payload), tuple(names), tuple(problems))


def example_bytes(key: str, image: images.Prepared, boxes, ids: dict[str, int]) -> bytes:
    """A serialized tf.train.Example with the features TfExampleDecoder reads."""
    from train import wireprotos

    example = wireprotos.example()()
    feature = example.features.feature

    def put(name, kind, values):
        getattr(feature[name], kind).value.extend(values)

    put("image/encoded", "bytes_list", [image.data])
    put("image/format", "bytes_list", [image.format.encode()])
    put("image/filename", "bytes_list", [key.encode("utf-8")])
    put("image/source_id", "bytes_list", [key.encode("utf-8")])
    put("image/key/sha256", "bytes_list", [hashlib.sha256(image.data).hexdigest().encode()])
    put("image/height", "int64_list", [image.height])
    put("image/width", "int64_list", [image.width])
    for axis, at in (("xmin", 0), ("ymin", 1), ("xmax", 2), ("ymax", 3)):
        put(f"image/object/bbox/{axis}", "float_list", [coords[at] for _, coords in boxes])
    put("image/object/class/text", "bytes_list", [b.name.encode("utf-8") for b, _ in boxes])
    put("image/object/class/label", "int64_list", [ids[b.name] for b, _ in boxes])
    put("image/object/is_crowd", "int64_list", [int(b.crowd) for b, _ in boxes])
    put("image/object/difficult", "int64_list", [int(b.difficult) for b, _ in boxes])
    return example.SerializeToString(deterministic=True)


def class_ids(source: sources.Source, label_map_path: str | None) -> tuple[dict[str, int], str]:
    """({name: id}, label map text): the given map's, else the dataset's classes as 1..N."""
    from google.protobuf import text_format

    from train import compat
    from train.pipeline import labelmap

    if label_map_path:
        try:
            given = labelmap.load(label_map_path)
        except labelmap.LabelMapError as e:
            raise ConvertError(f"--label_map {label_map_path} {e}") from None
        if not given.usable:
            raise ConvertError(
                f"--label_map {label_map_path}: no items, or ids outside 1..{labelmap.MAX_ID} "
                "or repeated"
            )
        return {name: i for i, name in given.items}, files.read_text(label_map_path)
    if source.classes is not None:
        names = list(source.classes)
    else:
        names = sorted({box.name for item in source.items for box in item.boxes})
    compat.apply(with_tensorflow=False)
    from object_detection.protos import string_int_label_map_pb2

    proto = string_int_label_map_pb2.StringIntLabelMap()
    for number, name in enumerate(names, 1):
        proto.item.add(id=number, name=name)
    return {n: i for i, n in enumerate(names, 1)}, text_format.MessageToString(proto)


def _shard_count(requested: int, count: int, size: int) -> int:
    if not count:
        return 0
    wanted = requested or math.ceil(size / SHARD_BYTES)
    return max(1, min(wanted, count))


def shard_name(split: str, index: int, total: int) -> str:  # noqa: D103
    return f"{split}-{index:05d}-of-{total:05d}.record"


def _check_out(options: ConvertOptions, source_root: str) -> None:
    out = os.path.abspath(options.out)
    problem = files.writable_dir_problem(out)
    if problem:
        raise ConvertError(f"--out {options.out} {problem}")
    # (a staging folder left by an interrupted first conversion does not count)
    held = (
        [n for n in os.listdir(out) if not n.startswith(".converting-")]
        if os.path.isdir(out)
        else []
    )
    if held and not os.path.isfile(os.path.join(out, SUMMARY)):
        raise ConvertError(
            f"--out {options.out} holds other files (no {SUMMARY} of an earlier conversion); "
            "name a new or empty folder"
        )
    if os.path.realpath(out) == os.path.realpath(source_root):
        raise ConvertError(f"--out {options.out} is the source folder; name another folder")


def fingerprint(options: ConvertOptions) -> str:
    """A hash of the source files (path, size, mtime) and of the options that shape the output.

    `--data` reuses a conversion while this is unchanged.
    """
    root = os.path.abspath(options.source)
    base = root if os.path.isdir(root) else os.path.dirname(root)
    digest = hashlib.sha256()
    skip = os.path.abspath(options.out)
    paths = sources.walk(base, skip) if os.path.isdir(root) else [root]
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            continue
        digest.update(
            f"{os.path.relpath(path, base)}\0{info.st_size}\0{info.st_mtime_ns}\n".encode()
        )
    shape = (VERSION, options.format, options.val_fraction, options.shards, options.skip_empty)
    digest.update(repr(shape).encode())
    if options.label_map:
        try:
            digest.update(files.read_text(options.label_map).encode())
        except files.InputError:
            pass
    return digest.hexdigest()


def _write_split(pool, items, names, stage, ids, skip_empty, tally) -> list[Problem]:
    """Converts one split's items in `pool`, dealing records into the shards `names`.

    Updates `tally` (images, records, negatives, boxes per class); returns the problems.
    """
    ordered = sorted(items, key=lambda i: _unit("order:" + i.key))
    handles = [open(os.path.join(stage, n), "wb") for n in names]  # noqa: SIM115
    problems: list[Problem] = []
    try:
        converted = pool.map(
            _convert_item, ordered, [ids] * len(ordered), [skip_empty] * len(ordered), chunksize=4
        )
        position = 0
        for done in converted:
            problems += done.problems
            if done.payload is None:
                continue
            handles[position % len(handles)].write(records.frame(done.payload))
            position += 1
            tally["images"] += 1
            tally["records"] += 1
            tally["negatives"] += not done.names
            for name in done.names:
                tally["boxes"][name] = tally["boxes"].get(name, 0) + 1
    finally:
        for handle in handles:
            handle.close()
    return problems


def convert(options: ConvertOptions, emit=print) -> dict:
    """Converts; returns the summary (also written as OUT/summary.json).

    Raises:
      sources.SourceError, ConvertError: usage problems (nothing written).
    """
    source = sources.read(options.source, options.format, skip=options.out)
    _check_out(options, source.root)
    ids, label_map_text = class_ids(source, options.label_map)
    emit(f"found {source.found} ({len(source.items)} images) in {source.root}")
    splits = {split: [] for split in SPLITS}
    for item in source.items:
        splits[split_of(item.key, options.val_fraction)].append(item)
    sizes = {s: sum(_size(i.image) for i in items) for s, items in splits.items()}
    shards = {s: _shard_count(options.shards, len(items), sizes[s]) for s, items in splits.items()}
    out = os.path.abspath(options.out)
    os.makedirs(out, exist_ok=True)
    for stale in os.listdir(out):  # what an interrupted conversion left
        if stale.startswith(".converting-"):
            shutil.rmtree(os.path.join(out, stale), ignore_errors=True)
    stage = tempfile.mkdtemp(prefix=".converting-", dir=out)
    problems = list(source.problems)
    item_problems: list[Problem] = []
    counts = {s: {"images": 0, "negatives": 0, "boxes": {}, "records": 0} for s in SPLITS}
    written = {}
    try:
        jobs = options.jobs or os.cpu_count() or 1
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
            for split in SPLITS:
                names = [shard_name(split, n, shards[split]) for n in range(shards[split])]
                item_problems += _write_split(
                    pool, splits[split], names, stage, ids, options.skip_empty, counts[split]
                )
                written[split] = names
        problems += sorted(item_problems, key=lambda p: (p.where, p.what, p.reason))
        summary = {
            "version": VERSION,
            "format": source.format,
            "found": source.found,
            "source": source.root,
            "fingerprint": fingerprint(options),
            "val_fraction": options.val_fraction,
            "label_map": LABEL_MAP,
            "classes": [{"id": i, "name": n} for n, i in sorted(ids.items(), key=lambda x: x[1])],
            "files": written,
            "splits": counts,
            "problems": [dataclasses.asdict(p) for p in problems],
        }
        if not options.label_map or not files.same_file(
            options.label_map, os.path.join(out, LABEL_MAP)
        ):
            with open(os.path.join(stage, LABEL_MAP), "w", encoding="utf-8") as f:
                f.write(label_map_text)
        for old in os.listdir(out):
            if old.endswith(".record") and old.split("-")[0] in SPLITS:
                os.unlink(os.path.join(out, old))
        for name in os.listdir(stage):
            os.replace(os.path.join(stage, name), os.path.join(out, name))
        files.write_atomic(os.path.join(out, SUMMARY), json.dumps(summary, indent=1) + "\n")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for line in render(summary):
        emit(line)
    return summary


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def render(summary: dict, limit: int = 50) -> list[str]:
    """The table of images and boxes per class and split, then each problem (first `limit`)."""
    splits = summary["splits"]
    names = [c["name"] for c in summary["classes"]]
    width = max([len(n) for n in names] + [9])
    lines = [f"  {'class':<{width}} {'train':>7} {'eval':>7}"]
    for name in names:
        row = [splits[s]["boxes"].get(name, 0) for s in SPLITS]
        lines.append(f"  {name:<{width}} {row[0]:>7} {row[1]:>7}")
    for label, key in (("images", "images"), ("negatives", "negatives")):
        lines.append(f"  {label:<{width}} {splits['train'][key]:>7} {splits['eval'][key]:>7}")
    problems = summary["problems"]
    if problems:
        lines.append(f"{len(problems)} item(s) skipped or changed:")
        lines += [f"  {Problem(**p).line()}" for p in problems[:limit]]
        if len(problems) > limit:
            lines.append(f"  ... and {len(problems) - limit} more (all in {SUMMARY})")
    return lines
