"""A small synthetic detection dataset in the OD API's tf.train.Example format.

JPEGs of coloured shapes on shaded backgrounds (1 square, 2 circle, 3 triangle), written as
TFRecords with every feature `TfExampleDecoder` reads, plus a 3-class label map. Deterministic
for a given seed, so tests can rely on its contents.
"""

from __future__ import annotations

import io
import os

import numpy as np

from train import compat

CLASSES = {1: "square", 2: "circle", 3: "triangle"}
_COLOURS = {1: (220, 40, 40), 2: (40, 200, 60), 3: (50, 80, 230)}


def make_image(
    rng: np.random.Generator,
    size: int,
    masks: list | None = None,
    smallest: int = 8,
):
    """Returns (PIL image, boxes [(xmin, ymin, xmax, ymax)] normalised, labels).

    With `masks` (a list), appends each shape's instance mask to it (a PIL "L" image, 1 inside).
    Shapes are `size // smallest` to `size // 3` pixels wide.
    """
    from PIL import Image, ImageDraw

    background = rng.integers(150, 256, size=3)
    # A shaded background, as real photos have: on a flat one, every anchor over it sees the
    # same pixels, so a barely trained detector scores thousands of boxes exactly alike.
    ramp = np.add.outer(np.arange(size), 2 * np.arange(size)) * (40.0 / (3 * size)) - 20
    pixels = np.clip(background[None, None, :] + ramp[:, :, None], 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    boxes, labels = [], []
    for _ in range(int(rng.integers(1, 4))):
        label = int(rng.integers(1, 4))
        width = int(rng.integers(size // smallest, size // 3))
        height = width if label != 1 else int(rng.integers(size // smallest, size // 3))
        x0 = int(rng.integers(0, size - width))
        y0 = int(rng.integers(0, size - height))
        x1, y1 = x0 + width, y0 + height
        targets = [(draw, _COLOURS[label])]
        if masks is not None:
            masks.append(Image.new("L", (size, size), 0))
            targets.append((ImageDraw.Draw(masks[-1]), 1))
        for canvas, colour in targets:
            if label == 1:
                canvas.rectangle([x0, y0, x1, y1], fill=colour)
            elif label == 2:
                canvas.ellipse([x0, y0, x1, y1], fill=colour)
            else:
                canvas.polygon([(x0, y1), (x1, y1), ((x0 + x1) // 2, y0)], fill=colour)
        boxes.append((x0 / size, y0 / size, x1 / size, y1 / size))
        labels.append(label)
    return image, boxes, labels


def to_example(
    image, boxes, labels, filename: str, class_names=CLASSES, masks=None, keypoints: int = 0
):
    """Encodes one image and its boxes as an OD API tf.train.Example.

    `masks`: PIL masks, one per box, written as PNG `image/object/mask`. `keypoints`: that
    many keypoints per box (evenly along the box's diagonal, all visible).
    """
    compat.apply(with_tensorflow=False)  # TF >= 2.16: Keras choice must precede the TF import
    import tensorflow as tf

    def _bytes(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))

    def _ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    def _floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    width, height = image.size
    feature = {
        "image/height": _ints([height]),
        "image/width": _ints([width]),
        "image/filename": _bytes([filename.encode()]),
        "image/source_id": _bytes([filename.encode()]),
        "image/encoded": _bytes([buffer.getvalue()]),
        "image/format": _bytes([b"jpeg"]),
        "image/object/bbox/xmin": _floats([b[0] for b in boxes]),
        "image/object/bbox/ymin": _floats([b[1] for b in boxes]),
        "image/object/bbox/xmax": _floats([b[2] for b in boxes]),
        "image/object/bbox/ymax": _floats([b[3] for b in boxes]),
        "image/object/class/text": _bytes(
            [class_names.get(c, f"class{c}").encode() for c in labels]
        ),
        "image/object/class/label": _ints(labels),
    }
    if masks is not None:
        encoded = []
        for mask in masks:
            png = io.BytesIO()
            mask.save(png, format="PNG")
            encoded.append(png.getvalue())
        feature["image/object/mask"] = _bytes(encoded)
    if keypoints:
        steps = [(k + 1) / (keypoints + 1) for k in range(keypoints)]
        feature["image/object/keypoint/x"] = _floats(
            [b[0] + t * (b[2] - b[0]) for b in boxes for t in steps]
        )
        feature["image/object/keypoint/y"] = _floats(
            [b[1] + t * (b[3] - b[1]) for b in boxes for t in steps]
        )
        feature["image/object/keypoint/visibility"] = _ints([1] * (len(boxes) * keypoints))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def write_label_map(path: str, classes=CLASSES, keypoints: int = 0) -> str:
    """Writes a StringIntLabelMap text file (items listing `keypoints` keypoints, if any)."""
    with open(path, "w", encoding="utf-8") as f:
        for class_id, name in classes.items():
            listed = "".join(
                f"  keypoints {{\n    id: {k}\n    label: 'point{k}'\n  }}\n"
                for k in range(keypoints)
            )
            f.write(f"item {{\n  id: {class_id}\n  name: '{name}'\n{listed}}}\n")
    return path


def make_dataset(
    out_dir: str,
    num_train: int = 32,
    num_eval: int = 8,
    size: int = 320,
    seed: int = 0,
    one_class: bool = False,
    masks: bool = False,
    keypoints: int = 0,
    smallest: int = 8,
) -> dict[str, str]:
    """Writes train.record, eval.record and label_map.pbtxt; returns their paths.

    `one_class` labels every shape 1 ("shape"): a related but class-agnostic task, used to
    pre-train checkpoints whose box heads have learnt something. `masks` adds PNG instance
    masks, `keypoints` that many keypoints per box (Mask R-CNN and CenterNet keypoint tasks);
    with keypoints the label map lists them for every class. `smallest`: shapes are at least
    `size // smallest` pixels wide (the demo's 5 keeps them over its model's smallest anchor).
    """
    compat.apply(with_tensorflow=False)
    import tensorflow as tf

    classes = {1: "shape"} if one_class else CLASSES
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = {}
    for split, count in (("train", num_train), ("eval", num_eval)):
        path = os.path.join(out_dir, f"{split}.record")
        with tf.io.TFRecordWriter(path) as writer:
            for i in range(count):
                shape_masks = [] if masks else None
                image, boxes, labels = make_image(rng, size, shape_masks, smallest)
                if one_class:
                    labels = [1] * len(labels)
                example = to_example(
                    image,
                    boxes,
                    labels,
                    f"{split}_{i:04d}.jpg",
                    classes,
                    masks=shape_masks,
                    keypoints=keypoints,
                )
                writer.write(example.SerializeToString())
        paths[split] = path
    paths["label_map"] = write_label_map(
        os.path.join(out_dir, "label_map.pbtxt"), classes, keypoints
    )
    return paths


def write_pictures(record: str, folder: str, count: int = 8) -> list[str]:
    """The first `count` pictures of a record as JPEG files: a folder like a user's, to predict."""
    from PIL import Image

    from train.tf import exporting

    os.makedirs(folder, exist_ok=True)
    paths = []
    for n, image in enumerate(exporting.record_images([record], count)):
        path = os.path.join(folder, f"picture_{n:02d}.jpg")
        Image.fromarray(image).save(path, quality=95)
        paths.append(path)
    return paths
