"""Verify TFRecord files record by record, TF-free, in parallel over files.

What TensorFlow's reader and the OD API's decoder would trip over, found before training:
framing and both CRC-32C checksums (google-crc32c, GB/s), records that are no
tf.train.Example, missing or undecodable images (Pillow reads the header only), class names
not in the label map, labels outside 1..num_classes, boxes in pixels, inverted or of zero area
(a zero-width box makes the box coder's log() -inf: NaN losses), boxes outside the image.

`scan_file` reads one file (up to `limit` records) into a picklable `FileScan`;
`scan_files` runs it over many files, in worker processes when every record is read, and
`merge` adds the results up in file order, so "first" always means the first in read order.
The preflight's bounded sample and `--scan_records all` are the same code.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import os
import struct
import time

from train import files, records

_NORMALISED = (-0.5, 1.5)  # a coordinate beyond these is a pixel value, not a normalised one
_HEADER = struct.Struct("<QI")


@dataclasses.dataclass
class Tally:
    """How many scanned records have one problem, and where it first occurs."""

    count: int = 0
    first: str = ""
    detail: str = ""  # what is wrong with the first one, when the finding says it apart

    def add(self, where: str, detail: str = "", count: int = 1) -> None:  # noqa: D102
        if not self.count:
            self.first, self.detail = where, detail
        self.count += count


@dataclasses.dataclass
class FileScan:
    """What one file (or, merged, a set of files) holds and what is wrong with it."""

    path: str
    records: int = 0  # records read whole (framing and checksums good)
    bytes: int = 0
    complete: bool = False  # read to the end (not stopped by the limit or an error)
    broken: str = ""  # "FILE: record N: why" of the first unreadable record
    broken_files: int = 0
    broken_path: str = ""
    tallies: dict[str, Tally] = dataclasses.field(default_factory=dict)
    unknown: dict[str, int] = dataclasses.field(default_factory=dict)  # class text -> boxes
    out_of_range: set[int] = dataclasses.field(default_factory=set)
    files: int = 1
    seconds: float = 0.0

    def add(self, kind: str, where: str, detail: str = "") -> None:  # noqa: D102
        self.tallies.setdefault(kind, Tally()).add(where, detail)

    def fail(self, message: str) -> None:
        """This file cannot be read on from here: `message` says where and why."""
        self.broken, self.broken_files, self.broken_path = message, 1, self.path


@dataclasses.dataclass(frozen=True)
class Expect:
    """What the records are checked against (picklable: it travels to the workers).

    Attributes:
      names: the label map's class names (None: no label map).
      num_classes: the largest id in the label map (None: unknown).
      needs: an object whose `problems(example, payload)` lists what a record lacks for
        its input reader ([(kind, detail)]); None for a plain Example reader.
      decode_images: parse each image's header with Pillow.
    """

    names: frozenset[str] | None = None
    num_classes: int | None = None
    needs: object = None
    decode_images: bool = True


def feature(example, key):
    """The values of one feature of a tf.train.Example ([] when absent)."""
    feature = example.features.feature.get(key)
    if feature is None:
        return []
    kind = feature.WhichOneof("kind")
    return list(getattr(feature, kind).value) if kind else []


_BOX_KEYS = tuple(f"image/object/bbox/{k}" for k in ("xmin", "ymin", "xmax", "ymax"))


def box_problems(example) -> tuple[bool, bool, bool]:
    """(pixel coordinates, degenerate: min >= max, slightly outside [0, 1]) of its boxes."""
    features = example.features.feature
    xmin, ymin, xmax, ymax = (feature(example, key) if key in features else () for key in _BOX_KEYS)
    values = [*xmin, *ymin, *xmax, *ymax]
    if not values:
        return False, False, False
    low, high = min(values), max(values)
    pixels = low < _NORMALISED[0] or high > _NORMALISED[1]
    degenerate = any(a >= b for a, b in zip(xmin, xmax, strict=False)) or any(
        a >= b for a, b in zip(ymin, ymax, strict=False)
    )
    return pixels, degenerate, (low < 0.0 or high > 1.0) and not pixels


_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOFn markers
_JPEG_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01, 0xD8}


def _jpeg_problem(data: bytes) -> str | None:
    """Why a JPEG's markers do not lead to a frame header with a size (None: they do).

    Walks the marker segments the way a decoder starts (SOI, APPn/DQT/DHT... up to SOFn), and
    wants the end-of-image marker: without it the file was cut short and TensorFlow's
    decode_jpeg fails ("Invalid JPEG data or crop window").
    """
    at, end = 2, len(data)
    while at + 4 <= end:
        if data[at] != 0xFF:
            return f"no JPEG marker at byte {at}"
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _JPEG_STANDALONE:
            at += 2
            continue
        if marker in (0xD9, 0xDA):
            return "no frame header (SOF) before the image data"
        if marker in _JPEG_FRAMES:
            height, width = data[at + 5 : at + 7], data[at + 7 : at + 9]
            if at + 9 > end or height == b"\0\0" or width == b"\0\0":
                return "frame header without a size"
            if data.rfind(b"\xff\xd9", at) < 0:
                return "truncated: no JPEG end marker"
            return None
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if length < 2:
            return f"bad JPEG segment length at byte {at}"
        at += 2 + length
    return "truncated before the frame header"


def _png_problem(data: bytes) -> str | None:
    """Why a PNG's header chunk or end is wrong (None when both are right)."""
    import zlib

    if len(data) < 33 or data[12:16] != b"IHDR":
        return "no IHDR chunk"
    if zlib.crc32(data[12:29]) != int.from_bytes(data[29:33], "big"):
        return "IHDR checksum mismatch"
    if data[16:20] == b"\0\0\0\0" or data[20:24] == b"\0\0\0\0":
        return "zero width or height"
    if not data.endswith(b"IEND\xaeB`\x82"):
        return "truncated: no IEND chunk at the end"
    return None


