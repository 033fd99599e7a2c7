"""Small annotated datasets in the layouts users' tools write, with the mistakes users make.

One list of images (`specs()`) is written as LabelImg Pascal VOC XML, a CVAT-style COCO
instances JSON (non-contiguous category ids, an `iscrowd` box), an Ultralytics YOLO folder
(`data.yaml`, images/ + labels/) and the tutorials' CSV. Among the images: an EXIF-rotated
JPEG (annotated as a viewer shows it), a grayscale PNG, a CMYK JPEG, a degenerate box, boxes
past the edge (one slightly, clipped; one mostly outside, dropped), a missing image and a
class ("zebra") that a given label map may not have. `expected()` is what the records must
then hold, worked out independently of the converter.
"""

from __future__ import annotations

import dataclasses
import json
import os

CLASSES = ("cat", "dog", "bird", "zebra")
COLORS = {"cat": (230, 30, 30), "dog": (30, 220, 30), "bird": (30, 30, 230), "zebra": (240, 240, 0)}
COCO_IDS = {"cat": 3, "dog": 7, "bird": 9, "zebra": 11}


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str
    width: int  # as a viewer shows it
    height: int
    boxes: tuple  # (class, xmin, ymin, xmax, ymax) in shown pixels
    kind: str = "jpeg"  # jpeg | png | exif | gray | cmyk | missing
    drawn: tuple = ()  # boxes drawn but not annotated (none so far)


def specs(count: int = 10, start: int = 0) -> list[Spec]:
    """`count` ordinary images plus the special cases (those only when start == 0)."""
    import numpy as np

    rng = np.random.default_rng(start)
    out = []
    for n in range(start, start + count):
        width, height = (160, 120) if n % 2 else (128, 128)
        boxes = []
        for _ in range(1 + n % 2):
            name = CLASSES[int(rng.integers(0, 3))]
            w, h = int(rng.integers(24, 48)), int(rng.integers(24, 48))
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            boxes.append((name, x, y, x + w, y + h))
        out.append(Spec(f"img_{n:03d}.jpg", width, height, tuple(boxes)))
    if start:
        return out
    return out + [
        Spec("phone_exif.jpg", 120, 160, (("dog", 10, 90, 60, 150),), kind="exif"),
        Spec("gray.png", 128, 96, (("cat", 20, 20, 70, 60),), kind="gray"),
        Spec("cmyk.jpg", 128, 96, (("bird", 60, 30, 110, 80),), kind="cmyk"),
        Spec("degenerate.jpg", 128, 96, (("cat", 10, 10, 50, 50), ("dog", 70, 20, 70, 60))),
        Spec("edge.jpg", 128, 96, (("dog", 90, 30, 134, 70), ("cat", 100, 10, 200, 40))),
        Spec("zebra.jpg", 128, 96, (("zebra", 30, 20, 90, 80), ("cat", 5, 5, 25, 25))),
        Spec("missing.jpg", 128, 96, (("cat", 10, 10, 40, 40),), kind="missing"),
        Spec("negative.jpg", 128, 96, ()),
    ]


def _image(spec: Spec):
    import numpy as np
    from PIL import Image, ImageDraw

    ramp = np.linspace(60, 180, spec.width, dtype=np.uint8)[None, :, None]
    pixels = np.broadcast_to(ramp, (spec.height, spec.width, 3)).copy()
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    for name, x1, y1, x2, y2 in spec.boxes:
        if x2 > x1 and y2 > y1:
            draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=COLORS[name])
    return image


def write_image(spec: Spec, path: str) -> None:
    """The image file as a phone, a scanner or an export would have written it."""
    from PIL import Image

    if spec.kind == "missing":
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = _image(spec)
    if spec.kind == "exif":  # stored sideways; EXIF 6 tells viewers to turn it clockwise
        exif = Image.Exif()
        exif[0x0112] = 6
        image.transpose(Image.Transpose.ROTATE_90).save(path, "JPEG", quality=95, exif=exif)
    elif spec.kind == "gray":
        image.convert("L").save(path, "PNG")
    elif spec.kind == "cmyk":
        image.convert("CMYK").save(path, "JPEG", quality=95)
    elif spec.name.endswith(".png"):
        image.save(path, "PNG")
    else:
        image.save(path, "JPEG", quality=95)


