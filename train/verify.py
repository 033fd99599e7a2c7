"""Does an exported model detect what its checkpoint detects? The comparison, TF-free.

The export child (train/tf/finish.py) runs the checkpoint in-process and every exported model
on the same images, and hands both sets of detections here. For each image the checkpoint's
top detections are matched to the exported model's (same class, IoU >= MATCH_IOU or every
coordinate within the format's box tolerance); the figures are the share matched and, over
the matched pairs, the largest |difference| of a box coordinate and of a score. An exported
model passes when both stay within its format's tolerance (TOLERANCES: float32 conversions
agree to rounding; float16 and int8 weights move boxes and scores by more, and int8 may lose
a borderline detection).

Written here because no maintained library compares two detectors' outputs: COCO tooling
(pycocotools) scores detections against ground truth, not against each other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

# Each format's tolerances are in its row of the export table.
from train.exportformats import TOLERANCES, Tolerance  # noqa: F401 - read here by their users

MATCH_IOU = 0.9
TOP_K = 10  # the checkpoint's detections compared per image (by score)
MIN_SCORE = 0.0


@dataclasses.dataclass(frozen=True)
class Detections:
    """One image's detections, sorted by score (highest first).

    Boxes [N, 4] are (ymin, xmin, ymax, xmax), normalized; classes [N] are 1-based.
    """

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    full: bool = False  # every output slot is used: lower-scored detections were cut off

    @classmethod
    def of(cls, boxes, classes, scores, count: int | None = None) -> Detections:
        """Sorted detections from model outputs (any array-likes), the first `count` valid."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        classes = np.rint(np.asarray(classes, dtype=np.float64).reshape(-1)).astype(np.int64)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        slots = min(len(boxes), len(classes), len(scores))
        n = slots if count is None else min(slots, int(count))
        order = np.argsort(-scores[:n], kind="stable")
        full = count is not None and n == slots
        return cls(boxes[:n][order], classes[:n][order], scores[:n][order], full)


