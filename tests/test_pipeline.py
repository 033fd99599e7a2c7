"""Config parsing, field access, overrides, fixes and the diff (pure; no TensorFlow)."""

from __future__ import annotations

import os

import pytest

from tests.conftest import DEMO_CONFIG
from train.options import RunOptions
from train.pipeline import configfile, fields, rewrite
from train.preflight.findings import ERROR, Edit, Finding

FRCNN = """
model { faster_rcnn { num_classes: 90 feature_extractor { type: "faster_rcnn_resnet50_keras" } } }
train_config { batch_size: 8 num_steps: 100 }
train_input_reader { label_map_path: "a.pbtxt" tf_record_input_reader { input_path: "x" } }
"""
CENTERNET = """
model { center_net { num_classes: 90 feature_extractor { type: "resnet_v2_101" } } }
train_config { batch_size: 8 }
"""


def test_parse_error_has_file_line_and_column():
    with pytest.raises(configfile.ConfigParseError) as info:
        configfile.parse_text("model {\n  ssd {\n    num_clases: 3\n  }\n}\n", "my.config")
    assert (info.value.line, info.value.column) == (3, 5)
    assert str(info.value).startswith("my.config:3:5: ")
    assert "num_clases" in str(info.value)


def test_load_says_what_the_path_is_and_what_to_do(tmp_path):
    cases = {
        str(tmp_path / "nope.config"): ("does not exist", "check the --pipeline_config path"),
        str(tmp_path): ("is a directory, not a file", "pipeline.config file itself"),
    }
    fifo = tmp_path / "pipe.config"
    os.mkfifo(fifo)  # open() on it would block forever
    cases[str(fifo)] = ("is a named pipe (FIFO), not a file", "pipeline.config file itself")
    latin1 = tmp_path / "latin1.config"
    latin1.write_bytes("# caf\xe9\n".encode("latin-1"))
    cases[str(latin1)] = ("is not UTF-8 text (byte 5", "save the config as UTF-8")
    for path, (reason, fix) in cases.items():
        with pytest.raises(configfile.ConfigFileError) as info:
            configfile.load(path)
        assert str(info.value).startswith(f"{path} {reason}"), str(info.value)
        assert fix in info.value.fix


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    config = tmp_path / "bom.config"
    config.write_bytes(b"\xef\xbb\xbf" + FRCNN.encode())
    assert configfile.load(str(config)).proto.model.faster_rcnn.num_classes == 90


def test_find_line_matches_field_names_only():
    text = "# fine_tune_checkpoint: in a comment\ntrain_config {\n  fine_tune_checkpoint: 'x'\n}"
    assert configfile.find_line(text, "fine_tune_checkpoint") == 3
    assert configfile.find_line(text, "num_classes") is None


def test_display_enum_unset_and_lists():
    config = configfile.parse_text(FRCNN)
    assert fields.display(config, "train_config.fine_tune_checkpoint_version") == "(unset)"
    fields.set_value(config, "train_config.fine_tune_checkpoint_version", "V2")
    assert fields.display(config, "train_config.fine_tune_checkpoint_version") == "V2"
    assert fields.display(config, "train_input_reader.tf_record_input_reader.input_path") == "['x']"


def test_floats_show_as_written_not_as_float32_noise():
    assert [fields.float_text(v) for v in (0.6, 1.5, 1e-08, 0.004, 100.0)] == [
        "0.6",
        "1.5",
        "1e-08",
        "0.004",
        "100.0",
    ]
    config = configfile.parse_text(FRCNN)
    path = "train_config.optimizer.momentum_optimizer.momentum_optimizer_value"
    fields.set_value(config, path, 0.9)
    assert str(fields.get(config, path)) != "0.9"  # float32, read back as a double
    assert fields.display(config, path) == "0.9"