def expected(items: list[Spec], label_map: dict[str, int] | None = None) -> dict:
    """{image file name: (width, height, [(class, ymin, xmin, ymax, xmax) normalised])}.

    Degenerate boxes and boxes mostly outside go; boxes slightly outside are clipped; with a
    `label_map`, classes it lacks go.
    """
    out = {}
    for spec in items:
        if spec.kind == "missing":
            continue
        boxes = []
        for name, x1, y1, x2, y2 in spec.boxes:
            if label_map is not None and name not in label_map:
                continue
            if x2 <= x1 or y2 <= y1:
                continue
            cx1, cy1 = max(x1, 0), max(y1, 0)
            cx2, cy2 = min(x2, spec.width), min(y2, spec.height)
            if (cx2 - cx1) * (cy2 - cy1) < 0.5 * (x2 - x1) * (y2 - y1):
                continue
            w, h = spec.width, spec.height
            boxes.append((name, cy1 / h, cx1 / w, cy2 / h, cx2 / w))
        out[spec.name] = (spec.width, spec.height, boxes)
    return out


def write_voc(root: str, items: list[Spec]) -> str:
    """LabelImg's default: one XML beside each image, 1-based integer pixels in <bndbox>."""
    os.makedirs(root, exist_ok=True)
    for spec in items:
        image = os.path.join(root, spec.name)
        write_image(spec, image)
        objects = "".join(
            f"""
\t<object>
\t\t<name>{name}</name>
\t\t<pose>Unspecified</pose>
\t\t<truncated>0</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox>
\t\t\t<xmin>{x1}</xmin>
\t\t\t<ymin>{y1}</ymin>
\t\t\t<xmax>{x2}</xmax>
\t\t\t<ymax>{y2}</ymax>
\t\t</bndbox>
\t</object>"""
            for name, x1, y1, x2, y2 in spec.boxes
        )
        xml = f"""<annotation>
\t<folder>{os.path.basename(root)}</folder>
\t<filename>{spec.name}</filename>
\t<path>{image}</path>
\t<source>
\t\t<database>Unknown</database>
\t</source>
\t<size>
\t\t<width>{spec.width}</width>
\t\t<height>{spec.height}</height>
\t\t<depth>{1 if spec.kind == "gray" else 3}</depth>
\t</size>
\t<segmented>0</segmented>{objects}
</annotation>
"""
        with open(os.path.splitext(image)[0] + ".xml", "w") as f:
            f.write(xml)
    return root


def write_coco(root: str, items: list[Spec]) -> str:
    """CVAT's COCO 1.0 export: annotations/instances_default.json and images/."""
    images, annotations = [], []
    for number, spec in enumerate(items, 1):
        write_image(spec, os.path.join(root, "images", spec.name))
        images.append(
            {"id": number, "file_name": spec.name, "width": spec.width, "height": spec.height}
        )
        for name, x1, y1, x2, y2 in spec.boxes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": number,
                    "category_id": COCO_IDS[name],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(not annotations),  # the very first box is a crowd
                    "segmentation": [],
                }
            )
    data = {
        "info": {"description": "test"},
        "licenses": [],
        "categories": [
            {"id": i, "name": n, "supercategory": ""} for n, i in reversed(COCO_IDS.items())
        ],
        "images": images,
        "annotations": annotations,
    }
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    with open(os.path.join(root, "annotations", "instances_default.json"), "w") as f:
        json.dump(data, f)
    return root


def write_yolo(root: str, items: list[Spec]) -> str:
    """Ultralytics: data.yaml, images/train/x.jpg with labels/train/x.txt (cx cy w h)."""
    names = list(CLASSES)
    with_size = {}
    for spec in items:
        write_image(spec, os.path.join(root, "images", "train", spec.name))
        lines = []
        for name, x1, y1, x2, y2 in spec.boxes:
            w, h = spec.width, spec.height
            lines.append(
                f"{names.index(name)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
                f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
            )
        if spec.boxes:  # Ultralytics: no label file for an image without objects
            label = os.path.join(root, "labels", "train", os.path.splitext(spec.name)[0] + ".txt")
            os.makedirs(os.path.dirname(label), exist_ok=True)
            with open(label, "w") as f:
                f.write("\n".join(lines) + "\n")
        with_size[spec.name] = (spec.width, spec.height)
    with open(os.path.join(root, "data.yaml"), "w") as f:
        f.write(
            "path: .\ntrain: images/train\nval: images/train\n"
            f"nc: {len(names)}\nnames: [{', '.join(names)}]\n"
        )
    return root


def write_csv(root: str, items: list[Spec]) -> str:
    """The tutorials' xml_to_csv output: one row per box, images in images/."""
    os.makedirs(root, exist_ok=True)
    rows = ["filename,width,height,class,xmin,ymin,xmax,ymax"]
    for spec in items:
        write_image(spec, os.path.join(root, "images", spec.name))
        for name, x1, y1, x2, y2 in spec.boxes:
            rows.append(f"{spec.name},{spec.width},{spec.height},{name},{x1},{y1},{x2},{y2}")
    with open(os.path.join(root, "train_labels.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    return root


WRITERS = {"voc": write_voc, "coco": write_coco, "yolo": write_yolo, "csv": write_csv}
