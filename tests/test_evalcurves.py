"""The evaluation's curves on a hand-made detection set with known answers, and COCO's AP."""

from __future__ import annotations

import numpy as np
import pytest

from train import evalcurves
from train.evalcurves import EvalSet, ImageResult

CAT, DOG = 1, 2
A, B, C = [0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]


def _known() -> EvalSet:
    """Three images, worked by hand in the comments of the tests below."""
    return EvalSet(
        (
            # a cat and a dog found; a cat detection over the dog (wrong class)
            ImageResult.of("a", [A, B], [CAT, DOG], [A, B, B], [0.9, 0.8, 0.6], [CAT, DOG, CAT]),
            # a cat found only at 0.3; a confident cat detection on nothing
            ImageResult.of("b", [A], [CAT], [C, A], [0.7, 0.3], [CAT, CAT]),
            # a dog nobody found
            ImageResult.of("c", [A], [DOG], [], [], []),
        ),
        {CAT: "cat", DOG: "dog"},
    )


def test_pr_curves_and_ap_of_the_known_set():
    curves = evalcurves.class_curves(_known())
    cat, dog = curves[CAT], curves[DOG]
    # cat: 0.9 hit, 0.7 false, 0.6 false (on the dog), 0.3 hit; 2 cats
    assert cat.scores.tolist() == [0.9, 0.7, 0.6, 0.3]
    assert cat.hits.tolist() == [True, False, False, True] and cat.positives == 2
    precision, recall = cat.precision_recall()
    assert precision == pytest.approx([1, 1 / 2, 1 / 3, 1 / 2])
    assert recall == pytest.approx([0.5, 0.5, 0.5, 1.0])
    # envelope 1 up to recall 0.5 (51 of 101 points), 0.5 beyond
    assert cat.average_precision() == pytest.approx((51 * 1.0 + 50 * 0.5) / 101)
    # dog: one hit of 2: precision 1 up to recall 0.5, nothing beyond
    assert dog.average_precision() == pytest.approx(51 / 101)
    assert evalcurves.summary(_known())["ap50"] == pytest.approx({"cat": 76 / 101, "dog": 51 / 101})


def test_f1_by_threshold_and_the_recommended_one():
    found = evalcurves.f1_by_threshold(evalcurves.class_curves(_known()))
    at = {round(float(t), 2): i for i, t in enumerate(found["thresholds"])}
    cat, dog, overall = found["per_class"][CAT], found["per_class"][DOG], found["overall"]
    # cat (tp, fp, fn): <=0.3 (2, 2, 0); 0.4 (1, 2, 1); 0.65 (1, 1, 1); 0.75 (1, 0, 1); 0.95 none
    assert [cat[at[t]] for t in (0.3, 0.4, 0.65, 0.75, 0.95)] == pytest.approx(
        [4 / 6, 2 / 5, 2 / 4, 2 / 3, 0.0]
    )
    assert [dog[at[t]] for t in (0.8, 0.81)] == pytest.approx([2 / 3, 0.0])
    # overall: (3, 2, 1) up to 0.3, (2, 2, 2), (2, 1, 2), (2, 0, 2) to 0.8, (1, 0, 3) to 0.9
    assert [overall[at[t]] for t in (0.0, 0.3, 0.31, 0.61, 0.71, 0.8, 0.81, 0.91)] == (
        pytest.approx([6 / 9, 6 / 9, 4 / 8, 4 / 7, 4 / 6, 4 / 6, 2 / 5, 0.0])
    )
    # F1 2/3 on 0.00-0.30 and 0.71-0.80; from 0.05 (the lowest recommended) that is 26
    # thresholds against 10: the middle of the longer
    assert evalcurves.best_threshold(found) == pytest.approx((0.17, 2 / 3))


def test_a_model_that_finds_nothing_is_not_recommended_to_keep_everything():
    # one true box among a hundred weak detections: F1 is highest keeping them all (at 0)
    image = ImageResult.of("x", [A], [CAT], [A] + [C] * 99, [0.011] + [0.0102] * 99, [CAT] * 100)
    found = evalcurves.f1_by_threshold(evalcurves.class_curves(EvalSet((image,), {CAT: "cat"})))
    assert found["overall"][0] == pytest.approx(2 / 101)
    threshold, f1 = evalcurves.best_threshold(found)
    assert threshold >= evalcurves.RECOMMENDED_RANGE[0] and f1 == 0.0


