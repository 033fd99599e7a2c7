"""What train.predict writes: annotated pictures, COCO results JSON, CSV and a summary. TF-free.

--out/
  annotated/...        each input with its boxes drawn (a video input: an annotated .mp4)
  detections.json      COCO results: [{image_id, category_id, bbox [x, y, w, h] px, score}]
  images.json          the COCO "images" (id, file_name, width, height[, frame]) and
                       "categories" those ids refer to (pycocotools loads both)
  detections.csv       file, frame, class_id, class, score, xmin, ymin, xmax, ymax (pixels)
  summary.json         the model, counts per class, images/s, the skipped inputs

Boxes come back in the original picture's pixels: the models give them normalised to the
whole (upright) picture.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import os

import numpy as np

from train import files
from train.predicting import plan as plans

OUTPUT_FILES = {  # the summary's "files" key: the file in --out
    "detections": "detections.json",
    "images": "images.json",
    "csv": "detections.csv",
    "summary": "summary.json",
}
CSV_COLUMNS = ("file", "frame", "class_id", "class", "score", "xmin", "ymin", "xmax", "ymax")
_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6")


@dataclasses.dataclass(frozen=True)
class Found:
    """One picture's detections above the threshold, in pixels."""

    boxes: np.ndarray  # [N, 4] xmin, ymin, xmax, ymax in pixels
    classes: np.ndarray  # [N] 1-based
    scores: np.ndarray  # [N]


def in_pixels(detections, width: int, height: int, threshold: float) -> Found:
    """The detections scoring >= threshold, boxes clipped to the picture, in its pixels."""
    keep = detections.scores >= threshold
    boxes = np.clip(detections.boxes[keep], 0.0, 1.0)
    pixels = np.stack(
        [boxes[:, 1] * width, boxes[:, 0] * height, boxes[:, 3] * width, boxes[:, 2] * height],
        axis=1,
    ).reshape(-1, 4)
    return Found(pixels, detections.classes[keep], detections.scores[keep])


def name_of(names: dict[int, str], class_id: int) -> str:  # noqa: D103
    return names.get(int(class_id), f"class_{int(class_id)}")


@functools.cache
def _font():
    """Pillow's default font, loaded once (each new ImageDraw would load it again)."""
    from PIL import ImageFont

    return ImageFont.load_default()


def draw(image: np.ndarray, found: Found, names: dict[int, str]):
    """The picture with its boxes and "name score" labels (a Pillow image)."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(image)
    pen = ImageDraw.Draw(picture)
    width = max(2, round(min(picture.size) / 200))
    for box, cls, score in zip(found.boxes, found.classes, found.scores, strict=True):
        colour = _COLOURS[int(cls) % len(_COLOURS)]
        x0, y0, x1, y1 = (round(float(v)) for v in box)
        pen.rectangle([x0, y0, x1, y1], outline=colour, width=width)
        label = label_patch(f"{name_of(names, cls)} {score:.2f}", colour)
        lift = min(label.height - 1, y0)  # above the box, or inside it at the picture's top
        picture.paste(label, (x0, y0 - lift))
    return picture


@functools.lru_cache(maxsize=4096)
def label_patch(text: str, colour: str):
    """A label as a small picture: `text` in white on `colour`, drawn once, pasted after.

    Rendering the text is most of drawing a picture (~0.2 ms a label with Pillow's FreeType
    font, ~4 ms for a picture of 13 boxes), and a run's labels repeat: a class name and a
    two-digit score. Pasting one is a copy, not a render: the drawing thread then holds the
    GIL for ~0.3 ms a picture instead of ~4, and the model's thread runs (bench_predict.py).
    """
    from PIL import Image, ImageDraw

    left, top, right, bottom = _font().getbbox(text)
    patch = Image.new("RGB", (right - left + 5, bottom - top + 3), colour)
    ImageDraw.Draw(patch).text((2, 0), text, fill="white", font=_font())
    return patch


def encode(picture, output: str) -> bytes:
    """The annotated picture's file bytes (JPEG for a .jpg output, else PNG)."""
    out = io.BytesIO()
    if output.lower().endswith((".jpg", ".jpeg")):
        picture.save(out, "JPEG", quality=90)
    else:
        picture.save(out, "PNG")
    return out.getvalue()


