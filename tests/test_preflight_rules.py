"""The OD API's build- and input-time rules the preflight mirrors (train/preflight/checks_model.py,
the record checks against the readers in checks_data.py, ENV.imagenet_weights).

Each test reproduces one way a real user config passed the old preflight and then crashed (or
trained on something other than what it says), from small configs and generated records, and
shows the rule's finding, its line and its fix, and that the correct variant has none.
"""

from __future__ import annotations

import os

import pytest

from tests.conftest import preflight
from train.pipeline import configfile, fields, rewrite


def _codes(report, severity=None):
    assert not [f for f in report.findings if f.code == "INTERNAL"]
    return sorted({f.code for f in report.findings if severity in (None, f.severity)})


def _finding(report, code):
    found = [f for f in report.findings if f.code == code]
    assert found, (code, _codes(report))
    return found[0]


def _variant(source, out, edit) -> str:
    """A copy of the config file `source` with `edit(proto)` applied."""
    config = configfile.load(str(source)).proto
    edit(config)
    out.write_text(configfile.to_text(config))
    return str(out)


@pytest.fixture(scope="module")
def rich_records(tmp_path_factory):
    """Records whose boxes carry PNG masks and 3 keypoints, and a label map listing them."""
    from train.tf import synthetic

    return synthetic.make_dataset(
        str(tmp_path_factory.mktemp("rich")), num_train=4, num_eval=2, size=64, masks=True,
        keypoints=3,
    )  # fmt: skip


def _reader_text(records: dict) -> str:
    return (
        f'train_input_reader {{ label_map_path: "{records["label_map"]}" '
        f'tf_record_input_reader {{ input_path: "{records["train"]}" }} READER }}\n'
    )


_TRAIN = (
    "train_config { batch_size: 2 num_steps: 10 optimizer { momentum_optimizer { "
    "learning_rate { constant_learning_rate { learning_rate: 0.01 } } } } }\n"
)


def _faster_rcnn(tmp_path, records, model="", reader="") -> str:
    path = tmp_path / "frcnn.config"
    path.write_text(
        "model {\n  faster_rcnn {\n    num_classes: 3\n"
        "    image_resizer { fixed_shape_resizer { height: 128 width: 128 } }\n"
        '    feature_extractor { type: "faster_rcnn_resnet50_keras" }\n'
        f"    {model}\n  }}\n}}\n" + _TRAIN + _reader_text(records).replace("READER", reader)
    )
    return str(path)


def _center_net(tmp_path, records, keypoint_map, model="", reader="") -> str:
    path = tmp_path / "centernet.config"
    path.write_text(
        "model {\n  center_net {\n    num_classes: 3\n"
        "    image_resizer { fixed_shape_resizer { height: 128 width: 128 } }\n"
        '    feature_extractor { type: "resnet_v1_50_fpn" }\n'
        "    object_center_params { classification_loss { "
        "penalty_reduced_logistic_focal_loss { alpha: 2.0 beta: 4.0 } } }\n"
        f'    keypoint_label_map_path: "{keypoint_map}"\n'
        f"    {model}\n  }}\n}}\n" + _TRAIN + _reader_text(records).replace("READER", reader)
    )
    return str(path)


def test_ssd_anchor_layers_must_match_the_feature_maps(good_config, tmp_path):
    def six_layers(config):
        config.model.ssd.anchor_generator.ssd_anchor_generator.num_layers = 6

    path = _variant(good_config, tmp_path / "anchors.config", six_layers)
    finding = _finding(preflight(path, tmp_path / "m"), "MODEL.anchor_layers")
    assert "6 layers" in finding.message and "5 feature maps" in finding.message
    assert "FPN levels 3-7" in finding.message and finding.line
    assert [(e.path, e.value) for e in finding.edits] == [
        ("model.ssd.anchor_generator.ssd_anchor_generator.num_layers", 5)
    ]
    assert "MODEL.anchor_layers" not in _codes(preflight(good_config, tmp_path / "m"))


def test_ssd_images_below_the_extractors_minimum(good_config, tmp_path):
    def tiny(config):
        resizer = config.model.ssd.image_resizer.fixed_shape_resizer
        resizer.height = resizer.width = 32

    finding = _finding(
        preflight(_variant(good_config, tmp_path / "t.config", tiny), tmp_path / "m"),
        "MODEL.image_size",
    )
    assert "32x32" in finding.message and "33" in finding.fix


