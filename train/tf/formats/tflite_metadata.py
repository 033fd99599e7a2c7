"""TFLite metadata (labels, input normalisation, output roles, score threshold) and MediaPipe.

A `.tflite` without metadata is refused by MediaPipe Tasks' ObjectDetector and the TFLite Task
Library, and leaves every app to hard-code the model's normalisation. MediaPipe's own metadata
writer (`metadata_writers.object_detector`, for models with the TFLite detection post-process)
writes it: the image input with its mean/std, the four detection outputs (location, category,
score, number of detections; the writer pairs them with the model's outputs by tensor index,
so each is moved onto the OD API output of its role), and labels.txt packed into the file.
The writer has no argument for a score threshold, so the score tensor's
ScoreThresholdingOptions are added to what it wrote, through the schema's own object API;
MediaPipe takes it as the default `score_threshold`.

The same metadata is read back by `read` (train.predict runs a .tflite from it), and
`detector` runs the file in MediaPipe's ObjectDetector, which the export verification compares
with the TFLite interpreter (train/tf/formats/tflite.py says how).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from train.verify import Detections

LABELS_FILE = "labels.txt"
# The OD API's TFLite outputs (StatefulPartitionedCall:N; exporting.tflite_fn) by their role
# in MediaPipe's detection metadata.
ROLES = {"3": "location", "2": "category", "1": "score", "0": "number of detections"}


@dataclasses.dataclass(frozen=True)
class Metadata:
    """What an app needs to run the model, as written into the file."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    labels: tuple[str, ...]
    score_threshold: float | None


def missing() -> str | None:
    """Why metadata cannot be written or read here (None when MediaPipe is installed)."""
    try:
        from mediapipe.tasks.python.metadata.metadata_writers import object_detector  # noqa: F401
    except ImportError as e:
        return f"MediaPipe is not installed in this environment ({e})"
    return None


def with_metadata(model: bytes, metadata: Metadata) -> bytes:
    """`model` with `metadata` and labels.txt packed in.

    MediaPipe's writer writes it; then each output's metadata is put on the output the OD API
    gave that role (the writer pairs them by tensor index, which holds for an SSD's
    post-process op but not for CenterNet's outputs), and the score threshold is added.
    """
    from mediapipe.tasks.metadata import metadata_schema_py_generated as schema
    from mediapipe.tasks.python.metadata import metadata as mp_metadata
    from mediapipe.tasks.python.metadata.metadata_writers import (
        metadata_writer,
        object_detector,
        writer_utils,
    )

    labels = metadata_writer.Labels().add(list(metadata.labels), exported_filename=LABELS_FILE)
    writer = object_detector.MetadataWriter.create_for_models_with_nms(
        bytearray(model), list(metadata.mean), list(metadata.std), labels
    )
    written, _ = writer.populate()
    shown = mp_metadata.MetadataDisplayer.with_model_buffer(written)
    tree = schema.ModelMetadataT.InitFromObj(
        schema.ModelMetadata.GetRootAsModelMetadata(shown.get_metadata_buffer(), 0)
    )
    graph = tree.subgraphMetadata[0]
    by_role = {_name(t): t for t in graph.outputTensorMetadata}
    outputs = writer_utils.get_output_tensor_names(bytearray(model))
    graph.outputTensorMetadata = [by_role[ROLES[name.rsplit(":", 1)[-1]]] for name in outputs]
    if metadata.score_threshold is not None:
        unit = schema.ProcessUnitT()
        unit.optionsType = schema.ProcessUnitOptions.ScoreThresholdingOptions
        unit.options = schema.ScoreThresholdingOptionsT()
        unit.options.globalScoreThreshold = float(metadata.score_threshold)
        by_role["score"].processUnits = [*(by_role["score"].processUnits or []), unit]
    import flatbuffers

    builder = flatbuffers.Builder(0)
    builder.Finish(tree.Pack(builder), mp_metadata.MetadataPopulator.METADATA_FILE_IDENTIFIER)
    populator = mp_metadata.MetadataPopulator.with_model_buffer(written)  # keeps labels.txt
    populator.load_metadata_buffer(builder.Output())
    populator.populate()
    return bytes(populator.get_model_buffer())


def _name(tensor) -> str:
    name = tensor.name
    return name.decode() if isinstance(name, bytes) else str(name or "")