def image_header_problem(data: bytes) -> str | None:
    """Why an encoded image's header does not decode (None when it does).

    JPEG and PNG, nearly every record, are checked here: their headers are a few fixed
    fields, and Pillow's `Image.open` costs ~45 us a record, half of the whole scan. Other
    formats (BMP, GIF) go to Pillow.
    """
    if data.startswith(b"\xff\xd8"):
        return _jpeg_problem(data)
    if data.startswith(records.PNG_SIGNATURE):
        return _png_problem(data)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.size[0] <= 0 or image.size[1] <= 0:
                return f"size {image.size}"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        return str(e) or type(e).__name__
    return None


def _check(found: FileScan, where: str, example, payload, expect: Expect) -> None:
    if expect.needs is not None:
        problems = expect.needs.problems(example, payload)
        for kind, detail in problems:
            found.add(kind, where, detail)
        if any(kind == "record_kind" for kind, _ in problems):
            return  # a SequenceExample: its image is in its feature lists
    features = example.features.feature
    encoded = features.get("image/encoded")
    data = encoded.bytes_list.value[0] if encoded is not None and encoded.bytes_list.value else b""
    raw = features.get("image/format")
    if not data:
        found.add("no_image", where)
    elif raw is not None and list(raw.bytes_list.value) == [b"raw"]:
        pass  # decoded pixels, on purpose
    elif not data.startswith(records.IMAGE_SIGNATURES):
        found.add("not_image", f"{where} (starts with {data[:8]!r})")
    elif expect.decode_images:
        why = image_header_problem(data)
        if why:
            found.add("image_decode", where, why)
    texts = [t.decode("utf-8", "replace") for t in feature(example, "image/object/class/text")]
    labels = feature(example, "image/object/class/label")
    if expect.names is not None and texts:
        for text in texts:
            if text not in expect.names:
                found.unknown[text] = found.unknown.get(text, 0) + 1
                found.add("class_text", where, repr(text))
    elif expect.num_classes and labels:
        bad = [x for x in labels if not 1 <= x <= expect.num_classes]
        if bad:
            found.out_of_range.update(bad)
            found.add("label_range", where, f"label {bad[0]}")
    pixels, degenerate, edge = box_problems(example)
    for kind, hit in (("pixels", pixels), ("degenerate", degenerate), ("edge", edge)):
        if hit:
            found.add(kind, where)


