"""Export one pinned checkpoint with the OD API's own exporters, and run what was exported.

`exporter_lib_v2.export_inference_graph` (SavedModel) and
`export_tflite_graph_lib_tf2.export_tflite_model` (the TFLite-ready SavedModel, then
`tf.lite.TFLiteConverter`) both restore "whatever the `checkpoint` state file of a folder
says" (CheckpointManager.latest_checkpoint): that is how users end up exporting ckpt-0 or a
stale step. `pinned_folder` gives them a folder whose state file names exactly the checkpoint
asked for, and the restored prefix is checked against it.

The `run_*` functions give each model's detections on one uint8 image in one form
(train.verify.Detections, 1-based classes), so the checkpoint and every export are compared
on equal terms.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import os

import numpy as np
import tensorflow as tf

from train.verify import Detections, Staged


def record_images(paths, count: int) -> list[np.ndarray]:
    """Up to `count` decoded RGB uint8 images from TFRecord files, in file order."""
    images = []
    for path in paths:
        for record in tf.data.TFRecordDataset(path):
            example = tf.train.Example.FromString(record.numpy())
            encoded = example.features.feature["image/encoded"].bytes_list.value[0]
            images.append(tf.io.decode_image(encoded, channels=3, expand_animations=False).numpy())
            if len(images) >= count:
                return images
    return images


def pinned_folder(prefix: str, folder: str) -> str:
    """A folder whose `checkpoint` state file names `prefix` (absolute) and nothing else."""
    prefix = os.path.abspath(prefix)
    os.makedirs(folder, exist_ok=True)
    tf.compat.v1.train.update_checkpoint_state(folder, prefix, all_model_checkpoint_paths=[prefix])
    found = tf.train.latest_checkpoint(folder)
    if found != prefix:
        raise RuntimeError(f"could not pin {prefix}: the state file in {folder} gives {found}")
    return folder


def build_restored(pipeline, prefix: str):
    """The inference model of `pipeline` with `prefix`'s weights (as the exporters build it)."""
    from object_detection.builders import model_builder

    model = model_builder.build(pipeline.model, is_training=False)
    status = tf.train.Checkpoint(model=model).restore(prefix).expect_partial()
    return model, status


def reference_fn(pipeline, prefix: str):
    """The checkpoint's own detections: preprocess, predict, postprocess, in-process."""
    model, status = build_restored(pipeline, prefix)

    # One trace for every picture size (train.predict reads folders of mixed sizes), as the
    # exporter's own signature is [1, None, None, 3].
    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    def detect(image):
        images, shapes = model.preprocess(tf.cast(image, tf.float32)[tf.newaxis])
        return model.postprocess(model.predict(images, shapes), shapes), images

    checked = []

    def run(image: np.ndarray):
        detections, preprocessed = detect(tf.constant(image))
        if not checked:  # the first call made every variable, so each is restored or not now
            # Once: the check walks the whole object graph (~30 ms for the demo's SSD, where
            # the model takes ~18 ms), and train.predict calls this for every picture.
            status.assert_existing_objects_matched()
            checked.append(True)
        n = int(detections["num_detections"][0])
        return (
            Detections.of(
                detections["detection_boxes"][0].numpy(),
                detections["detection_classes"][0].numpy() + 1,
                detections["detection_scores"][0].numpy(),
                n,
            ),
            preprocessed.numpy(),
        )

    return run


def without_layer_traces():
    """A scope in which `tf.saved_model.save` leaves out every Keras layer's traced calls.

    Saving a module that holds Keras layers also traces each layer's call functions for
    `keras.models.load_model` (Keras' `save_traces`, on by default); the OD API's exporters
    save a module whose served function and signature are all anyone loads
    (`tf.saved_model.load`, TF Serving, TFLiteConverter, tf2onnx), and those traces were a
    third of the export: SSD MobileNetV2 at 128 px 34.6 -> 22.2 s, loading 6.9 -> 2.0 s, the
    same detections. The switch is Keras 2's own (`save_traces=False` of `model.save`), in
    the package `tf.keras` is (`keras` on TF 2.15, `tf_keras` from 2.16); where it is not
    there, the save is the default one.
    """
    package = tf.keras.layers.Layer.__module__.split(".")[0]
    try:
        utils = importlib.import_module(f"{package}.src.saving.legacy.saved_model.utils")
        return utils.keras_option_scope(save_traces=False, in_tf_saved_model_scope=True)
    except (ImportError, AttributeError):
        return contextlib.nullcontext()


