"""The final evaluation's ground truth and detections, as the OD API's COCO evaluator gets them.

The plots, the recommended score threshold and the contact sheet are computed from exactly
what the evaluation scored (no second inference pass, no second decoder): while
`eval_continuously` runs, `capture()` records each image's arguments to
`CocoDetectionEvaluator.add_single_ground_truth_image_info` and
`add_single_detected_image_info` (boxes in the original image's pixels, classes 1-based).
The evaluator keeps the first of a repeated image id and so does the capture.

An image's id there is the OD API's hash of its `image/source_id`
(`inputs.HASH_KEY`: `string_to_hash_bucket_fast(source_id, HASH_BINS)`); `source_hash`
computes the same number, to find an image's pixels in the records again.
"""

from __future__ import annotations

import contextlib

import numpy as np
import tensorflow as tf

from train.evalcurves import ImageResult


@contextlib.contextmanager
def capture():
    """Yields a list that fills with one ImageResult per evaluated image, in eval order."""
    from object_detection.metrics import coco_evaluation

    evaluator = coco_evaluation.CocoDetectionEvaluator
    add_gt, add_detected = (
        evaluator.add_single_ground_truth_image_info,
        evaluator.add_single_detected_image_info,
    )
    truth: dict[str, tuple] = {}
    found: list[ImageResult] = []
    scored: set[str] = set()

    def ground_truth(self, image_id, groundtruth_dict):
        key = _key(image_id)
        if key not in truth:
            truth[key] = (
                np.asarray(groundtruth_dict["groundtruth_boxes"]),
                np.asarray(groundtruth_dict["groundtruth_classes"]),
            )
        return add_gt(self, image_id, groundtruth_dict)

    def detected(self, image_id, detections_dict):
        key = _key(image_id)
        if key in truth and key not in scored:
            scored.add(key)
            boxes, classes = truth[key]
            found.append(
                ImageResult.of(
                    key,
                    boxes,
                    classes,
                    np.asarray(detections_dict["detection_boxes"]),
                    np.asarray(detections_dict["detection_scores"]),
                    np.asarray(detections_dict["detection_classes"]),
                )
            )
        return add_detected(self, image_id, detections_dict)

    evaluator.add_single_ground_truth_image_info = ground_truth
    evaluator.add_single_detected_image_info = detected
    try:
        yield found
    finally:
        evaluator.add_single_ground_truth_image_info = add_gt
        evaluator.add_single_detected_image_info = add_detected


def _key(image_id) -> str:
    if isinstance(image_id, bytes | np.bytes_):
        return image_id.decode("utf-8", "replace")
    if isinstance(image_id, np.ndarray):
        image_id = image_id.item()
    return str(image_id)


def source_hash(source_id: bytes) -> str:
    """The evaluation's image id of a record with this `image/source_id`, as a key."""
    from object_detection import inputs

    bucket = tf.strings.to_hash_bucket_fast(source_id, inputs.HASH_BINS)
    return str(int(tf.cast(bucket, tf.int32)))


def images_by_key(paths, keys: set[str]) -> dict[str, np.ndarray]:
    """Decoded RGB pixels of the records whose evaluation key is in `keys`.

    A scan of the records in order that stops once all are found.
    """
    found: dict[str, np.ndarray] = {}
    for path in paths:
        for record in tf.data.TFRecordDataset(path):
            example = tf.train.Example.FromString(record.numpy())
            feature = example.features.feature
            source = feature["image/source_id"].bytes_list.value[:1]
            key = source_hash(source[0] if source else b"")
            if key in keys and key not in found:
                encoded = feature["image/encoded"].bytes_list.value[0]
                found[key] = tf.io.decode_image(
                    encoded, channels=3, expand_animations=False
                ).numpy()
                if len(found) == len(keys):
                    return found
    return found