def test_faster_rcnn_second_stage_batch_over_the_proposals(tmp_path, rich_records):
    report = preflight(
        _faster_rcnn(tmp_path, rich_records, "first_stage_max_proposals: 50"), tmp_path / "m"
    )
    finding = _finding(report, "MODEL.proposals")
    assert "second_stage_batch_size 64 (the default)" in finding.message
    assert "first_stage_max_proposals 50" in finding.message and finding.line == 6
    assert [(e.path, e.value) for e in finding.edits] == [
        ("model.faster_rcnn.second_stage_batch_size", 50)
    ]
    # The minimal config chooses no first-stage anchor generator: the builder raises for that.
    assert (
        "first_stage_anchor_generator chooses no kind" in _finding(report, "MODEL.missing").message
    )
    fine = _faster_rcnn(
        tmp_path, rich_records, "first_stage_max_proposals: 50 second_stage_batch_size: 50"
    )
    assert "MODEL.proposals" not in _codes(preflight(fine, tmp_path / "m"))


def test_nms_and_loss_rules_of_the_builders(good_config, tmp_path):
    def broken(config):
        nms = config.model.ssd.post_processing.batch_non_max_suppression
        nms.iou_threshold = 1.5
        nms.max_detections_per_class = nms.max_total_detections + 1
        config.model.ssd.loss.hard_example_miner.num_hard_examples = 10

    report = preflight(_variant(good_config, tmp_path / "b.config", broken), tmp_path / "m")
    messages = [f.message for f in report.findings if f.code == "MODEL.nms"]
    assert any("iou_threshold 1.5" in m for m in messages)
    assert any("max_detections_per_class" in m for m in messages)
    assert "MODEL.loss" in _codes(report, "error")  # the demo's loss is sigmoid focal


def test_mask_rcnn_records_without_masks(tmp_path, demo_assets, rich_records):
    model = (
        "first_stage_max_proposals: 64 second_stage_box_predictor { mask_rcnn_box_predictor { "
        "predict_instance_masks: true } }"
    )
    plain = {**rich_records, "train": demo_assets["train"], "label_map": demo_assets["label_map"]}
    loading = "load_instance_masks: true mask_type: PNG_MASKS"
    report = preflight(_faster_rcnn(tmp_path, plain, model, loading), tmp_path / "m")
    finding = _finding(report, "INPUT_DATA.masks")
    assert "no image/object/mask" in finding.message and "train.record record 0" in finding.message
    assert "MODEL.masks" not in _codes(report)
    # The model predicts masks but the reader does not load them.
    unloaded = preflight(_faster_rcnn(tmp_path, rich_records, model), tmp_path / "m")
    assert "MODEL.masks" in _codes(unloaded, "error")
    # Records with one PNG mask per box, read as configured: nothing.
    good = preflight(_faster_rcnn(tmp_path, rich_records, model, loading), tmp_path / "m")
    assert not {"INPUT_DATA.masks", "INPUT_DATA.mask_type", "MODEL.masks"} & set(_codes(good))
    # Read as numerical masks, the PNGs are the wrong type.
    numerical = _faster_rcnn(tmp_path, rich_records, model, "load_instance_masks: true")
    finding = _finding(preflight(numerical, tmp_path / "m"), "INPUT_DATA.mask_type")
    assert "set mask_type: PNG_MASKS" in finding.fix


def test_keypoints_without_a_keypoint_task(good_config, tmp_path):
    def keypoints(config):
        config.train_input_reader.num_keypoints = 17

    report = preflight(_variant(good_config, tmp_path / "k.config", keypoints), tmp_path / "m")
    finding = _finding(report, "MODEL.keypoints")
    assert "no keypoint task" in finding.message and finding.line
    assert [(e.path, e.value) for e in finding.edits] == [
        ("train_input_reader.num_keypoints", None)
    ]
    config = configfile.load(str(good_config)).proto
    keypoints(config)
    fixed, _ = rewrite.apply_fixes(config, [finding])
    assert fixed.train_input_reader.num_keypoints == 0


def test_masks_loaded_for_a_model_without_a_mask_head(good_config, tmp_path):
    def masks(config):
        config.train_input_reader.load_instance_masks = True

    report = preflight(_variant(good_config, tmp_path / "mk.config", masks), tmp_path / "m")
    finding = _finding(report, "MODEL.masks_unused")
    assert [(e.path, e.value) for e in finding.edits] == [
        ("train_input_reader.load_instance_masks", None)
    ]
    assert "INPUT_DATA.masks" not in _codes(report)  # the fix removes what the records lack


def test_keypoint_task_against_the_records(tmp_path, demo_assets, rich_records):
    task = 'keypoint_estimation_task { task_name: "kp" keypoint_class_name: "square" }'
    keypoint_map = rich_records["label_map"]  # lists keypoints 0..2 for each class
    plain = {**rich_records, "train": demo_assets["train"], "label_map": demo_assets["label_map"]}
    report = preflight(
        _center_net(tmp_path, plain, keypoint_map, task, "num_keypoints: 3"), tmp_path / "m"
    )
    finding = _finding(report, "INPUT_DATA.keypoints")
    assert "image/object/keypoint/x values, has 0" in finding.message
    good = preflight(
        _center_net(tmp_path, rich_records, keypoint_map, task, "num_keypoints: 3"), tmp_path / "m"
    )
    assert not [c for c in _codes(good) if "KEYPOINT" in c.upper()]
    # The task's keypoint ids need num_keypoints in the reader.
    missing = preflight(_center_net(tmp_path, rich_records, keypoint_map, task), tmp_path / "m")
    finding = _finding(missing, "MODEL.keypoints")
    assert "set num_keypoints: 3" in finding.fix
    # A class without keypoints in the keypoint label map cannot build.
    unknown = task.replace('"square"', '"hexagon"')
    wrong = preflight(_center_net(tmp_path, rich_records, keypoint_map, unknown), tmp_path / "m")
    assert "'hexagon' has no keypoints" in _finding(wrong, "MODEL.keypoints").message


