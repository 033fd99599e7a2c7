"""Restore coverage (--dry_run, and at the start of training) and the transplant restore.

The coverage numbers are checked against the truth read back from trained models: each model
is fine-tuned for one step with a learning rate of 0, so every trainable variable the restore
filled still equals the source checkpoint's tensor exactly, and every other one holds its fresh
initialisation (the stand-in checkpoints are perturbed, so no initialiser reproduces them).
"""

from __future__ import annotations

import glob
import json
import math
import os

import pytest

from tests.conftest import DEMO_CONFIG, run_python
from tests.helpers import (
    checkpoint_tensors,
    demo_driver_args,
    small_demo_config,
    zero_learning_rate_config,
)
from train.checkpoint import components
from train.pipeline import configfile, rewrite

_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"


# --- components (TF-free) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, component",
    [
        (
            "model/_feature_extractor/classification_backbone/layer_with_weights-0/kernel",
            "backbone",
        ),
        ("model/_feature_extractor/_efficientnet/layer_with_weights-3/gamma", "backbone"),
        ("model/_feature_extractor/_network/hourglass_network/0/x", "backbone"),
        ("model/_feature_extractor/_fpn_features_generator/top_layers/0/kernel", "neck"),
        ("model/_feature_extractor/_bifpn_stage/node_input_blocks/0/kernel", "neck"),
        ("model/_feature_extractor/_feature_extractor_model/layer_with_weights-0/kernel", "neck"),
        ("model/_feature_extractor_for_proposal_features/layer_with_weights-9/beta", "backbone"),
        (
            "model/_feature_extractor_for_box_classifier_features/layer_with_weights-0/kernel",
            "box classifier features",
        ),
        ("model/_first_stage_box_predictor_first_conv/layer_with_weights-0/kernel", "RPN"),
        ("model/_first_stage_box_predictor/_prediction_heads/box_encodings/0/kernel", "RPN"),
        (
            "model/_box_predictor/_prediction_heads/class_predictions_with_background/0/b",
            "class head",
        ),
        ("model/_box_predictor/_prediction_heads/box_encodings/0/kernel", "box head"),
        ("model/_box_predictor/_box_prediction_head/_box_encoder_layers/0/kernel", "box head"),
        (
            "model/_box_predictor/_head_scope_conv_layers/PredictionTower/0/kernel",
            "prediction tower",
        ),
        ("model/_box_predictor/_head_scope_conv_layers/ClassPredictionTower/0/k", "class tower"),
        ("model/_box_predictor/_base_tower_layers_for_heads/box_encodings/0/1/beta", "box tower"),
        (
            "model/_mask_rcnn_box_predictor/_class_prediction_head/_class_predictor_layers/0/k",
            "class head",
        ),
        ("model/_mask_rcnn_box_predictor/_third_stage_heads/mask_predictions/0/k", "mask head"),
        ("model/_prediction_head_dict/box.Sscale/0/kernel", "box/scale head"),
        ("model/_prediction_head_dict/object_center/1/bias", "object_center head"),
    ],
)
def test_component_of(key, component):
    assert components.component_of(key + _VALUE) == component


def test_every_real_zoo_checkpoint_key_has_a_component(shared_fixtures):
    from train.checkpoint import bundle

    indexes = glob.glob(
        os.path.join(shared_fixtures, "zoo_checkpoints", "*", "checkpoint", "ckpt-0.index")
    )
    assert len(indexes) >= 8
    for index in indexes:
        keys = [
            name
            for name, _ in bundle.list_variables(index[: -len(".index")])
            if name.startswith("model/") and ".OPTIMIZER_SLOT" not in name
        ]
        unknown = {k for k in keys if components.component_of(k) in ("other", "box predictor")}
        assert keys and not unknown, (index, sorted(unknown)[:3])


def test_summary_and_failure_texts():
    entries = [
        ("model/_feature_extractor/classification_backbone/a" + _VALUE, [3, 3], True),
        ("model/_feature_extractor/classification_backbone/b" + _VALUE, [2], False),
        ("model/_box_predictor/_prediction_heads/class_predictions_with_background/k", [4], False),
    ]
    line = components.summary(components.tally(entries), num_classes=3)
    assert line == (
        "restored 1/3 variables (9/15 parameters): backbone 1/2; new: backbone 1, class head 1 "
        "(class head sized for 3 classes)"
    )
    assert components.failure({"error": None, "gaps": []}) is None
    gaps = [e[0] for e in entries[:2]]
    assert components.failure({"error": "ValueError: x", "gaps": []}) == "ValueError: x"
    text = components.failure({"error": "AssertionError: x", "gaps": gaps})
    assert text.startswith("2 variable(s) the restore should fill are not in the checkpoint")
    assert "(backbone 2)" in text and "classification_backbone/a," in text
    assert "\n" not in text
    assert "could not be measured" in components.failure(None)


