"""--export tflite: the OD API's TFLite graph, converted (float32, float16 or int8).

Only SSD and CenterNet convert, with a fixed_shape_resizer (train/exportformats.py holds the
preflight's rule). The model's normalisation is not in its graph, so it goes into the file's
metadata with the labels (tflite_metadata.py): MediaPipe's ObjectDetector runs it as it is,
and is verified against the TFLite interpreter (itself verified against the checkpoint) on
the same pictures. labels.txt also goes beside the file, and the report says what an app must
feed it.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from train.pipeline import fields
from train.predicting.plan import DEFAULT_THRESHOLD, run_threshold
from train.tf import exporting
from train.tf.formats import Exported, Job, tflite_metadata


def score_hint(export_dir: str) -> float:
    """MediaPipe's default score_threshold for the file (the metadata's hint).

    train.predict's default for the same file: the run's recommended threshold when its final
    evaluation wrote one (before the exports, in the same child), else DEFAULT_THRESHOLD.
    """
    recommended = run_threshold(export_dir)
    return recommended[0] if recommended else DEFAULT_THRESHOLD


def export(job: Job) -> Exported:
    """Converts the pinned checkpoint, writes its metadata; int8 calibrates on training images."""
    spec, pipeline = job.spec, job.pipeline
    height, width = _fixed_shape(pipeline)
    if job.arch == "ssd":  # SSD's TFLite input is the preprocessed image
        mean, std = exporting.normalization(job.reference, height, width)
    else:  # CenterNet's TFLite graph normalises itself
        mean, std = [0.0] * 3, [1.0] * 3

    def representative():  # only int8 calls it
        for image in exporting.record_images(spec.calibration_records or spec.images, 32):
            feed = (exporting.resize_like_the_model(image, height, width) - mean) / std
            yield [feed.astype("float32")]

    model = exporting.export_tflite(
        pipeline,
        job.pinned,
        os.path.join(job.staging, "tflite_graph"),
        spec.tflite_quantize,
        representative,
    )
    labels = exporting.class_names(spec.label_map, getattr(pipeline.model, job.arch).num_classes)
    metadata = tflite_metadata.Metadata(
        tuple(mean), tuple(std), tuple(labels), score_hint(spec.export_dir)
    )
    why_not = tflite_metadata.missing()
    if why_not is None:
        model = tflite_metadata.with_metadata(model, metadata)
    staged = os.path.join(job.staging, "model.tflite")
    with open(staged, "wb") as f:
        f.write(model)
    detect, _ = exporting.tflite_fn(model, mean, std)
    also = () if why_not else _in_mediapipe(model, metadata, height, width)
    key = "tflite" if spec.tflite_quantize == "none" else f"tflite_{spec.tflite_quantize}"
    return Exported(
        staged,
        detect,
        os.path.join(spec.export_dir, "model.tflite"),
        key,
        lambda kept: _sidecars(job, kept, metadata, why_not),
        also,
    )


def _in_mediapipe(model: bytes, metadata, height: int, width: int):
    """MediaPipe's ObjectDetector on the file, twice (Exported.also entries).

    MediaPipe resizes a picture with its own interpolation, not the OD API's TF1 bilinear the
    model was trained with, and a barely trained model's scores move by up to 0.2 when its
    input pixels are merely rounded to whole values. So the check that gates the export gives
    MediaPipe and the TFLite interpreter the same uint8 picture at the model's input size
    (resized the model's way): what is left to differ is what the metadata decides
    (normalisation, labels, output roles) and MediaPipe's box convention: a box crossing the
    left or top edge is reported with its origin moved onto the edge and its size kept. The
    interpreter (verified against the checkpoint itself) is the reference, its boxes put in
    that convention. Fed the pictures at their own size, MediaPipe is compared with the
    checkpoint as an app would see it: measured and reported only.
    """
    detect = tflite_metadata.detector(model, metadata.labels)
    interpreter, _ = exporting.tflite_fn(model, metadata.mean, metadata.std, clip=False)

    def at_model_size(image: np.ndarray) -> np.ndarray:
        resized = exporting.resize_like_the_model(image, height, width)[0]
        return np.clip(np.rint(resized), 0, 255).astype(np.uint8)

    def mediapipe(image):
        return detect(at_model_size(image))

    def interpreter_as_mediapipe(image):
        found = interpreter(at_model_size(image))
        scale = np.array([height, width, height, width], np.float64)
        pixels = found.boxes * scale  # MediaPipe: whole pixels, origin and size cut apart
        origin = np.maximum(np.trunc(pixels[:, :2]), 0.0)
        size = np.trunc(pixels[:, 2:] - pixels[:, :2])
        moved = np.concatenate([origin, origin + size], 1) / scale
        return dataclasses.replace(found, boxes=np.clip(moved, 0.0, 1.0))

    interpreter_as_mediapipe.whose = "the TFLite interpreter (same picture at the model's size)"

    return (
        ("mediapipe", mediapipe, True, interpreter_as_mediapipe),
        ("mediapipe_own_resize", detect, False, None),  # it closes the MediaPipe process
    )


def _fixed_shape(pipeline) -> tuple[int, int]:
    resizer = fields.model_message(pipeline).image_resizer.fixed_shape_resizer
    return resizer.height, resizer.width


def _sidecars(job: Job, model_path: str | None, metadata, why_not: str | None) -> dict:
    """labels.txt beside model.tflite (when it was kept), and what the app must feed it."""
    labels_path = os.path.join(job.spec.export_dir, "labels.txt")
    if model_path:
        with open(labels_path, "w", encoding="utf-8") as f:
            f.write("\n".join(metadata.labels) + "\n")
    height, width = _fixed_shape(job.pipeline)
    mean, std = metadata.mean, metadata.std
    numbers = ", ".join(f"{m:.6g}" for m in mean), ", ".join(f"{s:.6g}" for s in std)
    return {
        "labels": labels_path if model_path else None,
        "input": (
            f"float32 [1, {height}, {width}, 3], RGB resized to {width}x{height} (TF1 bilinear, "
            f"align_corners=False), then (pixel - mean) / std with mean [{numbers[0]}] and std "
            f"[{numbers[1]}] per channel"
        ),
        "outputs": "boxes [1,N,4] (ymin, xmin, ymax, xmax, 0-1; clip to 0-1), classes [1,N] "
        "(0-based: line of labels.txt), scores [1,N], count [1]",
        "metadata": (
            {
                "written": True,
                "mean": list(mean),
                "std": list(std),
                "labels": len(metadata.labels),
                "score_threshold": metadata.score_threshold,
            }
            if why_not is None
            else {"written": False, "why": why_not}
        ),
    }
