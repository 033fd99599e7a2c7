"""What the final evaluation's detections say beyond mAP: PR curves, confusion, F1 by threshold.

Pure numpy over one `EvalSet`: the ground truth and detections of every eval image, exactly as
the OD API's COCO evaluator received them in the final evaluation (train/tf/finish.py records
them beside it; no second inference pass). Matching follows pycocotools at one IoU, so a
class's AP here is the COCO evaluator's AP@.5 for that class (all areas, 100 detections per
image and class, no crowd boxes):

- per class, an image's detections in descending score take the unmatched ground-truth box of
  the class they overlap most (IoU >= the threshold); the rest are false positives;
- precision is made non-increasing from the right and read at 101 recall points (COCO's AP).

The confusion matrix is the one people read for "what is mistaken for what": at a score
threshold, each image's kept detections and ground-truth boxes of any class are paired
one-to-one by descending IoU (>= the threshold); a pair counts at [true class, predicted
class], an unpaired ground-truth box at [class, background] (missed), an unpaired detection
at [background, class] (a false detection).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

IOU = 0.5
MAX_DETECTIONS = 100  # per image and class, as COCO's AP@100
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)
# The recommended threshold is chosen from here: at 0 every detection is kept (100 an image),
# which a model that has learned little "prefers" by F1 and nobody wants as a default.
RECOMMENDED_RANGE = (0.05, 0.95)
FORMAT = 1  # of the detections file
# Where a run keeps them (model_dir/plots/): one owner for the writer and the readers
# (train/tf/runviews.py writes; train.predict and train/runreport.py read).
PLOTS_DIR = "plots"
CURVES_FILE = "curves.json"  # summary(): AP@.5 per class, the recommended threshold
DETECTIONS_FILE = "detections.json"  # the EvalSet
TRAINING_CURVES_FILE = "training_curves.png"  # drawn at the run's end, or by train.report


@dataclass(frozen=True)
class ImageResult:
    """One eval image: ground truth and detections in the same box units, classes 1-based."""

    key: str
    gt_boxes: np.ndarray  # [N, 4] ymin, xmin, ymax, xmax
    gt_classes: np.ndarray  # [N]
    boxes: np.ndarray  # [M, 4]
    scores: np.ndarray  # [M]
    classes: np.ndarray  # [M]

    @classmethod
    def of(cls, key, gt_boxes, gt_classes, boxes, scores, classes) -> ImageResult:  # noqa: D102
        def array(values, dtype, shape):
            return np.asarray(values, dtype=dtype).reshape(shape)

        return cls(
            str(key),
            array(gt_boxes, np.float64, (-1, 4)),
            array(gt_classes, np.int64, (-1,)),
            array(boxes, np.float64, (-1, 4)),
            array(scores, np.float64, (-1,)),
            array(classes, np.int64, (-1,)),
        )


@dataclass(frozen=True)
class EvalSet:
    """Every eval image's result, and the class names (id -> name)."""

    images: tuple[ImageResult, ...]
    names: dict[int, str] = field(default_factory=dict)

    def write(self, path: str) -> None:
        """As JSON (lists of floats), written and read only by this class."""
        from train import files

        payload = {
            "format": FORMAT,
            "names": {str(k): v for k, v in self.names.items()},
            "images": [
                {
                    "key": image.key,
                    "groundtruth": {
                        "boxes": image.gt_boxes.tolist(),
                        "classes": image.gt_classes.tolist(),
                    },
                    "detections": {
                        "boxes": image.boxes.tolist(),
                        "scores": image.scores.tolist(),
                        "classes": image.classes.tolist(),
                    },
                }
                for image in self.images
            ],
        }
        files.write_atomic(path, json.dumps(payload))

    @classmethod
    def read(cls, path: str) -> EvalSet:  # noqa: D102
        with open(path, encoding="utf-8") as f:
            payload = json.load(f)
        if payload.get("format") != FORMAT:
            raise ValueError(f"{path}: detections file format {payload.get('format')}")
        images = tuple(
            ImageResult.of(
                item["key"],
                item["groundtruth"]["boxes"],
                item["groundtruth"]["classes"],
                item["detections"]["boxes"],
                item["detections"]["scores"],
                item["detections"]["classes"],
            )
            for item in payload["images"]
        )
        return cls(images, {int(k): v for k, v in payload["names"].items()})

    def class_ids(self) -> list[int]:
        """The named classes, and any other that occurs in the data, in order."""
        seen = set(self.names)
        for image in self.images:
            seen.update(int(c) for c in image.gt_classes)
            seen.update(int(c) for c in image.classes)
        return sorted(seen)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] intersection over union of (ymin, xmin, ymax, xmax) boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    top = np.maximum(a[:, None, 0], b[None, :, 0])
    left = np.maximum(a[:, None, 1], b[None, :, 1])
    bottom = np.minimum(a[:, None, 2], b[None, :, 2])
    right = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _match_class(image: ImageResult, cls: int, threshold: float):
    """This class's detections of one image: (scores, true-positive flags), and its GT count."""
    gt = image.gt_boxes[image.gt_classes == cls]
    mine = np.flatnonzero(image.classes == cls)
    order = mine[np.argsort(-image.scores[mine], kind="stable")][:MAX_DETECTIONS]
    overlaps = iou(image.boxes[order], gt)
    taken = np.zeros(len(gt), bool)
    hits = np.zeros(len(order), bool)
    for d in range(len(order)):
        candidates = np.where(taken, -1.0, overlaps[d]) if len(gt) else np.zeros(0)
        if len(candidates) and candidates.max() >= threshold:
            best = int(np.argmax(candidates))
            taken[best] = hits[d] = True
    return image.scores[order], hits, len(gt)