def test_sequence_example_input_type_on_plain_examples(good_config, tmp_path):
    def sequence(config):
        fields.set_value(config, "train_input_reader.input_type", "TF_SEQUENCE_EXAMPLE")

    report = preflight(_variant(good_config, tmp_path / "s.config", sequence), tmp_path / "m")
    finding = _finding(report, "INPUT_DATA.record_kind")
    assert "TF_SEQUENCE_EXAMPLE" in finding.message and "plain tf.train.Example" in finding.message
    assert [(e.path, e.value) for e in finding.edits] == [("train_input_reader.input_type", None)]
    assert "INPUT_DATA.record_kind" not in _codes(preflight(good_config, tmp_path / "m"))


def test_sequence_examples_under_the_default_input_type(good_config, tmp_path):
    import tensorflow as tf
    from google.protobuf import text_format

    from train import records as record_io

    # A tf.train.SequenceExample: context (field 1) plus feature_lists (field 2).
    sequence = text_format.Parse(
        'context { feature { key: "image/height" value { int64_list { value: 4 } } } } '
        'feature_lists { feature_list { key: "image/encoded" value { feature { '
        'bytes_list { value: "x" } } } } }',
        tf.train.SequenceExample(),
    )
    path = tmp_path / "sequence.record"
    path.write_bytes(record_io.frame(sequence.SerializeToString()))

    def reads_it(config):
        reader = config.train_input_reader.tf_record_input_reader
        del reader.input_path[:]
        reader.input_path.append(str(path))

    report = preflight(_variant(good_config, tmp_path / "q.config", reads_it), tmp_path / "m")
    finding = _finding(report, "INPUT_DATA.record_kind")
    assert "are tf.train.SequenceExample" in finding.message
    assert "INPUT_DATA.no_image" not in _codes(report)


def test_augmentations_listed_in_one_block(good_config, tmp_path):
    text = good_config.read_text()
    start = text.index("data_augmentation_options {")
    merged = (
        text[:start] + "data_augmentation_options {\n    random_horizontal_flip {\n    }\n"
        "    random_vertical_flip {\n    }\n  }\n  " + text[start:]
    )
    path = tmp_path / "merged.config"
    path.write_text(merged)
    report = preflight(path, tmp_path / "m")
    finding = _finding(report, "CONFIG.last_one_wins")
    assert finding.severity == "error"
    assert "keeps only the last" in finding.message
    assert finding.line == merged[: merged.index("random_vertical_flip")].count("\n") + 1
    assert "own data_augmentation_options" in finding.fix
    # A scalar given twice is the same silent replacement.
    twice = text.replace("num_steps:", "num_steps: 5\n  num_steps:", 1)
    (tmp_path / "twice.config").write_text(twice)
    assert "CONFIG.last_one_wins" in _codes(preflight(tmp_path / "twice.config", tmp_path / "m"))
    assert "CONFIG.last_one_wins" not in _codes(preflight(good_config, tmp_path / "m"))


def test_imagenet_download_without_a_checkpoint(tmp_path, rich_records, monkeypatch):
    from train import offline

    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # an empty Keras cache
    os.makedirs(tmp_path / "home" / ".keras")  # writable, so Keras would use it (not /tmp)
    config = tmp_path / "mobilenet.config"
    config.write_text(
        "model { center_net { num_classes: 3 image_resizer { fixed_shape_resizer { height: 128 "
        'width: 128 } } feature_extractor { type: "mobilenet_v2_fpn" } } }\n'
        + _TRAIN
        + _reader_text(rich_records).replace("READER", "")
    )
    finding = _finding(preflight(config, tmp_path / "m"), "ENV.imagenet_weights")
    assert offline.MOBILENET_V2_FILE in finding.message
    assert offline.keras_cache_dir() in finding.fix and "--checkpoint" in finding.fix
    cache = offline.keras_cache_dir()
    assert cache == str(tmp_path / "home" / ".keras" / "models")
    os.makedirs(cache)
    open(os.path.join(cache, offline.MOBILENET_V2_FILE), "wb").close()
    assert "ENV.imagenet_weights" not in _codes(preflight(config, tmp_path / "m"))