def test_the_nms_finding_and_its_change_show_the_written_value(tmp_path):
    from tests.conftest import preflight

    with open(DEMO_CONFIG, encoding="utf-8") as f:
        text = f.read()
    assert "iou_threshold: 0.6" in text
    path = tmp_path / "p.config"
    path.write_text(text.replace("iou_threshold: 0.6", "iou_threshold: 1.7", 1))
    report = preflight(path, tmp_path / "m")
    (nms,) = [f for f in report.findings if f.code == "MODEL.nms"]
    assert "iou_threshold 1.7 is not in [0, 1]" in nms.message
    fixed, changes = rewrite.apply_fixes(configfile.load(str(path)).proto, [nms])
    assert any(c.old == "1.7" and c.new == "0.6" for c in changes), changes


def _options(**kwargs):
    return RunOptions(pipeline_config="p", model_dir="m", **kwargs)


def test_num_classes_override_keeps_the_model_oneof():
    config, changes = rewrite.apply_overrides(configfile.parse_text(FRCNN), _options(num_classes=3))
    assert fields.meta_arch(config) == "faster_rcnn"
    assert config.model.faster_rcnn.num_classes == 3
    assert [str(c) for c in changes] == ["model.faster_rcnn.num_classes: 90 -> 3 (--num_classes)"]


def test_num_classes_override_works_on_centernet():
    # The OD API's own merge_external_params_with_configs silently leaves CenterNet at 90.
    config, _ = rewrite.apply_overrides(configfile.parse_text(CENTERNET), _options(num_classes=2))
    assert config.model.center_net.num_classes == 2


def test_input_overrides_replace_repeated_fields_and_cover_every_reader():
    text = (
        FRCNN
        + 'eval_input_reader { label_map_path: "b" '
        + 'tf_record_input_reader { input_path: "e1" input_path: "e2" } }'
    )
    config, _ = rewrite.apply_overrides(
        configfile.parse_text(text),
        _options(
            label_map="lm.pbtxt", train_input_path=("t*.record",), eval_input_path=("v.record",)
        ),
    )
    assert list(config.train_input_reader.tf_record_input_reader.input_path) == ["t*.record"]
    assert list(config.eval_input_reader[0].tf_record_input_reader.input_path) == ["v.record"]
    assert {
        config.train_input_reader.label_map_path,
        config.eval_input_reader[0].label_map_path,
    } == {"lm.pbtxt"}


def test_overrides_do_not_touch_the_input_proto():
    source = configfile.parse_text(FRCNN)
    before = configfile.to_text(source)
    rewrite.apply_overrides(source, _options(batch_size=2, num_train_steps=5))
    assert configfile.to_text(source) == before


def test_apply_fixes_records_changes_and_clears_fields():
    config = configfile.parse_text(FRCNN + "")
    config.train_config.sync_replicas = True
    findings = [
        Finding(
            "IGNORED_FIELD",
            ERROR,
            "m",
            "f",
            edits=(Edit("train_config.sync_replicas", None, "tf1"),),
        ),
        Finding(
            "CKPT_VERSION",
            ERROR,
            "m",
            "f",
            edits=(Edit("train_config.fine_tune_checkpoint_version", "V2", "v2"),),
        ),
    ]
    fixed, changes = rewrite.apply_fixes(config, findings)
    assert not fixed.train_config.HasField("sync_replicas")
    assert config.train_config.sync_replicas  # the input copy is untouched
    assert [str(c) for c in changes] == [
        "train_config.sync_replicas: True -> (unset) (IGNORED_FIELD: tf1)",
        "train_config.fine_tune_checkpoint_version: (unset) -> V2 (CKPT_VERSION: v2)",
    ]


def test_write_resolved_and_diff(tmp_path):
    source = configfile.load(DEMO_CONFIG)
    config, _ = rewrite.apply_overrides(source.proto, _options(batch_size=2))
    target = tmp_path / "model" / "pipeline.config"
    diff_path = rewrite.write_resolved(str(target), source, configfile.to_text(config))
    assert configfile.to_text(configfile.load(str(target)).proto) == configfile.to_text(config)
    diff = open(diff_path).read()
    assert "-  batch_size: 128\n+  batch_size: 2\n" in diff
    assert sum(1 for line in diff.splitlines() if line.startswith(("+ ", "- "))) == 2
    assert not [n for n in os.listdir(target.parent) if n.startswith(".tmp-")]