def export_saved_model(pipeline, pinned: str, out: str, input_type: str) -> str:
    """The OD API's SavedModel export (its layout: checkpoint/, saved_model/, pipeline.config)."""
    from object_detection import exporter_lib_v2

    with without_layer_traces():
        exporter_lib_v2.export_inference_graph(input_type, copy.deepcopy(pipeline), pinned, out)
    return os.path.join(out, "saved_model")


def saved_model_fn(path: str, input_type: str | None = None):
    """Runs the exported SavedModel's serving signature on one uint8 image.

    `input_type` None reads it off the signature (uint8: image_tensor, float32:
    float_image_tensor, string: encoded_image_string_tensor), as train.predict needs.
    """
    loaded = tf.saved_model.load(path)
    serve = loaded.signatures["serving_default"]
    if input_type is None:
        (spec,) = serve.structured_input_signature[1].values()
        input_type = {tf.uint8: "image_tensor", tf.float32: "float_image_tensor"}.get(
            spec.dtype, "encoded_image_string_tensor"
        )

    def prepare(image: np.ndarray):
        if input_type == "encoded_image_string_tensor":
            return tf.constant([tf.io.encode_png(image).numpy()])
        if input_type == "float_image_tensor":
            return tf.constant(image[np.newaxis].astype(np.float32))
        return tf.constant(image[np.newaxis])

    def infer(batch) -> Detections:
        out = serve(batch)
        return Detections.of(
            out["detection_boxes"][0].numpy(),
            out["detection_classes"][0].numpy(),
            out["detection_scores"][0].numpy(),
            int(out["num_detections"][0]),
        )

    return Staged(prepare, infer, keep=loaded)  # the signature needs its module alive


def max_detections(pipeline) -> int:
    """The detections a TFLite model returns: the config's own cap."""
    arch = pipeline.model.WhichOneof("model")
    if arch == "ssd":
        nms = pipeline.model.ssd.post_processing.batch_non_max_suppression
        return nms.max_total_detections or 100
    return pipeline.model.center_net.object_center_params.max_box_predictions or 100


def export_tflite(pipeline, pinned: str, work: str, quantize: str, representative) -> bytes:
    """The OD API's TFLite-ready SavedModel, converted by TFLiteConverter; the model bytes.

    `representative()` yields [input] lists for int8 calibration (the model's own input).
    Regular (per-class) NMS is used for SSD so the TFLite model keeps the checkpoint's
    multi-class detections.
    """
    from object_detection import export_tflite_graph_lib_tf2

    with without_layer_traces():
        export_tflite_graph_lib_tf2.export_tflite_model(
            copy.deepcopy(pipeline), pinned, work, max_detections(pipeline), use_regular_nms=True
        )
    converter = tf.lite.TFLiteConverter.from_saved_model(os.path.join(work, "saved_model"))
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
    return converter.convert()


