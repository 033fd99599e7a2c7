"""train.predict's model, of any of the four kinds, as one `detect(image) -> Detections`.

Each kind runs through the very function its export was verified with (train/tf/exporting.py
and the format modules): the checkpoint through its own preprocess/predict/postprocess, a
SavedModel through its serving signature, a TFLite through `tflite_fn` with the normalisation
from its metadata, an ONNX in ONNX Runtime. So what predicts is what was verified, and the
four agree within the export tolerances.
"""

from __future__ import annotations

import dataclasses
import os
import queue

import numpy as np

from train.predicting import plan as plans
from train.verify import Staged

# How many of a model's calls train.predict keeps running at once. A call leaves cores idle
# (its Python, its sequential steps: NMS, the output copies), which a second call fills: on 2
# cores the demo's model, 150 pictures, one call at a time against two: checkpoint 46 -> 66,
# SavedModel 47 -> 67, ONNX 124 -> 174 calls/s, a third no better (docs/measurements.md).
# Each call holds its own activations: twice one call's working memory, not the weights'.
# A TFLite file gets an interpreter per call: one runs one call at a time (not thread-safe).
CALLS_AT_ONCE = 2


class ModelError(Exception):
    """The model cannot be run as given (a usage error: exit 2, one line)."""


@dataclasses.dataclass(frozen=True)
class Predictor:
    """A loaded model: `detect(uint8 RGB image) -> Detections` and class names by id.

    `detect` is a verify.Staged: train.predict's pipeline calls its `prepare` on the decoding
    threads and its `infer` on up to `calls` threads at once.
    """

    detect: Staged
    names: dict[int, str]
    kind: str
    describe: str  # what was loaded, for the first line of the output
    calls: int = CALLS_AT_ONCE  # of `detect.infer` that may run at the same time


def load(plan: plans.Plan) -> Predictor:
    """Loads the plan's model (ModelError when it cannot be run as given)."""
    model = plan.model
    if model.kind == plans.CHECKPOINT:
        predictor = _checkpoint(model)
    elif model.kind == plans.SAVED_MODEL:
        from train.tf import exporting

        run = exporting.saved_model_fn(model.path)
        predictor = Predictor(run, {}, model.kind, f"SavedModel {model.path}")
    elif model.kind == plans.TFLITE:
        predictor = _tflite(model)
    else:
        from train.tf.formats import onnx

        # The pipeline's threads need the cores; they resize when the file says how.
        whole, resized = onnx.runners(model.path, spinning=False)
        fed = " (pictures resized as its metadata says)" if resized else ""
        predictor = Predictor(resized or whole, {}, model.kind, f"ONNX {model.path}{fed}")
    predictor.detect(np.zeros((64, 64, 3), np.uint8))  # traces / allocates once, untimed
    return dataclasses.replace(predictor, names=_names(plan, predictor.names))


def _checkpoint(model: plans.Model) -> Predictor:
    from train.pipeline import configfile
    from train.tf import exporting, tracing

    # Traced as the finish child traces the reference its exports were verified against
    # (train/tf/harness.py): the OD API without AutoGraph's rewriting, ~7 s less to start.
    tracing.limit_autograph()
    pipeline = configfile.load(model.pipeline_config).proto
    reference = exporting.reference_fn(pipeline, model.path)
    return Predictor(
        Staged(_as_is, lambda image: reference(image)[0]),  # preprocess is in its graph
        {},
        model.kind,
        f"checkpoint {model.path} ({model.pipeline_config})",
    )


def _as_is(image: np.ndarray) -> np.ndarray:
    return image


def _tflite(model: plans.Model) -> Predictor:
    from train.tf import exporting
    from train.tf.formats import tflite_metadata

    with open(model.path, "rb") as f:
        content = f.read()
    why_not = tflite_metadata.missing()
    if why_not:
        raise ModelError(f"--model {model.path}: its metadata cannot be read: {why_not}")
    metadata = tflite_metadata.read(content)
    if metadata is None:
        raise ModelError(
            f"--model {model.path} has no metadata (its input normalisation and labels): "
            "export it again with `python -m train.export --export tflite`, which writes them"
        )
    mean, std = metadata.mean, metadata.std
    runs = [exporting.tflite_fn(content, mean, std)[0] for _ in range(CALLS_AT_ONCE)]
    names = {n + 1: name for n, name in enumerate(metadata.labels)}
    describe = f"TFLite {model.path} (metadata: labels, mean/std)"
    return Predictor(any_free(runs), names, model.kind, describe, calls=len(runs))


def any_free(runs: list[Staged]) -> Staged:
    """One Staged over interchangeable ones that each run one call at a time.

    A TFLite interpreter is not thread-safe and runs on one thread (as a phone app's); each
    call takes one that is free, so `len(runs)` calls run at once, each on its own.
    """
    free: queue.SimpleQueue = queue.SimpleQueue()
    for run in runs:
        free.put(run)

    def infer(feed):
        run = free.get()
        try:
            return run.infer(feed)
        finally:
            free.put(run)

    return Staged(runs[0].prepare, infer, keep=runs)


def _names(plan: plans.Plan, found: dict[int, str]) -> dict[int, str]:
    """Class names: --label_map / the run's label map, else the model's own, else labels.txt."""
    if plan.label_map:
        from train.pipeline import labelmap

        return dict(labelmap.load(plan.label_map).items)
    if found:
        return found
    if plan.labels_txt and os.path.isfile(plan.labels_txt):
        with open(plan.labels_txt, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
        return {n + 1: name for n, name in enumerate(lines)}
    return {}
