"""Each preflight code fires on its failure and stays quiet on a correct setup."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.conftest import DEMO_CONFIG, preflight
from train.options import RunOptions
from train.pipeline import configfile


def _preflight(config_path, model_dir, topology=None, **kwargs):
    report = preflight(config_path, model_dir, topology, **kwargs)
    crashed = [f.message for f in report.findings if f.code == "INTERNAL"]
    assert not crashed, crashed  # a check that crashes is a bug, whatever it found
    return report


def _codes(report, severity=None):
    return sorted({f.code for f in report.findings if severity in (None, f.severity)})


def test_correct_setup_has_no_error_or_warning(good_config, tmp_path):
    report = _preflight(good_config, tmp_path / "model")
    assert _codes(report, "error") == [] and _codes(report, "warning") == []


def test_zoo_state_demo_config_findings(demo_assets, good_options, tmp_path):
    report = _preflight(DEMO_CONFIG, tmp_path / "model", **good_options)
    assert _codes(report, "error") == ["CKPT_TYPE", "NUM_CLASSES"]
    assert all(f.fixable for f in report.errors())
    assert report.checkpoint["kind"] == "detection"
    assert report.checkpoint["meta_arch"] == "ssd" and report.checkpoint["head_slots"] == 546


def test_everything_missing_is_reported_in_one_pass(tmp_path):
    report = _preflight(DEMO_CONFIG, tmp_path / "model")
    messages = [f.message for f in report.findings if f.code == "PLACEHOLDER"]
    assert len(messages) == 5  # checkpoint, 2 label maps, 2 input paths
    assert any(":92: train_config.fine_tune_checkpoint" in m for m in messages)
    assert "IGNORED_FIELD.sync_replicas" in _codes(report)


def _edit(path, old, new):
    text = open(path).read()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_ckpt_version(good_config, tmp_path):
    _edit(good_config, "fine_tune_checkpoint_version: V2\n", "")
    report = _preflight(good_config, tmp_path / "model")
    assert _codes(report, "error") == ["CKPT_VERSION"]
    assert report.errors()[0].edits[0].value == "V2"


@pytest.mark.parametrize("suffix", [".index", ".data-00000-of-00001"])
def test_ckpt_path_file_suffix(good_config, tmp_path, demo_assets, suffix):
    report = _preflight(good_config, tmp_path / "model", checkpoint=demo_assets["prefix"] + suffix)
    codes = _codes(report, "error")
    assert len(codes) == 1 and codes[0].startswith("CKPT_PATH.")
    assert report.errors()[0].edits[0].value == demo_assets["prefix"]


def test_ckpt_path_missing_is_unfixable(good_config, tmp_path):
    report = _preflight(good_config, tmp_path / "model", checkpoint=str(tmp_path / "no" / "ckpt-0"))
    assert _codes(report, "error") == ["CKPT_PATH.missing"]
    assert not report.errors()[0].fixable


def test_ckpt_unreadable_lfs_pointer(good_config, tmp_path, demo_assets):
    broken = tmp_path / "lfs"
    broken.mkdir()
    shutil.copy(demo_assets["prefix"] + ".index", broken / "ckpt-0.index")
    (broken / "ckpt-0.data-00000-of-00001").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n"
    )
    report = _preflight(good_config, tmp_path / "model", checkpoint=str(broken / "ckpt-0"))
    # The index is intact (names are readable) but the data is a pointer: restore would fail.
    assert _codes(report, "error") == ["CKPT_UNREADABLE.lfs_pointer"]
    assert report.checkpoint["kind"] == "detection"
    (broken / "ckpt-0.data-00000-of-00001").unlink()
    report = _preflight(good_config, tmp_path / "model", checkpoint=str(broken / "ckpt-0"))
    assert _codes(report, "error") == ["CKPT_UNREADABLE.missing_shard"]


@pytest.mark.parametrize(
    "old,new",
    [
        ('fine_tune_checkpoint_type: "detection"', 'fine_tune_checkpoint_type: "classification"'),
        ('fine_tune_checkpoint_type: "detection"\n', ""),
        ('fine_tune_checkpoint_type: "detection"', 'fine_tune_checkpoint_type: "fine_tuning"'),
    ],
)
def test_ckpt_type(good_config, tmp_path, old, new):
    _edit(good_config, old, new)
    report = _preflight(good_config, tmp_path / "model")
    codes = _codes(report, "error")
    assert len(codes) == 1 and codes[0].startswith("CKPT_TYPE")
    assert report.errors()[0].edits[0].value == "detection"


def test_full_is_kept_when_the_head_matches(good_config, tmp_path):
    _edit(
        good_config, 'fine_tune_checkpoint_type: "detection"', 'fine_tune_checkpoint_type: "full"'
    )
    _edit(good_config, "num_classes: 3", "num_classes: 90")
    labels = tmp_path / "coco90.pbtxt"
    names = {1: "square", 2: "circle", 3: "triangle"}
    labels.write_text(
        "".join(f"item {{ id: {i} name: '{names.get(i, f'c{i}')}' }}\n" for i in range(1, 91))
    )
    report = _preflight(good_config, tmp_path / "model", label_map=str(labels))
    assert _codes(report, "error") == []


def test_num_classes_vs_label_map(good_config, tmp_path):
    _edit(good_config, "num_classes: 3", "num_classes: 5")
    report = _preflight(good_config, tmp_path / "model")
    assert _codes(report, "error") == ["NUM_CLASSES"]
    assert report.errors()[0].edits[0].value == 3
    flagged = _preflight(good_config, tmp_path / "model", num_classes=5)
    assert not flagged.errors()[0].fixable  # never overrule an explicit --num_classes


@pytest.mark.parametrize(
    "content,code",
    [
        ("item { id: 0 name: 'bg' }\nitem { id: 1 name: 'a' }\n", "LABEL_MAP.id0"),
        ("item { id: 1 name: 'a' }\nitem { id: 1 name: 'b' }\n", "LABEL_MAP.duplicate_id"),
        ("item { id: 1 name: 'a' }\nitem { id: 2 name: 'a' }\n", "LABEL_MAP.duplicate_name"),
        ("item { id: 1 nam: 'a' }\n", "LABEL_MAP"),
    ],
)
def test_label_map_problems(good_config, tmp_path, content, code):
    labels = tmp_path / "labels.pbtxt"
    labels.write_text(content)
    report = _preflight(good_config, tmp_path / "model", label_map=str(labels))
    assert code in _codes(report, "error")


def test_train_and_eval_label_maps_differ(good_config, tmp_path, demo_assets):
    other = tmp_path / "other.pbtxt"
    other.write_text("item { id: 1 name: 'square' }\n")
    _edit(
        good_config,
        f'label_map_path: "{demo_assets["label_map"]}"',
        f'label_map_path: "{demo_assets["label_map"]}"',
    )
    text = open(good_config).read()
    last = text.rindex(demo_assets["label_map"])
    good_config.write_text(text[:last] + str(other) + text[last + len(demo_assets["label_map"]) :])
    report = _preflight(good_config, tmp_path / "model")
    assert "LABEL_MAP.train_eval_differ" in _codes(report, "warning")


def test_tf1_feature_extractor(good_config, tmp_path):
    _edit(good_config, 'type: "ssd_mobilenet_v2_fpn_keras"', 'type: "ssd_mobilenet_v2"')
    report = _preflight(good_config, tmp_path / "model")
    assert "TF1_CONFIG" in _codes(report, "error")
    assert "ssd_mobilenet_v2_keras" in [f for f in report.findings if f.code == "TF1_CONFIG"][0].fix


def test_ignored_fields(good_config, tmp_path):
    _edit(
        good_config,
        "train_config {",
        "train_config {\n  freeze_variables: 'FeatureExtractor'\n"
        "  use_bfloat16: true\n  load_all_detection_checkpoint_vars: true",
    )
    report = _preflight(good_config, tmp_path / "model")
    assert "IGNORED_FIELD" in _codes(report, "error")  # load_all_... is rejected by TF2
    warnings = _codes(report, "warning")
    assert "IGNORED_FIELD.use_bfloat16" in warnings
    assert all(f.fixable for f in report.findings if f.code.startswith("IGNORED_FIELD"))
    # freeze_variables is no longer ignored: the driver applies it, and says so (kept as is)
    (freeze,) = [f for f in report.findings if f.code == "FREEZE.freeze_variables"]
    assert freeze.severity == "info" and not freeze.fixable and freeze.line
    assert "no variable matching them trains" in freeze.message


def test_input_data_no_match_and_empty(good_config, tmp_path):
    empty = tmp_path / "empty.record"
    empty.write_bytes(b"")
    report = _preflight(
        good_config,
        tmp_path / "model",
        train_input_path=(str(tmp_path / "x*.rec"),),
        eval_input_path=(str(empty),),
    )
    assert {"INPUT_DATA.no_match", "INPUT_DATA.empty"} <= set(_codes(report, "error"))


def test_model_dir_is_checkpoint_dir(good_config, demo_assets):
    report = _preflight(good_config, os.path.dirname(demo_assets["prefix"]))
    assert "MODEL_DIR.is_checkpoint_dir" in _codes(report, "error")


def test_findings_name_the_line_in_the_users_file(good_options, tmp_path):
    # The demo config as shipped: num_classes: 90 is on line 13, the checkpoint on line 92.
    report = _preflight(DEMO_CONFIG, tmp_path / "model", **good_options)
    num_classes = [f for f in report.findings if f.code == "NUM_CLASSES"][0]
    assert num_classes.line == 13 and num_classes.message.startswith(f"{DEMO_CONFIG}:13: ")
    checkpoint_type = [f for f in report.findings if f.code == "CKPT_TYPE"][0]
    assert checkpoint_type.file == DEMO_CONFIG and checkpoint_type.line == 93
    lines = sorted(
        f.line for f in _preflight(DEMO_CONFIG, tmp_path / "m2").findings if f.code == "PLACEHOLDER"
    )
    assert lines[0] == 92


def test_a_crashing_check_becomes_one_internal_finding_and_the_others_still_run(
    good_config, tmp_path
):
    from train.preflight import CHECKS, Context, run_preflight

    def check_that_crashes(ctx):
        yield from ()
        raise KeyError("boom")

    options = RunOptions(pipeline_config=str(good_config), model_dir=str(tmp_path / "m"))
    source = configfile.load(str(good_config))
    ctx = Context(options=options, source=source, config=source.proto)
    report = run_preflight(ctx, (check_that_crashes, *CHECKS))
    internal = [f for f in report.findings if f.code == "INTERNAL"]
    assert len(internal) == 1 and internal[0].severity == "error"
    assert "'check_that_crashes' crashed: KeyError: 'boom' (" in internal[0].message
    assert "please report it" in internal[0].fix
    assert internal[0] in report.blocking("auto")  # a crash is never a go
    assert [f.code for f in report.findings if f.code != "INTERNAL"] == [
        f.code for f in run_preflight(ctx).findings
    ]


def test_model_dir_with_other_class_count_is_incompatible(good_config, tmp_path, demo_assets):
    from tests.helpers import model_variables, write_checkpoint

    previous = model_variables(demo_assets["prefix"])  # a 90-class run of the same model
    write_checkpoint(str(tmp_path / "model"), previous, step=4, optimizer="momentum")
    report = _preflight(good_config, tmp_path / "model")
    assert _codes(report, "error") == ["MODEL_DIR.incompatible"]
    assert "546 outputs" in report.errors()[0].message and "builds 24" in report.errors()[0].message


def test_model_dir_partial_run_resumes_and_notes_optimizer(good_config, tmp_path, demo_assets):
    from tests.helpers import model_variables, write_checkpoint

    previous = model_variables(demo_assets["prefix"])
    head = (
        "model/_box_predictor/_prediction_heads/class_predictions_with_background/"
        "_class_predictor_layers/0/bias"
    )
    previous[head] = [24]  # the same 3-class model
    write_checkpoint(str(tmp_path / "model"), previous, step=4, optimizer="momentum")
    report = _preflight(good_config, tmp_path / "model")
    assert _codes(report, "error") == [] and "MODEL_DIR.resume" in _codes(report, "info")
    write_checkpoint(str(tmp_path / "adam"), previous, step=4, optimizer="adam")
    report = _preflight(good_config, tmp_path / "adam")
    assert "MODEL_DIR.optimizer" in _codes(report, "warning")
    write_checkpoint(str(tmp_path / "done"), previous, step=10, optimizer="momentum")
    assert "MODEL_DIR.finished" in _codes(_preflight(good_config, tmp_path / "done"), "error")
    # --fresh: the finished run is no obstacle (it is moved aside); --noresume refuses it.
    fresh = _preflight(good_config, tmp_path / "done", fresh=True)
    assert _codes(fresh, "error") == [] and "MODEL_DIR.fresh" in _codes(fresh, "info")
    refused = _preflight(good_config, tmp_path / "model", resume=False)
    assert _codes(refused, "error") == ["MODEL_DIR.exists"] and "--fresh" in refused.errors()[0].fix
    assert _codes(_preflight(good_config, tmp_path / "empty", resume=False), "error") == []


def test_a_damaged_newest_checkpoint_is_skipped_or_named(good_config, tmp_path, demo_assets):
    """A data file cut short (a crash, a quota): resume from the newest intact one, else stop."""
    from tests.helpers import model_variables, write_checkpoint

    previous = model_variables(demo_assets["prefix"])
    previous[
        "model/_box_predictor/_prediction_heads/class_predictions_with_background/"
        "_class_predictor_layers/0/bias"
    ] = [24]
    model_dir = tmp_path / "model"
    older = write_checkpoint(str(model_dir), previous, step=4, optimizer="momentum")
    shutil.copy(older + ".index", model_dir / "ckpt-2.index")  # a second save, step 4 too
    shutil.copy(older + ".data-00000-of-00001", model_dir / "ckpt-2.data-00000-of-00001")
    (model_dir / "checkpoint").write_text('model_checkpoint_path: "ckpt-2"\n')
    data = model_dir / "ckpt-2.data-00000-of-00001"
    size = data.stat().st_size
    with open(data, "r+b") as f:
        f.truncate(size // 2)
    report = _preflight(good_config, model_dir)
    (damaged,) = [f for f in report.findings if f.code == "MODEL_DIR.damaged"]
    assert damaged.severity == "warning" and _codes(report, "error") == []
    assert "the newest checkpoint ckpt-2 is damaged (ckpt-2.data-00000-of-00001 " in (
        damaged.message
    )
    assert f"has {size // 2} bytes, its index needs " in damaged.message
    assert "resumes from ckpt-1 (step 4)" in damaged.message
    os.remove(older + ".data-00000-of-00001")  # now none is intact
    report = _preflight(good_config, model_dir)
    assert _codes(report, "error") == ["MODEL_DIR.damaged"]
    assert "no checkpoint of the run there can be restored" in report.errors()[0].message
    assert "--fresh" in report.errors()[0].fix


def test_fresh_refuses_to_move_a_model_dir_holding_inputs(good_config, tmp_path, demo_assets):
    from tests.helpers import model_variables, write_checkpoint

    model_dir = tmp_path / "model"
    write_checkpoint(str(model_dir), model_variables(demo_assets["prefix"]), step=4)
    inside = model_dir / "mine.config"
    shutil.copy(good_config, inside)
    report = _preflight(inside, model_dir, fresh=True)
    assert _codes(report, "error") == ["MODEL_DIR.fresh_holds_inputs"]


def _records(path, examples):
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for example in examples:
            writer.write(example.SerializeToString())
    return str(path)


def _example(labels, boxes, names=None):
    import numpy as np

    from train.tf import synthetic

    image, _, _ = synthetic.make_image(np.random.default_rng(0), 32)
    classes = names or {i: synthetic.CLASSES.get(i, f"class{i}") for i in labels}
    return synthetic.to_example(image, boxes, labels, "x.jpg", classes)


def test_input_records_class_text_labels_and_boxes(good_config, tmp_path):
    good_box = [(0.1, 0.1, 0.5, 0.5)]
    records = _records(
        tmp_path / "bad.record",
        [
            _example([1], good_box, {1: "Square"}),  # wrong case: not in the label map
            _example([2], [(10.0, 10.0, 50.0, 50.0)]),  # pixel coordinates
        ],
    )
    report = _preflight(good_config, tmp_path / "model", train_input_path=(records,))
    assert "INPUT_DATA.class_text" in _codes(report, "error")
    assert (
        "'Square' x1"
        in [f for f in report.findings if f.code == "INPUT_DATA.class_text"][0].message
    )
    boxes = [f for f in report.findings if f.code == "INPUT_DATA.boxes"]
    assert len(boxes) == 1 and boxes[0].severity == "error"  # training on garbage: refused
    assert f"pixel values (first: {records} record 1)" in boxes[0].message
    import tensorflow as tf

    no_text = tf.train.Example()
    no_text.CopyFrom(_example([5], good_box))
    del no_text.features.feature["image/object/class/text"]
    records = _records(tmp_path / "labels.record", [no_text])
    report = _preflight(good_config, tmp_path / "model", train_input_path=(records,))
    assert "INPUT_DATA.label_range" in _codes(report, "error")


def test_input_records_corrupt(good_config, tmp_path):
    broken = tmp_path / "broken.record"
    broken.write_bytes(b"this is not a tfrecord at all" * 10)
    report = _preflight(good_config, tmp_path / "model", train_input_path=(str(broken),))
    assert "INPUT_DATA.corrupt" in _codes(report, "error")


@pytest.mark.parametrize(
    "edit,code,severity",
    [
        ("warmup_steps: 1000", "LR_SCHEDULE.warmup", "error"),
        ("learning_rate_base: 0.08", "LR_SCHEDULE.base", "error"),
        ("total_steps: 50000", "LR_SCHEDULE.total_steps", "warning"),
    ],
)
def test_lr_schedule(good_config, tmp_path, edit, code, severity):
    replacement = {
        "warmup_steps: 1000": "warmup_steps: 60000",
        "learning_rate_base: 0.08": "learning_rate_base: 0.001",
        "total_steps: 50000": "total_steps: 5",
    }[edit]
    _edit(good_config, edit, replacement)
    report = _preflight(good_config, tmp_path / "model")
    assert code in _codes(report, severity)


def test_lr_schedule_quiet_and_in_warmup_note(good_config, tmp_path):
    report = _preflight(good_config, tmp_path / "model")
    assert [c for c in _codes(report) if c.startswith("LR_SCHEDULE")] == ["LR_SCHEDULE.in_warmup"]
    long_run = _preflight(good_config, tmp_path / "model", num_train_steps=20000)
    assert not [c for c in _codes(long_run) if c.startswith("LR_SCHEDULE")]


def test_batch_tpu_sized_and_replicas(good_config, tmp_path, monkeypatch):
    report = _preflight(good_config, tmp_path / "model", batch_size=128)
    assert "BATCH.tpu_sized" in _codes(report, "warning")
    from train import envinfo

    envinfo.physical_gpus.cache_clear()
    monkeypatch.setattr(envinfo, "physical_gpus", lambda: 2)  # no GPU on CI machines
    report = _preflight(good_config, tmp_path / "model", batch_size=3)
    assert "BATCH.replicas" in _codes(report, "error")
    assert "--batch_size 2" in report.errors()[0].fix


def test_batch_replicas_come_from_the_launch_plan(good_config, tmp_path):
    from train.launch import cluster

    slurm = {
        "SLURM_PROCID": "0",
        "SLURM_STEP_NUM_TASKS": "3",
        "SLURM_STEP_NODELIST": "n[1-3]",
        "SLURM_STEP_TASKS_PER_NODE": "1(x3)",
    }
    three_workers = cluster.choose_topology("all", 0, slurm)
    report = _preflight(good_config, tmp_path / "model", topology=three_workers, batch_size=4)
    batch = [f for f in report.errors() if f.code == "BATCH.replicas"]
    assert len(batch) == 1 and "the 3 replicas" in batch[0].message
    assert "--batch_size 3" in batch[0].fix
    four_gpus_two_used = cluster.choose_topology("0,1", 4, {})
    report = _preflight(good_config, tmp_path / "model", topology=four_gpus_two_used, batch_size=4)
    assert _codes(report, "error") == []


def test_multi_worker_run_needs_a_training_file_per_worker(good_config, tmp_path, demo_assets):
    from tests.helpers import split_records
    from train.launch import cluster

    two_workers = cluster.Topology(kind=cluster.MULTI_WORKER, num_workers=2)
    report = _preflight(good_config, tmp_path / "model", topology=two_workers)
    assert _codes(report, "error") == ["INPUT_DATA.shards"]
    assert "matches 1 file(s) but the run has 2 workers" in report.errors()[0].message
    shards = split_records(demo_assets["train"], str(tmp_path / "train.record"), 2)
    report = _preflight(
        good_config, tmp_path / "model", topology=two_workers, train_input_path=(shards,)
    )
    assert _codes(report, "error") == []


def test_environment_is_clean_on_a_tested_stack(good_config, tmp_path):
    from train import envinfo
    from train.preflight.checks_env import _tf_version

    report = _preflight(good_config, tmp_path / "model")  # asserts no check crashed
    expected = set()
    if envinfo.physical_gpus() and _tf_version()[0] == "tensorflow-cpu":
        expected.add("ENV.gpu_unused")  # a GPU host with this CPU-only stack: rightly said
    assert {c for c in _codes(report) if c.startswith("ENV")} == expected


def test_environment_missing_module(good_config, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tf_slim" else real(name, *a)
    )
    report = _preflight(good_config, tmp_path / "model")
    assert "ENV.missing_module" in _codes(report, "error")


def test_backbone_checkpoint_wants_classification(good_config, tmp_path):
    from tests.helpers import write_checkpoint

    prefix = write_checkpoint(
        str(tmp_path / "mobilenet_v2"),
        {
            "feature_extractor/layer_with_weights-0/kernel": [3, 3, 3, 32],
            "feature_extractor/layer_with_weights-1/gamma": [32],
        },
    )
    report = _preflight(good_config, tmp_path / "model", checkpoint=prefix)
    assert _codes(report, "error") == ["CKPT_TYPE"]
    assert report.errors()[0].edits[0].value == "classification"
    assert report.checkpoint["kind"] == "classification"
    # Nothing beyond a backbone to transplant: --restore=transplant is refused, not fixed.
    report = _preflight(good_config, tmp_path / "m2", checkpoint=prefix, restore="transplant")
    transplant = [f for f in report.errors() if f.code == "RESTORE.transplant"]
    assert len(transplant) == 1 and not transplant[0].fixable
    assert "backbone-only" in transplant[0].message and transplant[0].line


def test_transplant_without_a_checkpoint(good_config, tmp_path):
    _edit(good_config, "fine_tune_checkpoint:", "# fine_tune_checkpoint:")
    report = _preflight(good_config, tmp_path / "model", restore="transplant")
    assert "RESTORE.transplant" in _codes(report, "error")
    assert "RESTORE.transplant" not in _codes(_preflight(good_config, tmp_path / "m2"))


def test_transplant_from_a_training_checkpoint(good_config, demo_assets, tmp_path):
    from tests.helpers import model_variables, write_checkpoint

    prefix = write_checkpoint(
        str(tmp_path / "earlier_run"),
        model_variables(demo_assets["prefix"]),
        step=300,
        optimizer="momentum",
    )
    report = _preflight(good_config, tmp_path / "model", checkpoint=prefix, restore="transplant")
    assert report.checkpoint["kind"] == "training"
    assert "RESTORE.transplant" not in _codes(report)


def test_full_with_another_class_count_is_num_classes_finding(good_config, tmp_path):
    _edit(
        good_config, 'fine_tune_checkpoint_type: "detection"', 'fine_tune_checkpoint_type: "full"'
    )
    report = _preflight(good_config, tmp_path / "model")
    assert _codes(report, "error") == ["NUM_CLASSES.full_head"]
    assert "90 classes" in report.errors()[0].message
    assert report.errors()[0].edits[0].value == "detection"


def test_truncated_and_not_a_checkpoint(good_config, tmp_path, demo_assets):
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copy(demo_assets["prefix"] + ".index", cut / "ckpt-0.index")
    with open(demo_assets["prefix"] + ".data-00000-of-00001", "rb") as f:
        (cut / "ckpt-0.data-00000-of-00001").write_bytes(f.read()[:100000])
    report = _preflight(good_config, tmp_path / "model", checkpoint=str(cut / "ckpt-0"))
    assert _codes(report, "error") == ["CKPT_UNREADABLE.truncated"]
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "ckpt-0.index").write_bytes(b"not an sstable" * 100)
    (junk / "ckpt-0.data-00000-of-00001").write_bytes(b"x")
    report = _preflight(good_config, tmp_path / "model", checkpoint=str(junk / "ckpt-0"))
    assert _codes(report, "error") == ["CKPT_UNREADABLE"]
    assert "cannot be read" in report.errors()[0].message


def test_ckpt_arch_width(good_config, tmp_path):
    _edit(good_config, "depth_multiplier: 1.0", "depth_multiplier: 0.75")
    report = _preflight(good_config, tmp_path / "model")
    assert _codes(report, "error") == ["CKPT_ARCH.width"]


def test_tf1_checkpoint(good_config, tmp_path):
    import tensorflow as tf

    prefix = str(tmp_path / "tf1" / "model.ckpt")
    with tf.Graph().as_default():
        tf.compat.v1.get_variable("FeatureExtractor/MobilenetV2/Conv/weights", [3, 3, 3, 32])
        tf.compat.v1.train.get_or_create_global_step()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(session, prefix)
    report = _preflight(good_config, tmp_path / "model", checkpoint=prefix)
    assert _codes(report, "error") == ["CKPT_TF1"]
    assert report.checkpoint["kind"] == "tf1"


def test_checkpoint_cadence(good_config, tmp_path):
    report = _preflight(good_config, tmp_path / "model", checkpoint_every_n=1000)
    assert "CKPT_CADENCE" in _codes(report, "info")  # 10 steps, cadence 1000: final save only
    quiet = _preflight(good_config, tmp_path / "model", checkpoint_every_n=5)
    assert not [c for c in _codes(quiet, "info") if c.startswith("CKPT_CADENCE")]
    _edit(good_config, "num_steps: 10", "num_steps: 0")
    assert "CKPT_CADENCE.no_steps" in _codes(_preflight(good_config, tmp_path / "model"), "error")
    with_flag = _preflight(good_config, tmp_path / "model", num_train_steps=10)
    assert "CKPT_CADENCE.no_steps" not in _codes(with_flag)


@pytest.mark.slow
def test_an_eval_placeholder_nothing_reads_is_a_warning_and_the_run_trains(demo_assets, tmp_path):
    """--nofinal_eval, no --eval, no export: the zoo's eval paths are not read, as in train_loop."""
    from tests.conftest import run_python
    from tests.helpers import demo_driver_args

    args = demo_driver_args(demo_assets, tmp_path / "m", "--num_train_steps=1", "--batch_size=1")
    args = [a for a in args if not a.startswith("--eval_input_path=")]
    trained = run_python(args)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "warning PLACEHOLDER.unread" in trained.stderr.replace("  ", " ")
    assert "nothing reads it in this run" in trained.stderr
    # With the final evaluation on, the same placeholder is an error, as before.
    report = _preflight(
        DEMO_CONFIG,
        tmp_path / "m2",
        checkpoint=demo_assets["prefix"],
        label_map=demo_assets["label_map"],
        train_input_path=(demo_assets["train"],),
    )
    codes = {(f.code, f.severity) for f in report.findings if f.code.startswith("PLACEHOLDER")}
    assert codes == {("PLACEHOLDER", "error")}


def test_absurd_values_have_a_bound(good_config, tmp_path):
    huge = 2**32 - 1
    report = _preflight(good_config, tmp_path / "m", num_train_steps=huge, batch_size=huge)
    absurd = [f for f in report.findings if f.code == "CONFIG.absurd"]
    assert [f.severity for f in absurd] == ["error", "error"]
    assert any(f"train_config.batch_size: {huge} images in one step" in f.message for f in absurd)
    assert any(f"train_config.num_steps: {huge} steps" in f.message for f in absurd)
    text = open(good_config).read()
    block = "  data_augmentation_options {\n    random_horizontal_flip {\n    }\n  }\n"
    many = tmp_path / "many.config"
    many.write_text(text.replace("train_config {\n", "train_config {\n" + block * 1001, 1))
    (finding,) = [f for f in _preflight(many, tmp_path / "m").findings if f.code == "CONFIG.absurd"]
    shipped = text.count("data_augmentation_options {")
    assert f"data_augmentation_options: {1001 + shipped} augmentation blocks" in finding.message
    assert finding.line is not None
    assert "CONFIG.absurd" not in _codes(_preflight(good_config, tmp_path / "m"))