def test_confusion_matrix_with_background_at_a_threshold():
    matrix = evalcurves.confusion(_known(), score=0.5)
    # rows: true cat, dog, background; columns: predicted cat, dog, background (missed)
    assert matrix.tolist() == [
        [1, 0, 1],  # a cat found; the cat found only at 0.3 is missed at 0.5
        [0, 1, 1],  # a dog found; the one on image c missed
        [2, 0, 0],  # false cats: the one over the (already found) dog, the one on nothing
    ]
    assert evalcurves.confusion(_known(), score=0.0)[0].tolist() == [2, 0, 0]


def test_errors_per_image_for_the_contact_sheet():
    images = _known().images
    assert [evalcurves.image_errors(i, 0.5) for i in images] == [(0, 1), (1, 1), (1, 0)]


def test_the_detections_file_round_trips(tmp_path):
    path = str(tmp_path / "detections.json")
    _known().write(path)
    again = EvalSet.read(path)
    assert again.names == {CAT: "cat", DOG: "dog"}
    assert evalcurves.confusion(again, 0.5).tolist() == evalcurves.confusion(_known(), 0.5).tolist()


def _random_set(seed: int) -> EvalSet:
    rng = np.random.default_rng(abs(seed))
    images = []
    for n in range(40):
        gt = rng.uniform(0, 80, (int(rng.integers(0, 5)), 2))
        gt_boxes = np.concatenate([gt, gt + rng.uniform(5, 30, gt.shape)], axis=1)
        gt_classes = rng.integers(1, 4, len(gt_boxes))
        # detections near the ground truth (some with another class), and some anywhere
        near = gt_boxes + rng.normal(0, 3, gt_boxes.shape)
        near[:, 2:] = np.maximum(near[:, 2:], near[:, :2] + 1)  # a detector's boxes are upright
        anywhere = rng.uniform(0, 80, (int(rng.integers(0, 6)), 2))
        far = np.concatenate([anywhere, anywhere + rng.uniform(5, 30, anywhere.shape)], axis=1)
        boxes = np.concatenate([near, far])
        classes = np.concatenate(
            [np.where(rng.random(len(near)) < 0.8, gt_classes, rng.integers(1, 4, len(near)))]
            + [rng.integers(1, 4, len(far))]
        )
        scores = np.round(rng.random(len(boxes)), 3) if seed >= 0 else np.full(len(boxes), 0.0102)
        images.append(ImageResult.of(str(n), gt_boxes, gt_classes, boxes, scores, classes))
    return EvalSet(tuple(images), {1: "one", 2: "two", 3: "three"})


def _pycocotools_ap50(evalset: EvalSet) -> dict[int, float]:
    """COCO's own AP@.5 per class on the same set (xywh boxes, no crowd, all areas)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    annotations, results = [], []
    for image in evalset.images:
        n = int(image.key)  # COCO's image id: the OD API's are integers too
        for box, cls in zip(image.gt_boxes, image.gt_classes, strict=True):
            ymin, xmin, ymax, xmax = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": n,
                    "category_id": int(cls),
                    "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
                    "area": (xmax - xmin) * (ymax - ymin),
                    "iscrowd": 0,
                }
            )
        for box, cls, score in zip(image.boxes, image.classes, image.scores, strict=True):
            ymin, xmin, ymax, xmax = box
            results.append(
                {
                    "image_id": n,
                    "category_id": int(cls),
                    "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
                    "score": float(score),
                }
            )
    gt.dataset = {
        "images": [{"id": int(image.key)} for image in evalset.images],
        "annotations": annotations,
        "categories": [{"id": c} for c in evalset.names],
    }
    gt.createIndex()
    coco = COCOeval(gt, gt.loadRes(results), "bbox")
    coco.evaluate()
    coco.accumulate()
    precision = coco.eval["precision"][0, :, :, 0, -1]  # IoU 0.5, all areas, 100 detections
    return {c: float(precision[:, k].mean()) for k, c in enumerate(coco.params.catIds)}


@pytest.mark.parametrize("seed", [0, 1, -1])  # -1: every score tied, as a random model's
def test_ap50_per_class_is_cocos(seed):
    evalset = _random_set(seed)
    # in an order of their own: the evaluation's images come in file order, COCO sorts ids
    evalset = EvalSet(tuple(reversed(evalset.images)), evalset.names)
    ours = {c: curve.average_precision() for c, curve in evalcurves.class_curves(evalset).items()}
    assert ours == pytest.approx(_pycocotools_ap50(evalset), abs=1e-9)
