"""Checkpoint path resolution (filesystem only) and classification from variable names."""

from __future__ import annotations

import os

import pytest

from train.checkpoint import identify, resolve


def _fake_checkpoint(directory, name="ckpt-0", state=True):
    os.makedirs(directory, exist_ok=True)
    for suffix in (".index", ".data-00000-of-00001"):
        open(os.path.join(directory, name + suffix), "wb").close()
    if state:
        with open(os.path.join(directory, "checkpoint"), "w") as f:
            f.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
    return os.path.join(directory, name)


@pytest.fixture
def zoo(tmp_path):
    """An extracted zoo tarball: <model>/checkpoint/ckpt-0.* + pipeline.config."""
    model = tmp_path / "ssd_model"
    prefix = _fake_checkpoint(str(model / "checkpoint"))
    (model / "pipeline.config").write_text("")
    return model, prefix


def test_valid_prefix_has_no_problem(zoo):
    _, prefix = zoo
    assert resolve.resolve(prefix) == resolve.Resolution(prefix, prefix, None)


@pytest.mark.parametrize(
    "suffix,problem", [(".index", "index_file"), (".data-00000-of-00001", "data_file")]
)
def test_file_paths_resolve_to_prefix(zoo, suffix, problem):
    _, prefix = zoo
    result = resolve.resolve(prefix + suffix)
    assert (result.prefix, result.problem) == (prefix, problem)


def test_checkpoint_directory_and_tarball_root(zoo):
    model, prefix = zoo
    assert resolve.resolve(str(model / "checkpoint")).problem == "directory"
    assert resolve.resolve(str(model / "checkpoint")).prefix == prefix
    root = resolve.resolve(str(model))
    assert (root.prefix, root.problem) == (prefix, "tarball_root")


def test_directory_without_state_file_picks_highest_step(tmp_path):
    _fake_checkpoint(str(tmp_path), "ckpt-2", state=False)
    latest = _fake_checkpoint(str(tmp_path), "ckpt-10", state=False)
    assert resolve.resolve(str(tmp_path)).prefix == latest


def test_missing_checkpoint_level_and_nested_extraction(zoo, tmp_path):
    model, prefix = zoo
    partial = resolve.resolve(str(model / "ckpt-0"))  # forgot the checkpoint/ level
    assert (partial.prefix, partial.problem) == (prefix, "nested")
    nested = tmp_path / "outer" / "outer"
    inner = _fake_checkpoint(str(nested / "checkpoint"))
    result = resolve.resolve(str(tmp_path / "outer" / "checkpoint" / "ckpt-0"))
    assert (result.prefix, result.problem) == (inner, "nested")


@pytest.mark.parametrize("given", ["PATH_TO_BE_CONFIGURED/ckpt-0", "${DATA}/ckpt-0", "$HOME/x"])
def test_placeholders(given):
    assert resolve.resolve(given).problem == "placeholder"


def test_missing_and_empty(tmp_path):
    assert resolve.resolve(str(tmp_path / "nothing")).problem == "missing"
    assert resolve.resolve(str(tmp_path / "nothing.index")).problem == "missing"
    assert resolve.resolve("  ").problem == "empty"
    assert resolve.resolve(str(tmp_path)).problem == "no_index"


S = "/.ATTRIBUTES/VARIABLE_VALUE"


def test_classify_kinds_from_roots():
    detection = [
        ("_CHECKPOINTABLE_OBJECT_GRAPH", []),
        ("save_counter" + S, []),
        (
            "model/_box_predictor/_prediction_heads/class_predictions_with_background/"
            "_class_predictor_layers/0/bias" + S,
            [546],
        ),
        (
            "model/_feature_extractor/classification_backbone/layer_with_weights-0/kernel" + S,
            [3, 3, 3, 32],
        ),
    ]
    info = identify.classify(detection)
    assert (info.kind, info.meta_arch, info.head_slots) == ("detection", "ssd", 546)
    assert identify.classes_from_head(info, anchors_per_location=6) == 90
    training = detection + [("optimizer/iter" + S, []), ("step" + S, [])]
    assert identify.classify(training).kind == "training"
    backbone = [
        ("_CHECKPOINTABLE_OBJECT_GRAPH", []),
        ("feature_extractor/layer_with_weights-0/kernel" + S, [3, 3, 3, 32]),
    ]
    assert identify.classify(backbone).kind == "classification"
    tf1 = [("FeatureExtractor/MobilenetV2/Conv/weights", [3, 3, 3, 32]), ("global_step", [])]
    assert identify.classify(tf1).kind == "tf1"
    assert identify.classify([]).kind == "empty"


def test_classes_from_head_per_meta_arch():
    frcnn = identify.CheckpointInfo("p", "detection", meta_arch="faster_rcnn", head_slots=91)
    centernet = identify.CheckpointInfo("p", "detection", meta_arch="center_net", head_slots=90)
    assert identify.classes_from_head(frcnn, None) == 90
    assert identify.classes_from_head(centernet, None) == 90
    efficientdet = identify.CheckpointInfo("p", "detection", meta_arch="ssd", head_slots=810)
    assert identify.classes_from_head(efficientdet, 9, add_background_class=False) == 90


# Real zoo checkpoint indexes (names and shapes of the real downloads).
ZOO = {
    "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8": ("ssd", 546, 384),
    "ssd_mobilenet_v2_320x320_coco17_tpu-8": ("ssd", 273, 324),
    "efficientdet_d0_coco17_tpu-32": ("ssd", 810, 683),
    "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8": ("faster_rcnn", 91, 275),
    "mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8": ("faster_rcnn", 91, 914),
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_real_zoo_indexes(shared_fixtures, name):
    result = resolve.resolve(os.path.join(shared_fixtures, "zoo_checkpoints", name))
    assert result.problem == "tarball_root"
    info = identify.inspect(result.prefix)
    assert (info.kind, info.meta_arch, info.head_slots, len(info.variables)) == (
        "detection",
    ) + ZOO[name]


def test_real_tf1_index(shared_fixtures):
    folder = os.path.join(
        shared_fixtures, "zoo_checkpoints_tf1", "ssd_mobilenet_v2_coco_2018_03_29"
    )
    info = identify.inspect(resolve.resolve(folder).prefix)
    assert info.kind == "tf1"


def test_separator_mistakes(zoo):
    model, prefix = zoo
    glued = resolve.resolve(str(model / "checkpointckpt-0"))
    assert (glued.prefix, glued.problem) == (prefix, "separator")
    windows = resolve.resolve(str(model) + "\\checkpoint\\ckpt-0")
    assert (windows.prefix, windows.problem) == (prefix, "separator")