@dataclass(frozen=True)
class ClassCurve:
    """One class's detections over the whole set, in descending score, and its GT count."""

    scores: np.ndarray
    hits: np.ndarray
    positives: int

    def precision_recall(self) -> tuple[np.ndarray, np.ndarray]:
        """Precision and recall after each detection (descending score)."""
        tp = np.cumsum(self.hits)
        fp = np.cumsum(~self.hits)
        precision = tp / np.maximum(tp + fp, 1)
        recall = tp / self.positives if self.positives else np.zeros(len(tp))
        return precision, recall

    def average_precision(self) -> float | None:
        """COCO's 101-point interpolated AP; None without ground truth (COCO's -1)."""
        if not self.positives:
            return None
        precision, recall = self.precision_recall()
        envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        at = np.searchsorted(recall, RECALL_POINTS, side="left")
        read = np.array([envelope[i] if i < len(envelope) else 0.0 for i in at])
        return float(read.mean())

    def counts_at(self, thresholds=THRESHOLDS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """True positives, false positives, missed boxes keeping detections >= each threshold."""
        kept = self.scores[None, :] >= np.asarray(thresholds)[:, None]
        tp = (kept & self.hits[None, :]).sum(axis=1)
        fp = (kept & ~self.hits[None, :]).sum(axis=1)
        return tp, fp, self.positives - tp


def coco_order(image: ImageResult) -> tuple:
    """The order pycocotools takes images in: by id (the OD API's are source-id hashes).

    Equal scores rank in this order, which decides the AP among a weak model's ties.
    """
    key = image.key
    return (0, int(key), "") if key.lstrip("-").isdigit() else (1, 0, key)


def class_curves(evalset: EvalSet, threshold: float = IOU) -> dict[int, ClassCurve]:
    """Every class's curve, matched per image as COCO does at one IoU."""
    curves = {}
    ordered = sorted(evalset.images, key=coco_order)
    for cls in evalset.class_ids():
        scores, hits, positives = [], [], 0
        for image in ordered:
            s, h, n = _match_class(image, cls, threshold)
            scores.append(s)
            hits.append(h)
            positives += n
        scores, hits = np.concatenate(scores), np.concatenate(hits)
        order = np.argsort(-scores, kind="stable")
        curves[cls] = ClassCurve(scores[order], hits[order], positives)
    return curves


def f1(tp, fp, fn) -> np.ndarray:
    """F1 from counts (0 where there is nothing to score)."""
    tp, fp, fn = (np.asarray(v, np.float64) for v in (tp, fp, fn))
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1), 0.0)


