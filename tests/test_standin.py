"""The stand-in zoo checkpoint (train/tf/standin.py) the tests compare detectors with.

A calibrated stand-in must score boxes apart, image by image (a random one scores every anchor
alike, and no export verification is decisive on ties), and the same arguments must build the
same weights (unseeded Keras initializers once drew from Python's `random`, and a test that
passed on one draw failed on another).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import DEMO_CONFIG
from tests.helpers import checkpoint_tensors

pytestmark = pytest.mark.slow


def test_a_calibrated_standin_is_reproducible_and_scores_boxes_apart(demo_assets, tmp_path):
    from train.pipeline import configfile
    from train.tf import exporting, standin

    def build(folder):
        return standin.build_standin(
            DEMO_CONFIG,
            str(tmp_path / folder),
            num_classes=3,
            shift=(-0.01, 0.01),
            calibrate_on=(demo_assets["train"],),
        )

    first, second = build("a"), build("b")
    tensors, again = checkpoint_tensors(first), checkpoint_tensors(second)
    assert tensors.keys() == again.keys()
    different = [k for k in tensors if not np.array_equal(tensors[k], again[k])]
    assert not different, different[:5]

    pipeline = configfile.load(str(tmp_path / "a" / "pipeline.config")).proto
    detect = exporting.reference_fn(pipeline, first)
    tops = []
    for image in exporting.record_images([demo_assets["eval"]], 4):
        scores = detect(image)[0].scores
        # The top ten apart (twice the float32 TFLite score tolerance) and well above the
        # 100th, where an export's list is cut: a verification compares them.
        assert scores[0] - scores[9] > 0.02 and scores[9] - scores[-1] > 0.1, scores
        tops.append(tuple(np.round(scores[:10], 4)))
    assert len(set(tops)) == len(tops), tops  # every image scores its own boxes

    # The reference is restored whole or not at all: a checkpoint without the heads fails its
    # first call (the check runs once, when the call has made every variable, not per picture).
    from tests.helpers import model_variables, write_checkpoint

    backbone = {k: s for k, s in model_variables(first).items() if "_feature_extractor" in k}
    assert 0 < len(backbone) < len(model_variables(first))
    partial = write_checkpoint(str(tmp_path / "partial"), backbone)
    image = next(iter(exporting.record_images([demo_assets["eval"]], 1)))
    with pytest.raises(AssertionError, match="not bound to checkpointed values"):
        exporting.reference_fn(pipeline, partial)(image)