def resize_like_the_model(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """One image resized as the OD API's fixed_shape_resizer does: float32 [1, h, w, 3].

    That resizer is TF1's bilinear (align_corners=False, no half-pixel centres): a TF2
    `tf.image.resize` gives other pixels, and a CenterNet fed those moves its boxes by ~0.02
    of the image. Everything that feeds a TFLite model (the verification, int8 calibration,
    train.predict) resizes through here.
    """
    if tuple(image.shape[:2]) == (height, width):
        return image[np.newaxis].astype(np.float32)
    # The kernel reads uint8 as it reads float (each pixel cast as it is interpolated): the
    # same output as casting the whole picture first, without a float copy of it. Called as
    # the raw op: tf.compat.v1.image.resize_bilinear is the same kernel, but logs a
    # deprecation warning into train.predict's output.
    pixels = tf.constant(image)[tf.newaxis]
    resized = tf.raw_ops.ResizeBilinear(
        images=pixels, size=(height, width), align_corners=False, half_pixel_centers=False
    )
    return resized.numpy()


def resized_like_this(pipeline) -> tuple[int, int] | None:
    """(height, width) when the model resizes every picture as resize_like_the_model does.

    That is a fixed_shape_resizer, bilinear, in colour: a picture resized here beforehand
    goes through the model's own resize unchanged (same size: scale 1, no interpolation), so
    the model may be fed it. Other resizers (keep_aspect_ratio_resizer pads, grayscale,
    nearest/bicubic/area) give None: their models are fed the whole picture.
    """
    from object_detection.protos import image_resizer_pb2

    from train.pipeline import fields

    resizer = fields.model_message(pipeline).image_resizer
    if resizer.WhichOneof("image_resizer_oneof") != "fixed_shape_resizer":
        return None
    fixed = resizer.fixed_shape_resizer
    if fixed.resize_method != image_resizer_pb2.BILINEAR or fixed.convert_to_grayscale:
        return None
    return fixed.height, fixed.width


def normalization(reference, height: int, width: int) -> tuple[list[float], list[float]]:
    """Per-channel (mean, std) with preprocess(pixel) == (pixel - mean) / std, from `reference`.

    A TFLite SSD takes the preprocessed image (the feature extractor's scaling is not in the
    file), so the app, MediaPipe and train.predict need that scaling as numbers: it is read off
    the checkpoint's own preprocess on flat images (0, 255, and 128 to check it is affine).
    """
    flat = {v: reference(np.full((height, width, 3), v, np.uint8))[1] for v in (0, 128, 255)}
    low, mid, high = (flat[v].reshape(-1, 3).mean(0) for v in (0, 128, 255))
    scale = (high - low) / 255.0
    affine = np.abs(low + 128 * scale - mid) <= 1e-3 * (1 + np.abs(mid))
    if np.any(np.abs(scale) < 1e-12) or not np.all(affine):
        raise RuntimeError("the model's preprocessing is not (pixel - mean) / std per channel")
    return [float(v) for v in -low / scale], [float(v) for v in 1.0 / scale]


def tflite_fn(model_bytes: bytes, mean, std, clip: bool = True):
    """Runs a TFLite detector on one uint8 image: resize like the model, (x - mean) / std.

    SSD's TFLite input is the preprocessed image (`normalization` gives its mean/std), a
    CenterNet's the resized pixels (mean 0, std 1). The same function serves the export's
    verification and train.predict, so what was verified is what predicts. `clip` False
    keeps the boxes as the file gives them (the MediaPipe comparison needs them so).
    """
    interpreter = tf.lite.Interpreter(model_content=model_bytes, num_threads=1)
    interpreter.allocate_tensors()
    (given,) = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    height, width = int(given["shape"][1]), int(given["shape"][2])
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)

    # Both OD API TFLite modules return (boxes, classes, scores, count) reversed, so the
    # converted call's outputs are StatefulPartitionedCall:0 count, :1 scores, :2 classes,
    # :3 boxes; their position in get_output_details() varies with the converter. (Telling
    # them apart by value fails: a saturated model's scores are all 1.0, like class ids.)
    by_name = {o["name"].rsplit(":", 1)[-1]: o["index"] for o in outputs}
    if sorted(by_name) != ["0", "1", "2", "3"]:
        raise RuntimeError(
            f"unexpected TFLite outputs {[o['name'] for o in outputs]} (expected the OD API "
            "exporter's StatefulPartitionedCall:0-3)"
        )

    def prepare(image: np.ndarray) -> np.ndarray:
        # The TFLite model's input is made here, as an app makes it.
        return ((resize_like_the_model(image, height, width) - mean) / std).astype(np.float32)

    def infer(feed: np.ndarray) -> Detections:
        interpreter.set_tensor(given["index"], feed)
        interpreter.invoke()
        count, scores, classes, boxes = (
            interpreter.get_tensor(by_name[k]) for k in ("0", "1", "2", "3")
        )
        # TFLite's detection op does not clip boxes to the image as the checkpoint's
        # postprocess does; an app clips them (README), so does the comparison.
        boxes = np.clip(boxes[0], 0.0, 1.0) if clip else boxes[0]
        return Detections.of(boxes, classes[0] + 1, scores[0], int(count.reshape(-1)[0]))

    return Staged(prepare, infer), (height, width)


def class_names(label_map: str | None, num_classes: int) -> list[str]:
    """Class names by 0-based index (TFLite's class outputs), `class_N` where the map has none."""
    names = {}
    if label_map:
        from train.pipeline import labelmap

        names = dict(labelmap.load(label_map).items)
    return [names.get(i, f"class_{i}") for i in range(1, num_classes + 1)]
