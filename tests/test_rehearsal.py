"""`--rehearse`: the real model built for training, the restore, one batch through the OD API's
training input pipeline from the real records, finite losses; and what its failures say.

Stand-ins of each zoo family are built from the real zoo configs (variables from the cached
stand-in signatures, tests/standin_signatures.py) at a small input size; records are generated
with the masks and keypoints the configs ask for. EfficientDet is rehearsed from scratch (no
checkpoint); the demo's rehearsal and its restore coverage are in tests/test_restore.py.
"""

from __future__ import annotations

import json
import math
import os
import re

import pytest

from tests.conftest import run_python
from tests.helpers import (
    demo_driver_args,
    standin_checkpoint,
    standin_signatures,
    zoo_config_copy,
)
from train.pipeline import configfile

pytestmark = pytest.mark.slow


def _report(path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _assert_rehearsed(result, report_path) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rehearsal passed (--rehearse: not training)" in result.stderr
    rehearsal = _report(report_path)["rehearsal"]
    assert rehearsal["losses"]["Loss/total_loss"] > 0
    assert all(math.isfinite(v) for v in rehearsal["losses"].values())
    return rehearsal


def _small(config_path: str, out, size: int) -> str:
    from train.tf import standin

    config = configfile.load(config_path).proto
    standin._set_image_size(config, size)  # noqa: SLF001 - the variables do not depend on it
    out.write_text(configfile.to_text(config))
    return str(out)


@pytest.fixture(scope="module")
def family_records(tmp_path_factory):
    """{kind: dataset} for plain boxes, PNG masks, and COCO's 17 keypoints per box."""
    from train.tf import synthetic

    root = tmp_path_factory.mktemp("family_records")
    return {
        kind: synthetic.make_dataset(str(root / kind), num_train=4, num_eval=2, size=128, **extra)
        for kind, extra in (("plain", {}), ("masks", {"masks": True}), ("kpts", {"keypoints": 17}))
    }


_FAMILIES = [  # (zoo config, records, input size, a loss the task adds); EfficientDet from scratch
    ("ssd_efficientdet_d0_512x512_coco17_tpu-8.config", "plain", 256, None),
    ("faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config", "plain", 128, None),
    ("mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8.config", "masks", 128, "mask_loss"),
    ("centernet_resnet50_v1_fpn_512x512_kpts_coco17_tpu-8.config", "kpts", 128, "keypoint"),
]


@pytest.mark.parametrize(("name", "kind", "size", "loss"), _FAMILIES)
def test_rehearsal_of_zoo_standins(
    shared_fixtures, family_records, tmp_path, name, kind, size, loss
):
    config = zoo_config_copy(shared_fixtures, name, tmp_path)
    scratch = "efficientdet" in name  # a rehearsal without a fine-tune checkpoint
    if scratch:
        text = open(config, encoding="utf-8").read()
        with open(config, "w", encoding="utf-8") as f:
            f.write(re.sub(r"(?m)^\s*fine_tune_checkpoint:.*$", "", text))
        checkpoint = []
    else:
        signature = standin_signatures([config])[config]
        checkpoint = [f"--checkpoint={standin_checkpoint(signature, str(tmp_path / 'zoo'))}"]
    records = family_records[kind]
    report_path = tmp_path / "report.json"
    result = run_python(
        [
            "-m",
            "train.finetune",
            f"--pipeline_config={_small(config, tmp_path / 'small.config', size)}",
            f"--model_dir={tmp_path / 'm'}",
            *checkpoint,
            f"--label_map={records['label_map']}",
            f"--train_input_path={records['train']}",
            f"--eval_input_path={records['eval']}",
            "--rehearse",
            f"--report_json={report_path}",
        ]
    )
    rehearsal = _assert_rehearsed(result, report_path)
    assert ("restore (type" in result.stderr) != scratch
    if loss:  # the task's own loss ran on the records' masks / keypoints
        assert [k for k in rehearsal["losses"] if loss in k], rehearsal["losses"]


def test_centernet_mobilenet_rehearses_offline_with_a_checkpoint(
    shared_fixtures, family_records, tmp_path
):
    """The ImageNet download is skipped when a checkpoint replaces those weights."""
    name = "AlvaroCavalcante__hand-face-detector__src__utils__pipelines__centernet_mobilenet_v2_fpn"
    source = os.path.join(shared_fixtures, "user_configs", name + ".config")
    config = str(tmp_path / "centernet_mobilenet.config")
    with open(source, encoding="utf-8") as f:
        (tmp_path / "centernet_mobilenet.config").write_text(f.read())
    signature = standin_signatures([config])[config]
    prefix = standin_checkpoint(signature, str(tmp_path / "zoo"))
    records = family_records["plain"]
    home = tmp_path / "home"
    (home / ".keras").mkdir(parents=True)  # an empty Keras cache: a download would show
    report_path = tmp_path / "report.json"
    result = run_python(
        [
            "-m",
            "train.finetune",
            f"--pipeline_config={_small(config, tmp_path / 'small.config', 128)}",
            f"--model_dir={tmp_path / 'm'}",
            f"--checkpoint={prefix}",
            f"--label_map={records['label_map']}",
            f"--train_input_path={records['train']}",
            f"--eval_input_path={records['eval']}",
            "--rehearse",
            "--num_train_steps=10",
            f"--report_json={report_path}",
        ],
        env_extra={"HOME": str(home)},
    )
    _assert_rehearsed(result, report_path)
    assert not (home / ".keras" / "models").exists()  # nothing downloaded, nothing cached


def _prepare_failure(tmp_path, config_path, checkpoint=None, env=None):
    """Runs the rehearsal child on a config the preflight would stop; returns the diagnosis."""
    from train import compat, failures
    from train.launch import runner, specs

    text = open(config_path, encoding="utf-8").read()
    spec = specs.prepare_spec(
        str(tmp_path / "m"), config_path, text, checkpoint, "detection", 3, False, 2
    )
    os.makedirs(tmp_path / "m" / "logs", exist_ok=True)
    prepared, outcome = runner.run_prepare(
        spec, {**compat.child_environment(), **(env or {})}, str(tmp_path / "prepare.log")
    )
    assert prepared is None and outcome.status == "failed"
    return outcome, failures.diagnose(
        outcome.phase, outcome.error, configfile.load(config_path).proto
    )


@pytest.mark.stack
def test_build_failures_are_named_never_blamed_on_the_checkpoint(
    good_config, demo_assets, tmp_path
):
    """Causes 2, 3 and 6 as the rehearsal sees them when no preflight rule stood in front."""
    config = configfile.load(str(good_config)).proto
    generator = config.model.ssd.anchor_generator.ssd_anchor_generator
    generator.num_layers = 6  # 6 layers of anchors for the FPN's 5 feature maps
    generator.reduce_boxes_in_lowest_layer = False  # as the weight-shared predictor needs
    anchors = tmp_path / "anchors.config"
    anchors.write_text(configfile.to_text(config))
    outcome, diagnosis = _prepare_failure(tmp_path / "a", str(anchors), demo_assets["prefix"])
    assert outcome.phase == "model" and diagnosis.code == "MODEL.anchor_layers"
    assert "Number of feature maps" in diagnosis.message and diagnosis.field

    records = f'"{demo_assets["train"]}"'
    frcnn = tmp_path / "frcnn.config"
    frcnn.write_text(
        "model { faster_rcnn { num_classes: 3 image_resizer { fixed_shape_resizer { height: 128 "
        'width: 128 } } feature_extractor { type: "faster_rcnn_resnet50_keras" } '
        "first_stage_anchor_generator { grid_anchor_generator { } } "
        "second_stage_box_predictor { mask_rcnn_box_predictor { } } "
        "first_stage_max_proposals: 50 } }\ntrain_config { batch_size: 2 }\n"
        f'train_input_reader {{ label_map_path: "{demo_assets["label_map"]}" '
        f"tf_record_input_reader {{ input_path: {records} }} }}\n"
    )
    outcome, diagnosis = _prepare_failure(tmp_path / "f", str(frcnn))
    assert outcome.phase == "model" and diagnosis.code == "MODEL.proposals"

    mobilenet = tmp_path / "mobilenet.config"
    mobilenet.write_text(
        frcnn.read_text()
        .replace("faster_rcnn {", "center_net {")
        .replace('"faster_rcnn_resnet50_keras"', '"mobilenet_v2_fpn"')
        .replace("first_stage_max_proposals: 50", "")
        .replace("first_stage_anchor_generator { grid_anchor_generator { } } ", "")
        .replace("second_stage_box_predictor { mask_rcnn_box_predictor { } } ", "")
    )
    home = tmp_path / "home"
    (home / ".keras").mkdir(parents=True)
    outcome, diagnosis = _prepare_failure(tmp_path / "c", str(mobilenet), env={"HOME": str(home)})
    assert outcome.phase == "model" and diagnosis.code == "ENV.imagenet_weights"
    assert "mobilenet_v2_weights" in diagnosis.message and str(home) in diagnosis.message
    assert not (home / ".keras" / "models").exists()


def test_an_input_pipeline_failure_the_preflight_does_not_mirror(
    good_config, demo_assets, tmp_path
):
    """The rehearsal and a plain training run give the same finding, with no traceback."""
    text = good_config.read_text()
    bad = text.replace(
        "data_augmentation_options {",
        "data_augmentation_options {\n    random_crop_pad_image {\n      "
        "min_padded_size_ratio: 1.0\n    }\n  }\n  data_augmentation_options {",
        1,
    )
    config = tmp_path / "bad.config"
    config.write_text(bad)
    line = bad[: bad.index("min_padded_size_ratio")].count("\n") + 1
    outputs = {}
    for mode in ("--rehearse", "--num_train_steps=2"):
        report_path = tmp_path / f"report{len(outputs)}.json"
        result = run_python(
            demo_driver_args(
                demo_assets,
                tmp_path / f"m{len(outputs)}",
                mode,
                f"--report_json={report_path}",
                config=str(config),
                checkpoint=demo_assets["prefix"],
            )
        )
        assert "Traceback" not in result.stderr and "RESTORE" not in result.stderr
        assert "error: INPUT.pipeline:" in result.stderr, result.stderr[-2000:]
        assert "min_padded_size_ratio should have 2 elements" in result.stderr
        assert f"bad.config:{line}: " in result.stderr  # the field the OD API's message names
        codes = [f["code"] for f in _report(report_path)["findings"]]
        assert "INPUT.pipeline" in codes
        outputs[mode] = result.returncode
    assert outputs == {"--rehearse": 3, "--num_train_steps=2": 4}
