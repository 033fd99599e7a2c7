"""The preflight against real third-party configs and zoo checkpoint indexes (../shared)."""

from __future__ import annotations

import glob
import os

import pytest

from train.checkpoint import resolve
from train.options import RunOptions
from train.pipeline import configfile, rewrite
from train.preflight import Context, run_preflight


def _preflight(config_path, model_dir, **kwargs):
    options = RunOptions(pipeline_config=str(config_path), model_dir=str(model_dir), **kwargs)
    source = configfile.load(str(config_path))
    config, _ = rewrite.apply_overrides(source.proto, options)
    return run_preflight(Context(options=options, source=source, config=config))


def _codes(report, severity="error"):
    return sorted({f.code for f in report.findings if f.severity == severity})


# Each real zoo checkpoint index with the config it shipped with (or the zoo config).
ZOO_PAIRS = {
    "centernet_mobilenetv2_fpn_od": "pipeline.config",
    "efficientdet_d0_coco17_tpu-32": "pipeline.config",
    "efficientdet_d1_coco17_tpu-32": "pipeline.config",
    "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8": "pipeline.config",
    "mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8": "zoo_tf2",
    "ssd_mobilenet_v1_fpn_640x640_coco17_tpu-8": "pipeline.config",
    "ssd_mobilenet_v2_320x320_coco17_tpu-8": "zoo_tf2",
    "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8": "pipeline.config",
}
# A different architecture for each, and the CKPT_ARCH detail it must produce.
OTHER = {
    "centernet_mobilenetv2_fpn_od": ("ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8", "meta_arch"),
    "efficientdet_d0_coco17_tpu-32": ("efficientdet_d1_coco17_tpu-32", "bifpn"),
    "efficientdet_d1_coco17_tpu-32": ("efficientdet_d0_coco17_tpu-32", "bifpn"),
    "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8": (
        "mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8",
        "backbone",
    ),
    "mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8": (
        "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8",
        "backbone",
    ),
    "ssd_mobilenet_v1_fpn_640x640_coco17_tpu-8": (
        "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8",
        "backbone",
    ),
    "ssd_mobilenet_v2_320x320_coco17_tpu-8": (
        "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8",
        "neck",
    ),
    "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8": (
        "ssd_mobilenet_v2_320x320_coco17_tpu-8",
        "neck",
    ),
}


def _config_for(shared, name):
    where = ZOO_PAIRS[name]
    if where == "zoo_tf2":
        return os.path.join(shared, "zoo_tf2", f"{name}.config")
    return os.path.join(shared, "zoo_checkpoints", name, "pipeline.config")


@pytest.mark.parametrize("name", sorted(ZOO_PAIRS))
def test_real_index_with_its_own_config(shared_fixtures, tmp_path, name):
    prefix = resolve.resolve(os.path.join(shared_fixtures, "zoo_checkpoints", name)).prefix
    report = _preflight(_config_for(shared_fixtures, name), tmp_path / "m", checkpoint=prefix)
    assert not [c for c in _codes(report) if c.startswith("CKPT_ARCH")]
    assert report.checkpoint["meta_arch"] in ("ssd", "faster_rcnn", "center_net")
    assert report.checkpoint["num_classes"] == 90


@pytest.mark.parametrize("name", sorted(OTHER))
def test_real_index_with_another_architecture(shared_fixtures, tmp_path, name):
    other, detail = OTHER[name]
    prefix = resolve.resolve(os.path.join(shared_fixtures, "zoo_checkpoints", name)).prefix
    report = _preflight(_config_for(shared_fixtures, other), tmp_path / "m", checkpoint=prefix)
    assert f"CKPT_ARCH.{detail}" in _codes(report)


def test_every_tf1_zoo_config_is_flagged(shared_fixtures, tmp_path):
    configs = sorted(glob.glob(os.path.join(shared_fixtures, "zoo_tf1", "*.config")))
    assert len(configs) == 18
    for path in configs:
        report = _preflight(path, tmp_path / "m")
        assert any(
            c.startswith("TF1_CONFIG") for c in _codes(report) + _codes(report, "warning")
        ), path


def test_tf2_zoo_configs_have_only_placeholder_and_fixable_errors(shared_fixtures, tmp_path):
    configs = sorted(glob.glob(os.path.join(shared_fixtures, "zoo_tf2", "*.config")))
    assert len(configs) == 40
    for path in configs:
        report = _preflight(path, tmp_path / "m", num_train_steps=100)
        blocking = [f.code for f in report.blocking("auto") if f.code != "PLACEHOLDER"]
        assert blocking == [], (path, blocking)
        assert not [c for c in _codes(report) if c.startswith("TF1_CONFIG")], path


def test_centernet_fine_tune_and_empty_type_become_detection(shared_fixtures, tmp_path):
    folder = os.path.join(shared_fixtures, "zoo_checkpoints", "centernet_mobilenetv2_fpn_od")
    config = tmp_path / "centernet.config"
    text = open(os.path.join(folder, "pipeline.config")).read()
    assert 'fine_tune_checkpoint_type: ""' in text
    config.write_text(text)
    prefix = resolve.resolve(folder).prefix
    report = _preflight(config, tmp_path / "m", checkpoint=prefix)
    fixes = {f.code: f.edits[0].value for f in report.findings if f.code == "CKPT_TYPE"}
    assert fixes == {"CKPT_TYPE": "detection"}
    config.write_text(
        text.replace('fine_tune_checkpoint_type: ""', 'fine_tune_checkpoint_type: "fine_tune"')
    )
    report = _preflight(config, tmp_path / "m", checkpoint=prefix)
    finding = [f for f in report.findings if f.code == "CKPT_TYPE"][0]
    assert "no longer supported for CenterNet" in finding.message
    assert finding.edits[0].value == "detection"
    assert report.checkpoint["kind"] == "training"  # the zoo ships its optimizer state
    assert "CKPT_UNREADABLE.missing_shard" in _codes(report)  # the fixture keeps only the index


def _user_configs():
    import json

    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "data", "user_config_expectations.json"), encoding="utf-8") as f:
        return json.load(f)["expected"]


@pytest.mark.parametrize("name", sorted(_user_configs()))
def test_real_user_configs_reviewed_codes(shared_fixtures, tmp_path, name):
    expected = _user_configs()[name]
    path = os.path.join(shared_fixtures, name)
    try:
        source = configfile.load(path)
    except configfile.ConfigParseError:
        assert expected == ["PARSE"]
        return
    options = RunOptions(pipeline_config=path, model_dir=str(tmp_path / "m"))
    config, _ = rewrite.apply_overrides(source.proto, options)
    report = run_preflight(Context(options=options, source=source, config=config))
    assert sorted({f"{f.code}:{f.severity[0]}" for f in report.findings}) == expected


def test_hparams_of_every_tf2_zoo_config(shared_fixtures, tmp_path):
    from train.launch import board, cluster, specs

    configs = sorted(glob.glob(os.path.join(shared_fixtures, "zoo_tf2", "*.config")))
    options = RunOptions(pipeline_config="x", model_dir=str(tmp_path / "m"))
    launch = specs.build_launch(options, "x", 100, 0, {}, cluster.choose_topology("all", 2, {}))
    bases = set()
    for path in configs:
        hparams = board.hparams_of(configfile.load(path).proto, launch)
        assert hparams["num_classes"] == 90 and hparams["replicas"] == 2, path
        assert hparams["optimizer"] and hparams["learning_rate_schedule"], path
        bases.add(hparams["learning_rate_base"])
    assert 0.0 not in bases  # every zoo schedule's base rate is found