def scan_file(path: str, expect: Expect, limit: int | None = None) -> FileScan:
    """Reads up to `limit` records of one file (all when None) and checks each."""
    from train import wireprotos

    parse = wireprotos.example().FromString
    found = FileScan(path)
    start = time.perf_counter()
    try:
        with files.open_input(path) as raw, io.BufferedReader(raw, 1 << 20) as f:
            index = 0
            while limit is None or index < limit:
                payload, problem = records.next_record(f)
                if problem:
                    found.fail(f"{path}: record {index}: {records.explain(problem)}")
                    break
                if payload is None:
                    found.complete = True
                    break
                found.bytes += 16 + len(payload)
                try:
                    example = parse(payload)
                except Exception as e:  # noqa: BLE001 - a payload that is no Example
                    found.fail(f"{path}: record {index}: not a tf.train.Example ({e})")
                    break
                _check(found, f"{path} record {index}", example, payload, expect)
                found.records += 1
                index += 1
    except files.InputError as e:
        found.fail(f"{path} {e.reason}")
    except OSError as e:
        found.fail(f"{path}: {e}")
    found.seconds = time.perf_counter() - start
    return found


def count_records(paths: list[str]) -> int | None:
    """How many records the files hold, by their framing alone (seeking past each payload).

    Microseconds a record: what the run's length in epochs needs when the sample scan did not
    read everything. None when a file cannot be read or its framing is broken.
    """
    total = 0
    for path in paths:
        try:
            with files.open_input(path) as f:
                size = os.fstat(f.fileno()).st_size
                at = 0
                while at < size:
                    header = f.read(12)
                    if len(header) < 12:
                        return None
                    length = _HEADER.unpack(header)[0]
                    at += 16 + length
                    if at > size:
                        return None
                    f.seek(at)
                    total += 1
        except (files.InputError, OSError):
            return None
    return total


def merge(scans: list[FileScan]) -> FileScan:
    """The scans of several files added up, in their order."""
    total = FileScan(scans[0].path if scans else "", files=len(scans), complete=True)
    for scan in scans:
        total.records += scan.records
        total.bytes += scan.bytes
        total.complete = total.complete and scan.complete
        total.seconds += scan.seconds
        if scan.broken and not total.broken:
            total.broken, total.broken_path = scan.broken, scan.broken_path
        total.broken_files += scan.broken_files
        for kind, tally in scan.tallies.items():
            total.tallies.setdefault(kind, Tally()).add(tally.first, tally.detail, tally.count)
        for text, count in scan.unknown.items():
            total.unknown[text] = total.unknown.get(text, 0) + count
        total.out_of_range |= scan.out_of_range
    return total


def scan_files(
    paths: list[str], expect: Expect, limit: int | None = None, jobs: int = 0
) -> FileScan:
    """Scans files: the first `limit` records in all (in order), or every record in parallel.

    A broken record ends the scan of its file only: the others are still read.
    """
    if limit is not None:
        scans = []
        for path in paths:
            left = limit - sum(s.records for s in scans)
            if left <= 0:
                break
            scans.append(scan_file(path, expect, left))
        return merge(scans)
    jobs = min(jobs or os.cpu_count() or 1, len(paths))
    if jobs <= 1:
        return merge([scan_file(p, expect) for p in paths])
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        return merge(list(pool.map(scan_file, paths, [expect] * len(paths))))