def f1_by_threshold(curves: dict[int, ClassCurve], thresholds=THRESHOLDS) -> dict:
    """F1 at each score threshold: per class, and overall (counts summed over classes)."""
    per_class, totals = {}, np.zeros((3, len(thresholds)))
    for cls, curve in curves.items():
        counts = np.array(curve.counts_at(thresholds), np.float64)
        per_class[cls] = f1(*counts)
        totals += counts
    return {"thresholds": np.asarray(thresholds), "per_class": per_class, "overall": f1(*totals)}


def best_threshold(by_threshold: dict) -> tuple[float, float]:
    """(threshold, F1) where the overall F1 is highest: the middle of its highest stretch.

    Only thresholds within RECOMMENDED_RANGE are candidates.

    With well-separated scores F1 is flat over a range of thresholds; its middle leaves the
    most room either way on new pictures (the first of them would keep the weakest
    detections the set happened not to contain).
    """
    thresholds = by_threshold["thresholds"]
    low, high = RECOMMENDED_RANGE
    allowed = (thresholds >= low - 1e-9) & (thresholds <= high + 1e-9)
    overall = np.where(allowed, by_threshold["overall"], -1.0)
    best = np.flatnonzero(overall >= overall.max() - 1e-12)
    # the longest run of consecutive best thresholds, then its middle
    runs = np.split(best, np.flatnonzero(np.diff(best) > 1) + 1)
    longest = max(runs, key=len)
    middle = int(longest[(len(longest) - 1) // 2])
    return float(by_threshold["thresholds"][middle]), float(overall[middle])


def confusion(evalset: EvalSet, score: float, threshold: float = IOU) -> np.ndarray:
    """[C + 1, C + 1] counts, rows true class, columns predicted, the last one background.

    Classes are `evalset.class_ids()` in order.
    """
    ids = evalset.class_ids()
    index = {cls: i for i, cls in enumerate(ids)}
    background = len(ids)
    matrix = np.zeros((background + 1, background + 1), np.int64)
    for image in evalset.images:
        kept = np.flatnonzero(image.scores >= score)
        overlaps = iou(image.gt_boxes, image.boxes[kept])
        pairs = np.argwhere(overlaps >= threshold)
        pairs = pairs[np.argsort(-overlaps[pairs[:, 0], pairs[:, 1]], kind="stable")]
        gt_done, det_done = set(), set()
        for g, d in pairs:
            if g in gt_done or d in det_done:
                continue
            gt_done.add(g)
            det_done.add(d)
            matrix[index[int(image.gt_classes[g])], index[int(image.classes[kept[d]])]] += 1
        for g in set(range(len(image.gt_classes))) - gt_done:
            matrix[index[int(image.gt_classes[g])], background] += 1
        for d in set(range(len(kept))) - det_done:
            matrix[background, index[int(image.classes[kept[d]])]] += 1
    return matrix


def image_errors(image: ImageResult, score: float, threshold: float = IOU) -> tuple[int, int]:
    """(missed ground-truth boxes, false detections) of one image at a score threshold.

    A detection of the wrong class over an object is both: the object is missed and the
    detection is false (what the contact sheet sorts by).
    """
    missed = false = 0
    for cls in set(image.gt_classes.tolist()) | set(image.classes.tolist()):
        scores, hits, positives = _match_class(image, cls, threshold)
        kept = scores >= score
        missed += positives - int((hits & kept).sum())
        false += int((~hits & kept).sum())
    return missed, false


def summary(evalset: EvalSet) -> dict:
    """What the run report and the end of a run print: AP@.5 per class, the F1 threshold."""
    curves = class_curves(evalset)
    by_threshold = f1_by_threshold(curves)
    threshold, best_f1 = best_threshold(by_threshold)
    names = evalset.names
    return {
        "iou": IOU,
        "ap50": {names.get(c, str(c)): curves[c].average_precision() for c in curves},
        "threshold": threshold,
        "f1": round(best_f1, 4),
        "images": len(evalset.images),
    }