def read(model: bytes) -> Metadata | None:
    """The metadata written by `with_metadata` (None when the file has none)."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as schema
    from mediapipe.tasks.python.metadata import metadata as mp_metadata

    try:
        shown = mp_metadata.MetadataDisplayer.with_model_buffer(bytearray(model))
    except ValueError:  # "The model does not have metadata."
        return None
    tree = schema.ModelMetadataT.InitFromObj(
        schema.ModelMetadata.GetRootAsModelMetadata(shown.get_metadata_buffer(), 0)
    )
    graph = tree.subgraphMetadata[0]
    mean, std = (0.0,), (1.0,)
    for unit in graph.inputTensorMetadata[0].processUnits or []:
        if unit.optionsType == schema.ProcessUnitOptions.NormalizationOptions:
            mean, std = tuple(map(float, unit.options.mean)), tuple(map(float, unit.options.std))
    threshold = None
    for tensor in graph.outputTensorMetadata:
        for unit in tensor.processUnits or []:
            if unit.optionsType == schema.ProcessUnitOptions.ScoreThresholdingOptions:
                threshold = float(unit.options.globalScoreThreshold)
    labels: tuple[str, ...] = ()
    if LABELS_FILE in shown.get_packed_associated_file_list():
        text = shown.get_associated_file_buffer(LABELS_FILE).decode("utf-8")
        labels = tuple(line for line in text.splitlines() if line.strip())
    return Metadata(mean, std, labels, threshold)


def detector(model: bytes, labels: tuple[str, ...]):
    """Runs the file in MediaPipe Tasks' ObjectDetector (CPU) on one uint8 RGB image.

    MediaPipe resizes and normalises from the metadata alone, as an app does, and returns
    pixel boxes (whole pixels) and class names; they are turned back into normalised boxes and
    1-based class ids for the comparison. It runs in a process of its own, answering within
    ANSWER_S: MediaPipe 0.10.14 crashed (SIGSEGV) or spun on low-scored detections far
    outside the image, as barely trained models give (0.10.21, pinned, does not), and such a
    crash must be a finding about this runtime, not the end of the finish child and of the
    exports after it. A crash or a hang raises MediaPipeFailed.
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    worker = context.Process(target=_serve, args=(theirs, bytes(model), tuple(labels)), daemon=True)
    worker.start()
    theirs.close()

    def run(image: np.ndarray) -> Detections:
        try:
            ours.send(np.ascontiguousarray(image))
            if not ours.poll(ANSWER_S):
                worker.kill()
                raise MediaPipeFailed(f"MediaPipe's ObjectDetector did not answer in {ANSWER_S} s")
            boxes, classes, scores = ours.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            worker.join(5)
            raise MediaPipeFailed(
                f"MediaPipe's ObjectDetector crashed on this model (exit {worker.exitcode})"
            ) from None
        # With score_threshold 0 MediaPipe returns every slot the model filled: a full list,
        # whose lowest score is the cut (train/verify.py: ties at the cut are not misses).
        return Detections.of(boxes, classes, scores, count=len(scores))

    def close() -> None:
        ours.close()
        worker.join(10)
        if worker.is_alive():
            worker.kill()

    run.close = close
    return run


class MediaPipeFailed(RuntimeError):
    """MediaPipe crashed or hung on the model (not a disagreement with the checkpoint)."""


ANSWER_S = 120  # one image; MediaPipe's first call builds its graph (~1 s)


def _serve(connection, model: bytes, labels: tuple[str, ...]) -> None:
    """The MediaPipe process: one detector, an image in, (boxes, classes, scores) out."""
    import faulthandler
    import sys

    # MediaPipe imports TensorFlow only to decorate its docs (tasks/python/core/
    # optional_dependencies.py, which falls back when it is missing): refusing it here makes
    # this process start in ~0.8 s instead of ~5 s.
    sys.modules["tensorflow"] = None
    import mediapipe
    from mediapipe.tasks.python import core, vision

    faulthandler.enable()  # a MediaPipe crash leaves its stack in the finish log
    options = vision.ObjectDetectorOptions(
        base_options=core.base_options.BaseOptions(model_asset_buffer=model),
        max_results=-1,
        score_threshold=0.0,  # everything, as the checkpoint's reference gives everything
    )
    found = vision.ObjectDetector.create_from_options(options)
    ids = {name: n + 1 for n, name in enumerate(labels)}
    while True:
        try:
            image = connection.recv()
        except EOFError:
            return
        height, width = image.shape[:2]
        picture = mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB, data=image)
        boxes, classes, scores = [], [], []
        for detection in found.detect(picture).detections:
            box = detection.bounding_box
            corners = (
                box.origin_y / height,
                box.origin_x / width,
                (box.origin_y + box.height) / height,
                (box.origin_x + box.width) / width,
            )
            for category in detection.categories:  # one per class the model gave this box
                boxes.append(corners)
                classes.append(ids.get(category.category_name, (category.index or 0) + 1))
                scores.append(category.score)
        connection.send(
            (np.clip(np.reshape(boxes, (-1, 4)), 0.0, 1.0), np.asarray(classes), np.asarray(scores))
        )
