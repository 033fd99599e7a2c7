"""--export tflite: the OD API's TFLite graph, converted (float32, float16 or int8).

Only SSD and CenterNet convert, with a fixed_shape_resizer (train/exportformats.py holds the
preflight's rule). The model's preprocessing is not in the file, so the report says what an
app must feed it, and labels.txt goes beside it.
"""

from __future__ import annotations

import os

from train.tf import exporting
from train.tf.formats import Exported, Job


def export(job: Job) -> Exported:
    """Converts the pinned checkpoint; int8 calibrates on up to 32 training images."""
    spec, pipeline, arch = job.spec, job.pipeline, job.arch
    calibration = exporting.record_images(spec.calibration_records or spec.images, 32)
    resize = exporting.model_resize(pipeline)

    def representative():
        for image in calibration:
            if arch == "ssd":  # SSD's TFLite input is the preprocessed image
                yield [job.reference(image)[1].astype("float32")]
            else:
                yield [resize(image)]

    model = exporting.export_tflite(
        pipeline,
        job.pinned,
        os.path.join(job.staging, "tflite_graph"),
        spec.tflite_quantize,
        representative,
    )
    staged = os.path.join(job.staging, "model.tflite")
    with open(staged, "wb") as f:
        f.write(model)
    detect, _ = exporting.tflite_fn(model, arch, resize)
    key = "tflite" if spec.tflite_quantize == "none" else f"tflite_{spec.tflite_quantize}"
    return Exported(
        staged,
        detect,
        os.path.join(spec.export_dir, "model.tflite"),
        key,
        lambda kept: _sidecars(job, kept),
    )


def _fixed_shape(pipeline) -> tuple[int, int]:
    arch = pipeline.model.WhichOneof("model")
    resizer = getattr(pipeline.model, arch).image_resizer.fixed_shape_resizer
    return resizer.height, resizer.width


def _sidecars(job: Job, model_path: str | None) -> dict:
    """labels.txt beside model.tflite (when it was kept), and what the app must feed it."""
    import numpy as np

    spec, pipeline, arch = job.spec, job.pipeline, job.arch
    labels = exporting.class_names(spec.label_map, getattr(pipeline.model, arch).num_classes)
    labels_path = os.path.join(spec.export_dir, "labels.txt")
    if model_path:
        with open(labels_path, "w", encoding="utf-8") as f:
            f.write("\n".join(labels) + "\n")
    height, width = _fixed_shape(pipeline)
    if arch == "ssd":
        _, low = job.reference(np.zeros((height, width, 3), np.uint8))
        _, high = job.reference(np.full((height, width, 3), 255, np.uint8))
        scale = (high.reshape(-1, 3).mean(0) - low.reshape(-1, 3).mean(0)) / 255.0
        offset = low.reshape(-1, 3).mean(0)
        feed = (
            f"float32 [1, {height}, {width}, 3], RGB resized to {width}x{height} (TF1 bilinear, "
            "align_corners=False), then "
            f"pixel * {float(scale[0]):.6g} + {float(offset[0]):.6g} (the model's preprocessing "
            "is not in the TFLite file)"
        )
    else:
        feed = (
            f"float32 [1, {height}, {width}, 3], RGB pixel values 0-255 resized to "
            f"{width}x{height} with TF1 bilinear (align_corners=False), as the model saw them"
        )
    return {
        "labels": labels_path if model_path else None,
        "input": feed,
        "outputs": "boxes [1,N,4] (ymin, xmin, ymax, xmax, 0-1; clip to 0-1), classes [1,N] "
        "(0-based: line of labels.txt), scores [1,N], count [1]",
    }
