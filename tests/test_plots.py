"""The plots drawn from known data: what each figure shows, and that it is a picture."""

from __future__ import annotations

import pytest
from PIL import Image

from tests.test_evalcurves import CAT, DOG, _known
from train import evalcurves, plots


def _png(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_pr_curves_draw_the_envelope_with_ap_in_the_legend(tmp_path):
    path = str(tmp_path / "pr.png")
    drawn = plots.pr_curves(evalcurves.class_curves(_known()), {CAT: "cat", DOG: "dog"}, path)
    # cat: hits at 0.9 and 0.3 among 4 detections of 2 cats (test_evalcurves works it out)
    assert drawn["cat"]["recall"] == pytest.approx([0, 0.5, 0.5, 0.5, 1.0])
    assert drawn["cat"]["precision"] == pytest.approx([1, 1, 0.5, 0.5, 0.5])
    assert drawn["cat"]["ap"] == pytest.approx(76 / 101)
    assert drawn["dog"]["recall"] == pytest.approx([0, 0.5])
    width, height = _png(path)
    assert width > 300 and height > 300


def test_a_class_without_ground_truth_has_no_curve(tmp_path):
    only_cats = evalcurves.EvalSet(_known().images[1:2], {CAT: "cat", DOG: "dog"})
    curves = evalcurves.class_curves(only_cats)
    drawn = plots.pr_curves(curves, only_cats.names, str(tmp_path / "p.png"))
    assert set(drawn) == {"cat"}


def test_evaluation_plots_recommend_the_f1_threshold_and_confuse_at_it(tmp_path):
    found = plots.evaluation_plots(_known(), str(tmp_path / "plots"))
    assert found["threshold"] == pytest.approx(0.17) and found["f1"] == pytest.approx(2 / 3, 1e-3)
    assert found["ap50"] == pytest.approx({"cat": 76 / 101, "dog": 51 / 101})
    # at 0.17 every detection is kept: the 0.3 cat is found; 0.7 and 0.6 are false cats
    assert found["confusion"]["labels"] == ["cat", "dog"]
    assert found["confusion"]["matrix"] == [[2, 0, 0], [0, 1, 1], [2, 0, 0]]
    for path in found["plots"].values():
        _png(path)
    assert sorted(found["plots"]) == ["confusion_matrix", "f1_threshold", "pr_curves"]


def test_confusion_matrix_figure_labels_background(tmp_path):
    matrix = evalcurves.confusion(_known(), 0.5)
    drawn = plots.confusion_matrix(matrix, ["cat", "dog"], 0.5, str(tmp_path / "c.png"))
    assert drawn["labels"] == ["cat", "dog", "background"]
    assert drawn["matrix"][2] == [2, 0, 0]


def test_training_curves_take_the_losses_rate_and_map(tmp_path):
    scalars = {
        "Loss/total_loss": {1: 2.0, 10: 1.0, 20: 0.5},
        "Loss/localization_loss": {1: 0.5, 10: 0.3, 20: 0.2},
        "learning_rate": {1: 0.01, 10: 0.02, 20: 0.02},
        "DetectionBoxes_Precision/mAP@.50IOU": {10: 0.2, 20: 0.6},
        "steps_per_sec": {10: 3.0},
    }
    drawn = plots.training_curves(scalars, str(tmp_path / "t.png"))
    assert set(drawn) == {
        "Loss/total_loss",
        "Loss/localization_loss",
        "learning_rate",
        "DetectionBoxes_Precision/mAP@.50IOU",
    }
    assert drawn["Loss/total_loss"] == [[1, 10, 20], [2.0, 1.0, 0.5]]
    width, _ = _png(tmp_path / "t.png")
    assert width > 900  # three panels
