"""What a person looks at after a run, made in the finish child: plots and the contact sheet.

From the final evaluation's own ground truth and detections (train/tf/evalcapture.py):
model_dir/plots/ gets the PR curves, F1 by threshold, the confusion matrix at the
recommended threshold (train/plots.py), the training curves from the run's event files,
`detections.json` (the EvalSet, for `python -m train.report` and anyone's own analysis) and
`curves.json` (AP@.5 per class and the recommended threshold, which `train.predict` takes as
its default for this run's models). The same PNGs go to TensorBoard as images beside the final
evaluation's scalars. The contact sheet shows the worst pictures of the evaluation, or without
one, the verification pictures with the checkpoint's detections.
"""

from __future__ import annotations

import glob
import itertools
import json
import os

import numpy as np
import tensorflow as tf

from train import contactsheet, evalcurves, files, plots
from train.evalcurves import EvalSet, ImageResult
from train.tf import evalcapture

CURVES = evalcurves.CURVES_FILE
DETECTIONS = evalcurves.DETECTIONS_FILE
SHEET_IMAGES = 8


def event_scalars(folders) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of every scalar in the event files under the folders.

    Read as TFRecords of Event protos (tf.compat.v1.train.summary_iterator reads the same, but
    logs a deprecation warning into train.report's output).
    """
    found: dict[str, dict[int, float]] = {}
    for folder in folders:
        for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
            try:
                for record in tf.data.TFRecordDataset(path):
                    event = tf.compat.v1.Event.FromString(record.numpy())
                    for value in event.summary.value:
                        number = _scalar(value)
                        if number is not None:
                            found.setdefault(value.tag, {})[int(event.step)] = number
            except tf.errors.DataLossError:
                continue  # a file being written when the run was stopped: what was read stays
    return found


def run_scalars(model_dir: str) -> dict[str, dict[int, float]]:
    """The training curves' scalars: train_loop's and the evaluator's metrics.

    From model_dir/train and model_dir/eval. The evaluator also writes its eval losses under
    the training losses' names (`Loss/total_loss`): those are left out, or they would
    overwrite the training loss at every evaluated step.
    """
    found = event_scalars([os.path.join(model_dir, "train")])
    evaluated = event_scalars([os.path.join(model_dir, "eval")])
    found.update({t: v for t, v in evaluated.items() if t.startswith("DetectionBoxes_")})
    return found


def _scalar(value) -> float | None:
    if value.HasField("simple_value"):
        return float(value.simple_value)
    if value.HasField("tensor"):
        array = tf.make_ndarray(value.tensor)
        if array.size == 1 and array.dtype.kind in "fiu":
            return float(array.reshape(()))
    return None


def after_evaluation(spec, captured: list[ImageResult], names: list[str], data=None) -> dict:
    """Writes model_dir/plots/ from the evaluation; returns the curves' summary (+ paths).

    `data`: training_data's result, whose plot joins the others (report, TensorBoard).
    """
    evalset = EvalSet(tuple(captured), {i: name for i, name in enumerate(names, start=1)})
    os.makedirs(spec.plots_dir, exist_ok=True)
    evalset.write(os.path.join(spec.plots_dir, DETECTIONS))
    curves = plots.evaluation_plots(evalset, spec.plots_dir)
    training = os.path.join(spec.plots_dir, evalcurves.TRAINING_CURVES_FILE)
    plots.training_curves(run_scalars(os.path.dirname(spec.plots_dir)), training)
    curves["plots"]["training_curves"] = training
    if data is not None:
        curves["plots"]["training_data"] = data["path"]
        curves["data"] = {k: v for k, v in data.items() if k != "path"}
    curves["detections"] = os.path.join(spec.plots_dir, DETECTIONS)
    files.write_atomic(os.path.join(spec.plots_dir, CURVES), json.dumps(curves, indent=1))
    _to_tensorboard(spec.summary_dir, curves["plots"], spec.step)
    return curves


def _to_tensorboard(summary_dir: str, pngs: dict[str, str], step: int) -> None:
    writer = tf.summary.create_file_writer(summary_dir)
    with writer.as_default():
        for name, path in pngs.items():
            with open(path, "rb") as f:
                image = tf.io.decode_png(f.read(), channels=3)
            tf.summary.image(f"plots/{name}", image[tf.newaxis], step=step)
    writer.close()


def sheet_from_evaluation(spec, captured: list[ImageResult], names, score: float) -> str | None:
    """The evaluation's worst pictures (most missed and false boxes at `score`), drawn."""
    if not captured:
        return None
    ranked = sorted(
        range(len(captured)),
        key=lambda i: (-sum(evalcurves.image_errors(captured[i], score)), i),
    )[:SHEET_IMAGES]
    pixels = evalcapture.images_by_key(spec.images, {captured[i].key for i in ranked})
    tiles = []
    for i in ranked:
        image = pixels.get(captured[i].key)
        if image is not None:
            height, width = image.shape[:2]
            tiles.append(
                contactsheet.Tile(image, contactsheet.normalised(captured[i], height, width))
            )
    if not tiles:
        return None
    return contactsheet.draw(tiles, names, score, spec.contact_sheet)


def sheet_from_reference(spec, images, truths, references, names, score: float) -> str:
    """Without an evaluation: the verification pictures, the checkpoint's detections on them."""
    tiles = []
    for n, (image, (boxes, classes), found) in enumerate(
        zip(images, truths, references, strict=True)
    ):
        result = ImageResult.of(n, boxes, classes, found.boxes, found.scores, found.classes)
        tiles.append(contactsheet.Tile(image, result))
    tiles = contactsheet.worst_first(tiles, score, len(tiles))
    return contactsheet.draw(tiles, names, score, spec.contact_sheet)


DATA_RECORDS = 2000  # training records the data plot reads (a sample of a big set)


def training_data(spec, pipeline, names: list[str]) -> dict | None:
    """Draws plots/training_data.png from the first DATA_RECORDS training records."""
    from train import boxstats

    if not spec.plots_dir or not spec.calibration_records:
        return None
    geometry = boxstats.geometry(pipeline)
    boxes, read = [], 0
    sample = itertools.islice(tf.data.TFRecordDataset(list(spec.calibration_records)), DATA_RECORDS)
    for record in sample:
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        boxes += _model_pixels(feature, geometry, names)
        read += 1
    os.makedirs(spec.plots_dir, exist_ok=True)
    path = os.path.join(spec.plots_dir, "training_data.png")
    found = plots.training_data(boxes, geometry, path)
    return {**found, "records": read, "path": path}


def _model_pixels(feature, geometry, names: list[str]) -> list[tuple[str, float, float]]:
    """One record's boxes as (class name, width, height) in model-input pixels."""

    def values(key):
        return list(feature[key].float_list.value)

    height = (feature["image/height"].int64_list.value or [0])[0]
    width = (feature["image/width"].int64_list.value or [0])[0]
    if not height or not width:
        return []
    vertical, horizontal = geometry.scale(height, width)
    labels = list(feature["image/object/class/label"].int64_list.value)
    corners = zip(
        values("image/object/bbox/xmin"),
        values("image/object/bbox/ymin"),
        values("image/object/bbox/xmax"),
        values("image/object/bbox/ymax"),
        strict=False,
    )
    return [
        (
            names[label - 1] if 0 < label <= len(names) else f"class_{label}",
            (xmax - xmin) * width * horizontal,
            (ymax - ymin) * height * vertical,
        )
        for label, (xmin, ymin, xmax, ymax) in zip(labels, corners, strict=False)
    ]


def record_truth(paths, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first `count` records' ground truth: (normalised boxes, classes), in file order."""
    found = []
    for path in paths:
        for record in tf.data.TFRecordDataset(path):
            feature = tf.train.Example.FromString(record.numpy()).features.feature

            def floats(key, feature=feature):
                return np.array(feature[key].float_list.value, np.float64)

            boxes = np.stack(
                [floats(f"image/object/bbox/{k}") for k in ("ymin", "xmin", "ymax", "xmax")],
                axis=-1,
            )
            classes = np.array(feature["image/object/class/label"].int64_list.value, np.int64)
            found.append((boxes.reshape(-1, 4), classes))
            if len(found) >= count:
                return found
    return found