def test_restore_from_transplant_is_a_listed_change():
    config = configfile.parse_text(
        'train_config { fine_tune_checkpoint: "/z/ckpt-0" fine_tune_checkpoint_type: "detection" }',
        "x.config",
    )
    resolved, changes = rewrite.restore_from_transplant(config, "/m/transplant/ckpt-0")
    assert [(c.path, c.new) for c in changes] == [
        ("train_config.fine_tune_checkpoint", "'/m/transplant/ckpt-0'"),
        ("train_config.fine_tune_checkpoint_type", "'full'"),
    ]
    assert config.train_config.fine_tune_checkpoint == "/z/ckpt-0"  # input untouched
    again, more = rewrite.restore_from_transplant(resolved, "/m/transplant/ckpt-0")
    assert more == [] and configfile.to_text(again) == configfile.to_text(resolved)


# --- object paths (TF) --------------------------------------------------------------------------


@pytest.mark.stack
def test_object_variables_are_the_keys_tf_writes(tmp_path):
    code = f"""
import tensorflow as tf
from train.tf import restore
from train.pipeline import configfile
model = restore.build_model(configfile.load({DEMO_CONFIG!r}).proto)
keys = set(restore.object_variables(tf.train.Checkpoint(model=model)))
written = tf.train.Checkpoint(model=model).write({str(tmp_path / "ck")!r})
names = {{n for n, _ in tf.train.list_variables(written) if n.startswith("model/")}}
assert keys == names, sorted(keys ^ names)[:5]
print("OK", len(keys))
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[-1]) > 300


# --- the CLI ------------------------------------------------------------------------------------


def _driver_argv(assets, model_dir, config=DEMO_CONFIG, checkpoint=None, *extra):
    report = f"--report_json={os.path.join(str(model_dir), 'report.json')}"
    return demo_driver_args(assets, model_dir, report, *extra, config=config, checkpoint=checkpoint)


@pytest.mark.slow
@pytest.mark.stack
def test_rehearsal_of_the_demo_reports_coverage_and_does_not_train(demo_assets, tmp_path):
    model_dir = tmp_path / "m"
    # --dry_run: the old name of --rehearse, kept as an alias.
    result = run_python(_driver_argv(demo_assets, model_dir, DEMO_CONFIG, None, "--dry_run"))
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads((model_dir / "report.json").read_text())
    rehearsal = document["rehearsal"]
    assert rehearsal["batch"] == 2  # the demo's batch is 128: capped for a CPU
    assert all(math.isfinite(v) for v in rehearsal["losses"].values())
    assert rehearsal["losses"]["Loss/total_loss"] > 0
    assert "rehearsal passed (--rehearse: not training)" in result.stderr
    assert not os.path.exists(model_dir / "train")  # no training summaries: nothing trained
    report = document["restore"]["dry_run"]
    tallies = {c["name"]: c for c in report["components"]}
    # Type "detection" on SSD restores the feature extractor whole, and nothing else.
    assert tallies["backbone"]["restored"] == tallies["backbone"]["variables"] > 200
    assert tallies["neck"]["restored"] == tallies["neck"]["variables"] > 0
    for name in ("prediction tower", "box tower", "box head", "class head"):
        assert tallies[name]["restored"] == 0 < tallies[name]["variables"]
    assert report["restored"] == tallies["backbone"]["variables"] + tallies["neck"]["variables"]
    assert f"restore (type detection): {report['summary']}" in result.stderr
    assert "class head sized for 3 classes" in report["summary"]
    assert not glob.glob(str(model_dir / "ckpt-*")) and "training:" not in result.stderr


@pytest.mark.slow
def test_dry_run_names_backbone_variables_a_checkpoint_lacks(demo_assets, tmp_path):
    from tests.helpers import model_variables, write_checkpoint

    variables = model_variables(demo_assets["prefix"])
    missing = sorted(k for k in variables if "classification_backbone" in k)[5]
    del variables[missing]
    prefix = write_checkpoint(str(tmp_path / "partial"), variables)
    result = run_python(_driver_argv(demo_assets, tmp_path / "m", DEMO_CONFIG, prefix, "--dry_run"))
    assert result.returncode == 3, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: RESTORE")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert "1 variable(s) the restore should fill" in errors[0]
    assert "(backbone 1)" in errors[0] and missing in errors[0]
    document = json.loads((tmp_path / "m" / "report.json").read_text())
    (finding,) = [f for f in document["findings"] if f["code"] == "RESTORE"]
    assert missing in finding["message"]  # what the terminal says, the report says


# --- coverage and transplant against trained models ---------------------------------------------

ARCHS = {
    # name: (config under the fixtures or None for the embedded demo config, stand-in image size)
    # One per meta-architecture: the restore's rules are per meta-architecture (an SSD without
    # FPN, 48 s here, added nothing the FPNLite does not cover; scripts/coverage_table.py
    # measures the zoo's other backbones).
    "ssd_fpnlite": (None, 128),
    "faster_rcnn": ("zoo_tf2/faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config", 128),
    "centernet": ("zoo_tf2/centernet_resnet101_v1_fpn_512x512_coco17_tpu-8.config", 128),
}


@pytest.fixture(scope="module", params=sorted(ARCHS))
def trained(request, demo_assets, tmp_path_factory):
    """One-step runs with --restore=type and =transplant from a 90-class stand-in, 3 classes."""
    name = request.param
    relative, size = ARCHS[name]
    if relative is None:  # the demo's stand-in; its config at a small input (same variables)
        zoo = demo_assets["zoo"]
        config = small_demo_config(tmp_path_factory.mktemp(f"config-{name}"), size)
    else:
        fixtures = request.getfixturevalue("shared_fixtures")
        from train.tf import standin

        zoo = str(tmp_path_factory.mktemp(f"zoo-{name}"))
        standin.build_standin(os.path.join(fixtures, relative), zoo, image_size=size)
        config = os.path.join(zoo, "pipeline.config")
    base = tmp_path_factory.mktemp(f"runs-{name}")
    config = zero_learning_rate_config(config, str(base / "lr0.config"))
    runs = {}
    for mode in ("type", "transplant"):
        model_dir = base / mode
        extra = ("--num_train_steps=1", "--batch_size=1", f"--restore={mode}")
        result = run_python(_driver_argv(demo_assets, model_dir, config, zoo, *extra))
        assert result.returncode == 0, result.stderr[-3000:]
        runs[mode] = {
            "dir": str(model_dir),
            "report": json.loads((model_dir / "report.json").read_text())["restore"],
            "stderr": result.stderr,
        }
    runs["source"] = os.path.join(zoo, "checkpoint", "ckpt-0")
    runs["name"] = name
    return runs


def _moving_statistic(key: str) -> bool:
    # Batch-norm moving statistics are updated by the training step even at learning rate 0.
    return "moving_mean" in key or "moving_variance" in key


@pytest.mark.slow
def test_coverage_matches_the_trained_model(trained):
    import numpy as np
    import tensorflow as tf

    source = checkpoint_tensors(trained["source"])
    after = checkpoint_tensors(tf.train.latest_checkpoint(trained["type"]["dir"]))
    measured = trained["type"]["report"]["training"]
    assert measured["variables"] == len(after)  # every model variable, counted once
    new = set(measured["new"])
    assert new and measured["restored"] == len(after) - len(new)
    checked = 0
    for key, value in after.items():
        if _moving_statistic(key):
            continue
        same = key in source and source[key].shape == value.shape
        same = same and np.array_equal(source[key], value)
        assert same == (key not in new), (trained["name"], key)
        checked += 1
    assert checked > len(after) // 2
    # The CPU dry run of the transplant run measured the same restore, on a separate build.
    dry_run = trained["transplant"]["report"]["dry_run"]
    assert sorted(dry_run["new"]) == sorted(new)
    assert f"restore: {measured['summary']}" in trained["type"]["stderr"]


@pytest.mark.slow
def test_transplant_restores_strictly_more_and_only_class_tensors_are_fresh(trained):
    import numpy as np
    import tensorflow as tf

    source = checkpoint_tensors(trained["source"])
    after = checkpoint_tensors(tf.train.latest_checkpoint(trained["transplant"]["dir"]))
    report = trained["transplant"]["report"]
    transplant, detection = report["transplant"], report["dry_run"]
    assert transplant["transferred"] > detection["restored"]
    assert set(transplant["new"]) < set(detection["new"])
    # Fresh means: exactly the tensors whose shape depends on the class count (3 vs 90).
    for key in transplant["new"]:
        assert key in source and source[key].shape != after[key].shape, key
    assert transplant["reshaped"] == transplant["new"]
    fresh_components = {components.component_of(k) for k in transplant["new"]}
    assert fresh_components <= {"class head", "box head", "object_center head"}, fresh_components
    assert "class head" in fresh_components or "object_center head" in fresh_components
    for key, value in after.items():
        if key not in transplant["new"] and not _moving_statistic(key):
            assert np.array_equal(source[key], value), key
    # Training restored the transplanted checkpoint whole, with type "full".
    training = report["training"]
    assert training["restored"] == training["variables"] == len(after)
    resolved = configfile.load(os.path.join(trained["transplant"]["dir"], "pipeline.config")).proto
    assert resolved.train_config.fine_tune_checkpoint_type == "full"
    assert resolved.train_config.fine_tune_checkpoint == transplant["checkpoint"]


def test_a_transplant_is_reused_only_for_the_same_checkpoint_and_config(tmp_path):
    from train.contracts import TransplantSource
    from train.launch import specs
    from train.stages import prepare as preparing

    def spec(checkpoint, text):
        return specs.prepare_spec(str(tmp_path), "p.config", text, checkpoint, "detection", 3, True)

    first = spec("/zoo/ckpt-0", "model {}")
    assert not preparing.transplant_is_current(first)  # nothing there yet
    os.makedirs(os.path.dirname(first.transplant_to))
    open(first.transplant_to + ".index", "w").close()
    # Recorded by the writer train/tf/prepare.py uses.
    TransplantSource(first.checkpoint, first.pipeline_config_text_sha256).write(
        specs.transplant_source(first.transplant_to)
    )
    assert preparing.transplant_is_current(first)
    assert not preparing.transplant_is_current(spec("/other/ckpt-0", "model {}"))
    assert not preparing.transplant_is_current(spec("/zoo/ckpt-0", "model { ssd {} }"))
