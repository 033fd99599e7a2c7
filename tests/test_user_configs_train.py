"""Real user configs, from scratch on the demo's records: every config the preflight passes trains.

Each config from ../shared/fixtures is used as its author wrote it, less its
fine_tune_checkpoint line (no pretrained weights here: training starts from scratch), through
the driver with the demo's records and label map, batch 1, one step. The chosen set holds each
kind of config that used to pass the preflight and then crash (SequenceExample input type,
SSD anchors vs FPN levels, Faster R-CNN proposals, Mask R-CNN without masks, keypoints without a
keypoint task, a CenterNet MobileNetV2 that downloads ImageNet weights, several augmentations in
one block); `TFOD_ALL_USER_CONFIGS=1` runs every user config instead (about 40 minutes).
"""

from __future__ import annotations

import glob
import json
import os
import re

import pytest

from tests.conftest import run_python

pytestmark = pytest.mark.slow

# config -> the preflight errors that must stop it (None: it must train).
_CHOSEN = {
    "user_configs/LeenGadisseur__Tensorflow-OD-API-workspace__models__my_ssd_mobilenet_v2__"
    "pipeline_test.config": None,  # TF_SEQUENCE_EXAMPLE on Examples: fixed, trains
    "user_configs/LeenGadisseur__Tensorflow-OD-API-workspace__models__my_ssd_mobilenet_v1__"
    "pipeline_shards.config": None,  # 6 anchor layers for 5 FPN levels: fixed, trains
    "user_configs/AlvaroCavalcante__hand-face-detector__src__utils__pipelines__"
    "faster_rcnn_resnet_50.config": None,  # second_stage_batch_size 64 > 50 proposals: fixed
    "user_configs/halhwadi__Instance-Segmentation---Tensorflow-Object-Detection-API-s__model__"
    "pipeline.config": {"INPUT_DATA.masks"},  # Mask R-CNN on records without masks
    "user_configs/AlvaroCavalcante__hand-face-detector__src__utils__pipelines__"
    "centernet_mobilenet_v2_fpn.config": {"ENV.imagenet_weights"},  # offline, no checkpoint
    "user_configs/sparshpekhale__Hard_Hat_Detection__models__my_centernet__pipeline.config": {
        "ENV.imagenet_weights"  # and num_keypoints without a keypoint task (fixed)
    },
    "user_configs_more/whoisltd__ocr-id-card__training__models__ssd_mobilenet_v2_320x320__"
    "pipeline.config": {"CONFIG.last_one_wins"},  # six augmentations in one block
    "user_configs/c0lbarator__tensorflow-training-folder__training__pipeline.config": {
        "INPUT_DATA.keypoints",  # a keypoint task on records without keypoints
        "PLACEHOLDER",
    },
}


def _configs(shared_fixtures) -> dict:
    if os.environ.get("TFOD_ALL_USER_CONFIGS") == "1":
        found = sorted(glob.glob(os.path.join(shared_fixtures, "user_configs*", "*.config")))
        return {os.path.relpath(p, shared_fixtures): "any" for p in found}
    return _CHOSEN


def _from_scratch(source: str, target) -> str:
    """The config's text with its fine_tune_checkpoint line removed, nothing else changed."""
    with open(source, encoding="utf-8-sig") as f:
        text = f.read()
    target.write_text(re.sub(r"(?m)^\s*fine_tune_checkpoint\s*:.*$", "", text))
    return str(target)


def test_every_config_the_preflight_passes_trains(shared_fixtures, demo_assets, tmp_path):
    outcomes, wrong = {}, {}
    for index, (name, expected) in enumerate(sorted(_configs(shared_fixtures).items())):
        config = _from_scratch(os.path.join(shared_fixtures, name), tmp_path / f"{index}.config")
        model_dir, report_path = tmp_path / f"m{index}", tmp_path / f"r{index}.json"
        result = run_python(
            [
                "-m",
                "train.finetune",
                f"--pipeline_config={config}",
                f"--model_dir={model_dir}",
                f"--label_map={demo_assets['label_map']}",
                f"--train_input_path={demo_assets['train']}",
                f"--eval_input_path={demo_assets['eval']}",
                "--nofinal_eval",
                "--batch_size=1",
                "--num_train_steps=1",
                f"--report_json={report_path}",
            ],
            timeout=900,
        )
        stopped = set()
        if os.path.exists(report_path):
            with open(report_path, encoding="utf-8") as f:
                findings = json.load(f)["findings"]
            stopped = {f["code"] for f in findings if f["severity"] == "error" and not f["fixable"]}
        outcomes[name] = (result.returncode, sorted(stopped))
        if result.returncode == 3:  # stopped before training: only for a preflight error
            if not stopped:
                wrong[name] = ("exit 3 with no preflight error", result.stderr[-600:])
            elif expected not in ("any", stopped):
                wrong[name] = (f"expected {expected}, stopped by {sorted(stopped)}", "")
        elif result.returncode != 0:  # the preflight said go and the run did not train
            wrong[name] = (f"preflight passed, exit {result.returncode}", result.stderr[-900:])
        elif not any(n.startswith("ckpt-") and n.endswith(".index") for n in os.listdir(model_dir)):
            wrong[name] = ("exit 0 without a checkpoint", result.stderr[-600:])
        elif expected not in ("any", None):
            wrong[name] = (f"expected the preflight to stop it with {sorted(expected)}", "")
    summary = "\n".join(f"{name}: {why}\n{tail}" for name, (why, tail) in sorted(wrong.items()))
    assert not wrong, summary
    trained = [n for n, (code, _) in outcomes.items() if code == 0]
    assert len(trained) >= 3, outcomes
    print(json.dumps(outcomes, indent=1))  # the full-set run's record (-s)