@dataclasses.dataclass(frozen=True)
class Staged:
    """A model on one uint8 RGB picture, as its two halves; calling it runs both.

    `prepare` makes the model's input from the picture (the resize and normalisation an app
    does for a TFLite file, the float batch an ONNX file takes): pure, any thread. `infer`
    runs the model on that input and returns Detections. train.predict prepares pictures on
    its decoding threads, so the thread that runs the model does nothing else: a TFLite
    model's ~1 ms of resizing in TF eager ops, with the GIL handed to the drawing thread at
    each op, cost up to a quarter of its pictures/s (scripts/bench_predict.py).
    """

    prepare: Callable
    infer: Callable
    keep: object = None  # what the halves need alive (a loaded SavedModel)

    def __call__(self, image: np.ndarray) -> Detections:  # noqa: D102
        return self.infer(self.prepare(image))


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box with each of `boxes` (ymin, xmin, ymax, xmax)."""
    if len(boxes) == 0:
        return np.zeros(0)
    y0 = np.maximum(box[0], boxes[:, 0])
    x0 = np.maximum(box[1], boxes[:, 1])
    y1 = np.minimum(box[2], boxes[:, 2])
    x1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(y1 - y0, 0, None) * np.clip(x1 - x0, 0, None)

    def area(b):
        return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)

    union = area(box) + area(boxes) - inter
    # A degenerate (zero-area) box has no IoU with anything, not even itself; an untrained
    # CenterNet emits such boxes, and the same box in both outputs is still the same detection.
    same = np.max(np.abs(boxes - box), axis=1) <= 1e-4
    return np.where(union > 0, inter / np.where(union > 0, union, 1), same.astype(float))


def _lookup(source: Detections, target: Detections, tolerance: Tolerance):
    """Yields (box, score, twin) for each of source's top detections.

    `twin` is target's index of the same class at IoU >= MATCH_IOU or with every coordinate
    within the box tolerance (the closest score), -1 when there is none, None when there is
    none but the detection is "at the cut" (see Comparison). The second way matters for small
    boxes: a runtime that returns whole pixels (MediaPipe) moves a 6-pixel box's edges by up
    to a pixel, well within the tolerance, and its IoU to below 0.8.
    """
    score_tolerance = tolerance.max_score_delta
    cut = target.scores.min() if target.full and len(target.scores) else -np.inf
    taken = np.zeros(len(target.scores), dtype=bool)
    for box, cls, score in zip(
        source.boxes[:TOP_K], source.classes[:TOP_K], source.scores[:TOP_K], strict=True
    ):
        near = np.max(np.abs(target.boxes - box), axis=1) <= tolerance.max_box_delta
        close = (iou(box, target.boxes) >= MATCH_IOU) | near
        candidates = (target.classes == cls) & close & ~taken
        if candidates.any():
            twin = int(np.argmin(np.where(candidates, np.abs(target.scores - score), np.inf)))
            taken[twin] = True
            yield box, score, twin
        elif score <= cut + score_tolerance:
            yield box, score, None
        else:
            yield box, score, -1


@dataclasses.dataclass
class Comparison:
    """The running figures over all images of one format.

    When the exported model used all its output slots, a checkpoint detection whose score is
    within the tolerance of the exported model's lowest returned score is "at the cut":
    rounding may rank it just out of the exported model's list (a barely trained model scores
    thousands of boxes alike), so it counts only when it is found. When every detection is at
    the cut, `compared` stays 0 and the verification is inconclusive, never a pass by default.
    """

    tolerance: Tolerance
    compared: int = 0  # checkpoint detections compared
    at_cut: int = 0  # ... not found, but within the score tolerance of the exported cut-off
    extra_compared: int = 0  # the export's top detections looked up in the checkpoint's
    extra: int = 0  # ... of which the checkpoint has none
    matched: int = 0
    max_box_delta: float = 0.0
    max_score_delta: float = 0.0

    def add(self, reference: Detections, exported: Detections) -> None:
        """Compares one image both ways.

        The checkpoint's top detections are looked up in the export's (matched, deltas), and
        the export's top detections in the checkpoint's: an export that invents boxes the
        checkpoint does not have fails too.
        """
        for box, score, twin in _lookup(reference, exported, self.tolerance):
            if twin is None:
                self.at_cut += 1
            elif twin < 0:
                self.compared += 1
            else:
                self.compared += 1
                self.matched += 1
                self.max_box_delta = max(
                    self.max_box_delta, float(np.max(np.abs(exported.boxes[twin] - box)))
                )
                self.max_score_delta = max(
                    self.max_score_delta, float(abs(exported.scores[twin] - score))
                )
        for _, _, twin in _lookup(exported, reference, self.tolerance):
            if twin is not None:
                self.extra_compared += 1
                self.extra += twin < 0

    @property
    def matched_share(self) -> float:  # noqa: D102
        return self.matched / self.compared if self.compared else 1.0

    @property
    def conclusive(self) -> bool:  # noqa: D102
        return self.compared > 0 or self.extra > 0

    def problem(self) -> str | None:
        """Why the exported model fails its tolerance (None: it passes or is inconclusive)."""
        tolerance = self.tolerance
        problems = []
        if self.matched_share < tolerance.min_matched:
            problems.append(
                f"only {self.matched}/{self.compared} of the checkpoint's detections found "
                f"(needs {tolerance.min_matched:.0%})"
            )
        if self.extra_compared and self.extra / self.extra_compared > 1 - tolerance.min_matched:
            problems.append(
                f"{self.extra}/{self.extra_compared} of the export's top detections are not "
                "the checkpoint's"
            )
        if self.max_box_delta > tolerance.max_box_delta:
            problems.append(
                f"boxes differ by up to {self.max_box_delta:.3g} (tolerance "
                f"{tolerance.max_box_delta:g})"
            )
        if self.max_score_delta > tolerance.max_score_delta:
            problems.append(
                f"scores differ by up to {self.max_score_delta:.3g} (tolerance "
                f"{tolerance.max_score_delta:g})"
            )
        return "; ".join(problems) or None

    def as_dict(self) -> dict:  # noqa: D102
        return {
            "compared": self.compared,
            "at_cut": self.at_cut,
            "extra": self.extra,
            "matched": self.matched,
            "matched_share": round(self.matched_share, 4),
            "max_box_delta": self.max_box_delta,
            "max_score_delta": self.max_score_delta,
        }
