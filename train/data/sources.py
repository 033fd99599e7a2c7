"""Read Pascal VOC, COCO, YOLO and CSV annotations into one list of items (TF-free).

Written here rather than taken from an annotation library: globox parses VOC with the stdlib
ElementTree (no protection from entity expansion in untrusted XML), writes every COCO box as
`iscrowd: 0`, drops VOC `difficult`, and stops at the first broken file; supervision pulls
OpenCV, SciPy and Matplotlib into a training stack. A converter for users' folders must read
each file on its own, say what was wrong with it, and go on. So: `defusedxml` for XML, `json`
for COCO (the format pycocotools reads the same way), `yaml` for YOLO's data.yaml, `csv`.

Boxes stay in the annotation's pixels (YOLO's stay normalised) until the image is opened:
its real size, and whether its EXIF orientation turned it, decide the final coordinates.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import math
import os

from train import files

FORMATS = ("voc", "coco", "yolo", "csv")
FORMAT_NAMES = {"voc": "Pascal VOC", "coco": "COCO", "yolo": "YOLO", "csv": "CSV"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_CSV_COLUMNS = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")


class SourceError(Exception):
    """The source cannot be read at all (a usage error: wrong path, no annotations)."""


@dataclasses.dataclass(frozen=True)
class Box:
    """One annotated object, in the annotation's coordinates."""

    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    where: str  # file (and line or object number) for messages
    normalized: bool = False  # YOLO: fractions of the image's width and height
    crowd: bool = False
    difficult: bool = False


@dataclasses.dataclass(frozen=True)
class Item:
    """One image and its boxes."""

    key: str  # the image's path relative to the source root, "/"-separated
    image: str  # where the image file is (may not exist: reported when opened)
    annotation: str  # the file that describes it
    width: int | None  # as the annotation declares it
    height: int | None
    boxes: tuple[Box, ...]


@dataclasses.dataclass(frozen=True)
class Problem:
    """Something the converter skipped or changed, with why."""

    where: str
    what: str  # "skipped image", "dropped box", "changed image", "changed box", "skipped file",
    # "ignored size"
    reason: str

    def line(self) -> str:  # noqa: D102
        return f"{self.what}: {self.where}: {self.reason}"


@dataclasses.dataclass
class Source:
    """What one annotation folder holds."""

    format: str
    root: str
    items: list[Item]
    problems: list[Problem]
    classes: list[str] | None  # the dataset's own class order (COCO, YOLO); None: by name
    annotation_files: list[str]
    found: str  # what `auto` saw, e.g. "Pascal VOC: 12 XML files"


def walk(root: str, skip: str | None) -> list[str]:
    """Every file under root (sorted, hidden folders and `skip` left out)."""
    found = []
    skip = os.path.realpath(skip) if skip else None
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and os.path.realpath(os.path.join(folder, d)) != skip
        )
        found += [os.path.join(folder, n) for n in sorted(names) if not n.startswith(".")]
    return found


def _utf8_only(paths: list[str]) -> tuple[list[str], list[Problem]]:
    """The paths whose names are UTF-8, and a line for each other one.

    Such names are legal on Linux, but a record's filename and a label map are UTF-8 text.
    """
    kept, skipped = [], []
    for path in paths:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            skipped.append(Problem(shown, "skipped file", "its name is not UTF-8: rename it"))
            continue
        kept.append(path)
    return kept, skipped


