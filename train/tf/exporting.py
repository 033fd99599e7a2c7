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

import copy
import os

import numpy as np
import tensorflow as tf

from train.verify import Detections


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

    @tf.function
    def detect(image):
        images, shapes = model.preprocess(tf.cast(image, tf.float32)[tf.newaxis])
        return model.postprocess(model.predict(images, shapes), shapes), images

    def run(image: np.ndarray):
        detections, preprocessed = detect(tf.constant(image))
        status.assert_existing_objects_matched()
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


def export_saved_model(pipeline, pinned: str, out: str, input_type: str) -> str:
    """The OD API's SavedModel export (its layout: checkpoint/, saved_model/, pipeline.config)."""
    from object_detection import exporter_lib_v2

    exporter_lib_v2.export_inference_graph(input_type, copy.deepcopy(pipeline), pinned, out)
    return os.path.join(out, "saved_model")


def saved_model_fn(path: str, input_type: str):
    """Runs the exported SavedModel's serving signature on one uint8 image."""
    loaded = tf.saved_model.load(path)
    serve = loaded.signatures["serving_default"]

    def run(image: np.ndarray) -> Detections:
        if input_type == "encoded_image_string_tensor":
            batch = tf.constant([tf.io.encode_png(image).numpy()])
        elif input_type == "float_image_tensor":
            batch = tf.constant(image[np.newaxis].astype(np.float32))
        else:
            batch = tf.constant(image[np.newaxis])
        out = serve(batch)
        return Detections.of(
            out["detection_boxes"][0].numpy(),
            out["detection_classes"][0].numpy(),
            out["detection_scores"][0].numpy(),
            int(out["num_detections"][0]),
        )

    run.keep = loaded  # the signature needs its module alive
    return run


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


def model_resize(pipeline):
    """The model's own resize of one image (float32 [1, h, w, 3]), as its preprocess does it.

    The OD API's fixed_shape_resizer is TF1's bilinear (align_corners=False, no half-pixel
    centres): a TF2 `tf.image.resize` gives other pixels, and a CenterNet fed those moves its
    boxes by ~0.02 of the image. What a TFLite CenterNet is fed must be resized this way.
    """
    from object_detection.builders import image_resizer_builder

    arch = pipeline.model.WhichOneof("model")
    resize = image_resizer_builder.build(getattr(pipeline.model, arch).image_resizer)

    def run(image: np.ndarray) -> np.ndarray:
        return resize(tf.cast(tf.constant(image), tf.float32))[0].numpy()[np.newaxis]

    return run


def tflite_fn(model_bytes: bytes, arch: str, resize):
    """Runs a TFLite detector on one image.

    SSD takes the preprocessed image (the model's preprocess is not part of it), CenterNet
    the raw pixels resized by `resize` (model_resize).
    """
    interpreter = tf.lite.Interpreter(model_content=model_bytes, num_threads=1)
    interpreter.allocate_tensors()
    (given,) = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    height, width = int(given["shape"][1]), int(given["shape"][2])

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

    def run(image: np.ndarray, preprocessed: np.ndarray) -> Detections:
        if arch == "ssd":
            feed = preprocessed.astype(np.float32)
        else:
            feed = resize(image)
        interpreter.set_tensor(given["index"], feed)
        interpreter.invoke()
        count, scores, classes, boxes = (
            interpreter.get_tensor(by_name[k]) for k in ("0", "1", "2", "3")
        )
        # TFLite's detection op does not clip boxes to the image as the checkpoint's
        # postprocess does; an app clips them (README), so does the comparison.
        boxes = np.clip(boxes[0], 0.0, 1.0)
        return Detections.of(boxes, classes[0] + 1, scores[0], int(count.reshape(-1)[0]))

    return run, (height, width)


def class_names(label_map: str | None, num_classes: int) -> list[str]:
    """Class names by 0-based index (TFLite's class outputs), `class_N` where the map has none."""
    names = {}
    if label_map:
        from train.pipeline import labelmap

        names = dict(labelmap.load(label_map).items)
    return [names.get(i, f"class_{i}") for i in range(1, num_classes + 1)]