class Collector:
    """The detections of every picture and frame, written at the end (and the counts)."""

    def __init__(self, names: dict[int, str]):
        self.names = names
        self.images: list[dict] = []
        self.results: list[dict] = []
        self.rows: list[list] = []
        self.per_class: dict[str, int] = {}

    def add(self, path: str, size: tuple[int, int], found: Found, frame: int | None = None):
        """Records one picture (a video's frame: `frame`) and its detections."""
        image_id = len(self.images) + 1
        entry = {"id": image_id, "file_name": path, "width": size[0], "height": size[1]}
        if frame is not None:
            entry["frame"] = frame
        self.images.append(entry)
        for box, cls, score in zip(found.boxes, found.classes, found.scores, strict=True):
            x0, y0, x1, y1 = (round(float(v), 2) for v in box)
            name = name_of(self.names, cls)
            self.results.append(
                {
                    "image_id": image_id,
                    "category_id": int(cls),
                    "bbox": [x0, y0, round(x1 - x0, 2), round(y1 - y0, 2)],
                    "score": round(float(score), 5),
                }
            )
            self.rows.append(
                [path, "" if frame is None else frame, int(cls), name]
                + [round(float(score), 5), x0, y0, x1, y1]
            )
            self.per_class[name] = self.per_class.get(name, 0) + 1

    def write(self, out: str, summary: dict) -> dict:
        """Writes the JSON, CSV and summary files into `out`; returns their paths."""
        ids = sorted({r["category_id"] for r in self.results} | set(self.names))
        written = {key: os.path.join(out, name) for key, name in OUTPUT_FILES.items()}
        files.write_atomic(written["detections"], json.dumps(self.results) + "\n")
        categories = [{"id": i, "name": name_of(self.names, i)} for i in ids]
        files.write_atomic(
            written["images"],
            json.dumps({"images": self.images, "categories": categories}, indent=1) + "\n",
        )
        text = io.StringIO()
        table = csv.writer(text)
        table.writerow(CSV_COLUMNS)
        table.writerows(self.rows)
        files.write_atomic(written["csv"], text.getvalue())
        summary = {**summary, "per_class": dict(sorted(self.per_class.items())), "files": written}
        files.write_atomic(written["summary"], json.dumps(summary, indent=1) + "\n")
        return summary


def prepare_out(out: str) -> str:
    """Creates --out (marked as ours) and its annotated/ folder; returns that folder.

    An earlier --out of train.predict (it has the marker) is emptied of what that run wrote
    first, so no stale picture of another input list stays among the new ones.
    """
    import shutil

    annotated = os.path.join(out, "annotated")
    if os.path.exists(os.path.join(out, plans.MARKER)):
        shutil.rmtree(annotated, ignore_errors=True)
        for name in OUTPUT_FILES.values():
            if os.path.isfile(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
    os.makedirs(annotated, exist_ok=True)
    with open(os.path.join(out, plans.MARKER), "w") as f:
        f.write("predictions of tfod-finetune's train.predict: a new run replaces them\n")
    return annotated


def lines(summary: dict) -> list[str]:
    """What a person reads at the end: counts per class, speed, where things are, skips."""
    pictures = summary["images"] + summary["frames"]
    seen = f"{summary['images']} image(s)"
    if summary["videos"]:
        seen += f", {summary['frames']} frame(s) of {summary['videos']} video(s)"
    out = [
        f"predicted {seen} in {summary['seconds']:.1f} s: {summary['pictures_per_s']} pictures/s; "
        f"{summary['detections']} detection(s) scoring >= {summary['threshold']:g}"
    ]
    if summary["per_class"]:
        width = max(len(name) for name in summary["per_class"])
        out += [f"  {name:<{width}}  {n}" for name, n in summary["per_class"].items()]
    elif pictures:
        out.append(f"  nothing scored >= {summary['threshold']:g} (try a lower --threshold)")
    out.append(f"annotated pictures: {summary['annotated']}")
    out.append(
        f"detections: {summary['files']['detections']} (COCO results; ids in "
        f"{os.path.basename(summary['files']['images'])}), {summary['files']['csv']}"
    )
    for entry in summary["skipped"]:
        out.append(f"skipped {entry['path']}: {entry['why']}")
    return out