def _ext(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def _is_coco(path: str) -> bool:
    """A JSON file whose top level has "images" and "annotations" (read only its start)."""
    try:
        with files.open_input(path) as f:
            head = f.read(1 << 20)
    except files.InputError:
        return False
    return b'"images"' in head or b'"annotations"' in head


def detect(root: str, skip: str | None = None) -> tuple[str, str]:
    """(format, what was found) of an annotation file or folder; SourceError when unclear."""
    if os.path.isfile(root):
        kind = {".json": "coco", ".csv": "csv", ".xml": "voc"}.get(_ext(root))
        if kind is None:
            raise SourceError(
                f"{root}: not an annotation file (.json COCO or .csv); pass the folder"
            )
        return kind, f"{FORMAT_NAMES[kind]}: {root}"
    if not os.path.isdir(root):
        raise SourceError(f"{root}: no such file or folder")
    paths = walk(root, skip)
    names = {os.path.basename(p) for p in paths}
    found = {}
    if "data.yaml" in names or "classes.txt" in names:
        labels = sum(1 for p in paths if _ext(p) == ".txt" and os.path.basename(p) != "classes.txt")
        found["yolo"] = f"YOLO: {labels} label files" + (
            " and data.yaml" if "data.yaml" in names else " and classes.txt"
        )
    coco = [p for p in paths if _ext(p) == ".json" and _is_coco(p)]
    if coco:
        found["coco"] = f"COCO: {', '.join(os.path.relpath(p, root) for p in coco)}"
    csvs = [p for p in paths if _ext(p) == ".csv"]
    if csvs:
        found["csv"] = f"CSV: {', '.join(os.path.relpath(p, root) for p in csvs)}"
    xmls = [p for p in paths if _ext(p) == ".xml"]
    if xmls:
        found["voc"] = f"Pascal VOC: {len(xmls)} XML files"
    if not found:
        raise SourceError(
            f"{root}: no annotations found (Pascal VOC .xml, COCO .json, YOLO data.yaml or "
            "classes.txt with .txt labels, CSV)"
        )
    if len(found) > 1:
        raise SourceError(
            f"{root} holds more than one annotation format ({'; '.join(found.values())}); "
            f"pass --format {'|'.join(found)}"
        )
    kind = next(iter(found))
    return kind, found[kind]


class _Images:
    """Finds the image an annotation names: beside it, in the usual folders, else by name."""

    def __init__(self, root: str, paths: list[str]):
        self.root = root
        self.by_name = collections.defaultdict(list)
        for path in paths:
            if _ext(path) in IMAGE_EXTENSIONS:
                self.by_name[os.path.basename(path)].append(path)

    def find(self, name: str, near: list[str]) -> str | None:
        if not name:
            return None
        for folder in near:
            candidate = os.path.normpath(os.path.join(folder, name))
            if os.path.isfile(candidate):
                return candidate
        same = self.by_name.get(os.path.basename(name.replace("\\", "/")), [])
        return same[0] if len(same) == 1 else None


def _key(root: str, image: str) -> str:
    base = root if os.path.isdir(root) else os.path.dirname(root)
    return os.path.relpath(image, base).replace(os.sep, "/")


def read(root: str, kind: str = "auto", skip: str | None = None) -> Source:
    """Reads the annotations under `root` (a folder, or a COCO .json / CSV file)."""
    root = os.path.abspath(root)
    found = ""
    if kind == "auto":
        kind, found = detect(root, skip)
    elif not os.path.exists(root):
        raise SourceError(f"{root}: no such file or folder")
    base = root if os.path.isdir(root) else os.path.dirname(root)
    every, unnamed = _utf8_only(walk(base, skip))
    paths = every if os.path.isdir(root) else [root]
    images = _Images(base, every)
    reader = {"voc": _read_voc, "coco": _read_coco, "yolo": _read_yolo, "csv": _read_csv}[kind]
    source = reader(root, paths, images)
    source.problems[:0] = unnamed
    source.found = found or f"{FORMAT_NAMES[kind]} (--format {kind})"
    seen: dict[str, str] = {}
    unique = []
    for item in source.items:
        if item.key in seen:
            source.problems.append(
                Problem(item.annotation, "skipped image", f"{item.key} is also in {seen[item.key]}")
            )
            continue
        seen[item.key] = item.annotation
        unique.append(item)
    source.items = sorted(unique, key=lambda i: i.key)
    if not source.annotation_files:
        why = f": {source.problems[0].line()}" if source.problems else ""
        raise SourceError(f"{root}: no usable {FORMAT_NAMES[kind]} annotation file{why}")
    return source


def _text(element, tag: str) -> str:
    found = element.find(tag)
    return (found.text or "").strip() if found is not None else ""


def finite(value) -> float:
    """float(value), refusing NaN and infinity (a ValueError, as for any unreadable number)."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _number(element, tag: str) -> float:
    text = _text(element, tag)
    if not text:
        raise ValueError(f"no <{tag}>")
    return finite(text)


def _read_voc(root: str, paths: list[str], images: _Images) -> Source:
    from xml.etree.ElementTree import ParseError

    import defusedxml.ElementTree as safe_xml
    from defusedxml import DefusedXmlException

    items, problems, xmls = [], [], [p for p in paths if _ext(p) == ".xml"]
    for path in xmls:
        try:
            with files.open_input(path) as f:  # refuses a FIFO before reading (a hang)
                tree = safe_xml.parse(f)
        except files.InputError as e:
            problems.append(Problem(path, "skipped file", e.reason))
            continue
        except (ParseError, DefusedXmlException, OSError) as e:
            problems.append(Problem(path, "skipped file", f"not readable XML ({e})"))
            continue
        top = tree.getroot()
        if top.tag != "annotation":
            problems.append(
                Problem(path, "skipped file", f"not a Pascal VOC annotation (root <{top.tag}>)")
            )
            continue
        name = _text(top, "filename")
        folder = os.path.dirname(path)
        near = [folder, os.path.join(folder, "..", "JPEGImages"), os.path.join(folder, "..")]
        image = images.find(name, near) or images.find(_text(top, "path"), [folder])
        if image is None:
            for extension in IMAGE_EXTENSIONS:  # LabelImg: the XML beside its image
                candidate = os.path.splitext(path)[0] + extension
                if os.path.isfile(candidate):
                    image = candidate
                    break
        if image is None:
            problems.append(
                Problem(path, "skipped image", f"image {name or '(no <filename>)'!r} not found")
            )
            continue
        size = top.find("size")
        width = height = None
        if size is not None:
            try:
                width, height = int(_number(size, "width")), int(_number(size, "height"))
            except ValueError:
                width = height = None
            if width is not None and (width <= 0 or height <= 0):
                problems.append(
                    Problem(
                        path, "ignored size", f"<size> {width}x{height}: the image's own is used"
                    )
                )
                width = height = None
        boxes = []
        for number, obj in enumerate(top.iter("object"), 1):
            where = f"{path} object {number}"
            label = _text(obj, "name")
            box = obj.find("bndbox")
            try:
                if box is None:
                    raise ValueError("no <bndbox>")
                coords = [_number(box, k) for k in ("xmin", "ymin", "xmax", "ymax")]
            except ValueError as e:
                problems.append(Problem(where, "dropped box", f"unreadable box: {e}"))
                continue
            if not label:
                problems.append(Problem(where, "dropped box", "no <name>"))
                continue
            difficult = _text(obj, "difficult") in ("1", "true")
            boxes.append(Box(label, *coords, where=where, difficult=difficult))
        items.append(Item(_key(root, image), image, path, width, height, tuple(boxes)))
    return Source("voc", root, items, problems, None, xmls, "")


def _read_coco(root: str, paths: list[str], images: _Images) -> Source:
    items, problems, classes, used = [], [], [], []
    for path in [p for p in paths if _ext(p) == ".json"]:
        if os.path.isdir(root) and not _is_coco(path):
            continue
        try:
            data = json.loads(files.read_text(path))
            if not isinstance(data, dict) or not isinstance(data.get("images"), list):
                raise ValueError('no "images" list at the top level')
            categories = {int(c["id"]): str(c["name"]) for c in data.get("categories", [])}
            entries = [(int(i["id"]), str(i["file_name"]), i) for i in data["images"]]
            entries = _unique_images(path, entries, problems)
        except (files.InputError, ValueError, KeyError, TypeError) as e:
            reason = e.reason if isinstance(e, files.InputError) else e
            problems.append(Problem(path, "skipped file", f"not a COCO instances file ({reason})"))
            continue
        used.append(path)
        for _, name in sorted(categories.items()):
            if name not in classes:
                classes.append(name)
        per_image = collections.defaultdict(list)
        for number, ann in enumerate(data.get("annotations", [])):
            where = f"{path} annotations[{number}]"
            try:
                x, y, w, h = (finite(v) for v in ann["bbox"])
                image_id, category = int(ann["image_id"]), int(ann["category_id"])
            except (KeyError, TypeError, ValueError) as e:
                problems.append(Problem(where, "dropped box", f"unreadable annotation ({e!r})"))
                continue
            if category not in categories:
                problems.append(
                    Problem(where, "dropped box", f"category_id {category} not in categories")
                )
                continue
            crowd = bool(ann.get("iscrowd", 0))
            per_image[image_id].append(
                Box(categories[category], x, y, x + w, y + h, where=where, crowd=crowd)
            )
        known = {image_id for image_id, _, _ in entries}
        for image_id in sorted(set(per_image) - known):
            boxes = per_image.pop(image_id)
            problems.append(
                Problem(
                    boxes[0].where,
                    "dropped box",
                    f"image_id {image_id} is not in images ({len(boxes)} annotation(s) dropped)",
                )
            )
        folder = os.path.dirname(path)
        near = [folder, os.path.join(folder, "images"), os.path.join(folder, "..", "images")]
        near += [os.path.join(folder, "..")]
        for image_id, name, entry in entries:
            image = images.find(name, near)
            if image is None:
                problems.append(
                    Problem(f"{path} image {image_id}", "skipped image", f"{name!r} not found")
                )
                continue
            width, height = entry.get("width"), entry.get("height")
            items.append(
                Item(
                    _key(root, image),
                    image,
                    path,
                    _size(width),
                    _size(height),
                    tuple(per_image.get(image_id, ())),
                )
            )
    return Source("coco", root, items, problems, classes, used, "")


def _size(value) -> int | None:
    """A COCO width or height: a positive finite number, else unknown (the image's own)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if math.isfinite(value) and value > 0 else None


def _unique_images(path: str, entries: list, problems: list) -> list:
    """COCO images without a repeated id (annotations name images by id: a repeat is ambiguous)."""
    first: dict[int, str] = {}
    kept = []
    for image_id, name, entry in entries:
        if image_id in first:
            problems.append(
                Problem(
                    f"{path} image {image_id}",
                    "skipped image",
                    f"{name!r}: id {image_id} is already {first[image_id]!r} (kept the first)",
                )
            )
            continue
        first[image_id] = name
        kept.append((image_id, name, entry))
    return kept


def _names_of(data) -> list[str]:
    """data.yaml's `names` as a list of class names; ValueError naming what is wrong."""
    if not isinstance(data, dict) or "names" not in data:
        raise ValueError("no `names:` key")
    names = data["names"]
    if isinstance(names, dict):
        try:
            names = [names[k] for k in sorted(names, key=int)]
        except (TypeError, ValueError):
            raise ValueError("`names:` keys are not class indices 0..N-1") from None
    if isinstance(names, str):
        raise ValueError(f"`names:` is the string {names[:40]!r}; give a list, e.g. [cat, dog]")
    if not isinstance(names, list) or not names:
        raise ValueError("`names:` is not a list of class names")
    nested = [n for n in names if isinstance(n, (list, dict))]
    if nested:
        raise ValueError("`names:` holds lists or mappings, not class names")
    names = [str(n) for n in names]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"`names:` lists {repeated[0]!r} more than once")
    return names


def _yolo_names(paths: list[str], problems: list[Problem]) -> tuple[list[str] | None, str]:
    import yaml

    for path in paths:
        if os.path.basename(path) == "data.yaml":
            try:
                return _names_of(yaml.safe_load(files.read_text(path))), path
            except files.InputError as e:
                problems.append(Problem(path, "skipped file", e.reason))
            except yaml.YAMLError as e:
                reason = " ".join(str(e).split())
                problems.append(Problem(path, "skipped file", f"not readable YAML ({reason})"))
            except (ValueError, RecursionError) as e:
                problems.append(Problem(path, "skipped file", f"no class names: {e}"))
    for path in paths:
        if os.path.basename(path) == "classes.txt":
            try:
                names = [n.strip() for n in files.read_text(path).splitlines() if n.strip()]
            except files.InputError as e:
                problems.append(Problem(path, "skipped file", e.reason))
                continue
            return names, path
    return None, ""


def _yolo_label_file(image: str) -> str:
    """Ultralytics: .../images/x.jpg -> .../labels/x.txt; LabelImg: x.txt beside x.jpg."""
    parts = image.split(os.sep)
    stem = os.path.splitext(image)[0] + ".txt"
    if "images" in parts:
        at = len(parts) - 1 - parts[::-1].index("images")
        labels = os.sep.join(parts[:at] + ["labels"] + parts[at + 1 :])
        labels = os.path.splitext(labels)[0] + ".txt"
        if os.path.isfile(labels) or not os.path.isfile(stem):
            return labels
    return stem


def _read_yolo(root: str, paths: list[str], images: _Images) -> Source:
    problems: list[Problem] = []
    names, names_file = _yolo_names(paths, problems)
    if names is None:
        why = f" ({problems[-1].line()})" if problems else ""
        raise SourceError(f"{root}: YOLO labels need class names (data.yaml or classes.txt){why}")
    items, label_files = [], [names_file]
    for image in [p for p in paths if _ext(p) in IMAGE_EXTENSIONS]:
        label_file = _yolo_label_file(image)
        boxes = []
        if os.path.lexists(label_file) and not os.path.isfile(label_file):
            problems.append(Problem(label_file, "skipped image", files.problem(label_file) or ""))
            continue
        if os.path.isfile(label_file):  # no label file: an image without objects
            label_files.append(label_file)
            try:
                lines = files.read_text(label_file).splitlines()
            except files.InputError as e:
                problems.append(Problem(label_file, "skipped image", e.reason))
                continue
            for number, line in enumerate(lines, 1):
                where = f"{label_file}:{number}"
                values = line.split()
                if not values:
                    continue
                try:
                    index, coords = int(values[0]), [finite(v) for v in values[1:]]
                    if len(coords) == 4:
                        cx, cy, w, h = coords
                        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                    elif len(coords) >= 6 and len(coords) % 2 == 0:  # a segment: its bounds
                        xs, ys = coords[0::2], coords[1::2]
                        box = (min(xs), min(ys), max(xs), max(ys))
                    else:
                        raise ValueError(f"{len(values)} values")
                except ValueError as e:
                    problems.append(Problem(where, "dropped box", f"not 'class cx cy w h' ({e})"))
                    continue
                if not 0 <= index < len(names):
                    problems.append(
                        Problem(
                            where,
                            "dropped box",
                            f"class index {index} not in {os.path.basename(names_file)} "
                            f"(0..{len(names) - 1})",
                        )
                    )
                    continue
                boxes.append(Box(names[index], *box, where=where, normalized=True))
        items.append(Item(_key(root, image), image, label_file, None, None, tuple(boxes)))
    used = set(label_files)
    for path in paths:
        if _ext(path) == ".txt" and path not in used and os.path.basename(path) != "classes.txt":
            problems.append(Problem(path, "skipped file", "no image for these labels"))
    return Source("yolo", root, items, problems, names, label_files, "")


def _read_csv(root: str, paths: list[str], images: _Images) -> Source:
    items, problems, used = [], [], []
    for path in [p for p in paths if _ext(p) == ".csv"]:
        try:
            text = files.read_text(path)
            if "\0" in text:
                raise csv.Error(f"NUL byte on line {text[: text.index(chr(0))].count(chr(10)) + 1}")
            rows = list(csv.reader(text.splitlines()))
        except (files.InputError, csv.Error) as e:
            reason = e.reason if isinstance(e, files.InputError) else e
            problems.append(Problem(path, "skipped file", f"not readable CSV ({reason})"))
            continue
        header = [h.strip().lower() for h in rows[0]] if rows else []
        missing = [c for c in _CSV_COLUMNS if c not in header]
        if missing:
            problems.append(
                Problem(
                    f"{path}:1",
                    "skipped file",
                    f"no column(s) {', '.join(missing)} (expected {','.join(_CSV_COLUMNS)})",
                )
            )
            continue
        used.append(path)
        column = {c: header.index(c) for c in _CSV_COLUMNS}
        grouped: dict[str, list] = {}
        for number, row in enumerate(rows[1:], 2):
            if not any(cell.strip() for cell in row):
                continue
            where = f"{path}:{number}"
            try:
                name = row[column["filename"]].strip()
                size = (int(finite(row[column["width"]])), int(finite(row[column["height"]])))
                coords = [finite(row[column[k]]) for k in ("xmin", "ymin", "xmax", "ymax")]
                label = row[column["class"]].strip()
            except (IndexError, ValueError) as e:
                problems.append(Problem(where, "dropped box", f"unreadable row ({e})"))
                continue
            entry = grouped.setdefault(name, [size, []])
            if label:
                entry[1].append(Box(label, *coords, where=where))
        folder = os.path.dirname(path)
        near = [folder, os.path.join(folder, "images"), os.path.join(folder, "..", "images")]
        for name, (size, boxes) in grouped.items():
            image = images.find(name, near)
            if image is None:
                problems.append(Problem(path, "skipped image", f"{name!r} not found"))
                continue
            items.append(Item(_key(root, image), image, path, *size, tuple(boxes)))
    return Source("csv", root, items, problems, None, used, "")
