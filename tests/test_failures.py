"""train.failures: a child's failure as a finding; errors.one_line on TF's wrapped errors."""

from __future__ import annotations

from train import errors, failures
from train.pipeline import configfile

_SSD = """
model { ssd { num_classes: 3
  image_resizer { fixed_shape_resizer { height: 128 width: 128 } }
  feature_extractor { type: "ssd_mobilenet_v2_keras" }
} }
train_config { batch_size: 2 data_augmentation_options { random_crop_pad_image {
  min_padded_size_ratio: 1.0 } } }
train_input_reader { load_instance_masks: true num_keypoints: 0 }
"""


def _config(text=_SSD):
    return configfile.parse_text(text)


def test_known_messages_get_the_code_of_the_rule_the_preflight_mirrors():
    config = _config()
    cases = {
        "ValueError: Number of feature maps is expected to equal the length of "
        "`num_anchors_per_location`.": "MODEL.anchor_layers",
        "ValueError: second_stage_batch_size should be no greater than "
        "first_stage_max_proposals.": "MODEL.proposals",
        "DownloadRefused: the model build would download x.h5": "ENV.imagenet_weights",
        "Exception: URL fetch failure on https://example/x.h5": "ENV.imagenet_weights",
        "ValueError: image size must be >= 129 in both height and width": "MODEL.image_size",
    }
    for error, code in cases.items():
        diagnosis = failures.diagnose("model", error, config)
        assert diagnosis.code == code, error
        assert error[:40] in diagnosis.message and diagnosis.fix and diagnosis.field
        assert "checkpoint" not in diagnosis.message.lower()


def test_unknown_failures_are_named_by_phase_and_point_at_the_named_field():
    config = _config()
    build = failures.diagnose("model", "ValueError: something odd", config)
    assert build.code == "MODEL.build" and build.field == "model"
    named = failures.diagnose(
        "input", "ValueError: min_padded_size_ratio should have 2 elements if set!", config
    )
    assert named.code == "INPUT.pipeline" and named.field == "min_padded_size_ratio"
    first = failures.diagnose("first_step", "InvalidArgumentError: odd", config)
    assert first.code == "TRAIN.first_step" and "--rehearse" in first.fix
    nan = failures.diagnose("loss", "FloatingPointError: non-finite losses Loss/x=nan", config)
    assert nan.code == "MODEL.loss_non_finite"


def test_the_gather_error_names_what_the_reader_loads():
    error = "InvalidArgumentError: indices[0] = 0 is not in [0, 0) [[{{node GatherV2}}]]"
    masks = failures.diagnose("first_step", error, _config())
    assert masks.code == "INPUT_DATA.masks" and masks.field == "load_instance_masks"
    keypoints = _config(
        _SSD.replace("load_instance_masks: true num_keypoints: 0", "num_keypoints: 17")
    )
    diagnosis = failures.diagnose("input", error, keypoints)
    assert diagnosis.code == "INPUT_DATA.keypoints" and "17 keypoints" in diagnosis.message


def test_one_line_unwraps_keras_and_tf_function_errors():
    keras = ValueError(
        "Exception encountered when calling layer 'EfficientDet-D0' (type X).\n\n"
        "image size must be >= 129 in both height and width; image dim = 128,128\n\n"
        "Call arguments received by layer 'EfficientDet-D0' (type X):\n  • inputs=..."
    )
    line = errors.one_line(keras)
    assert line.startswith("ValueError: image size must be >= 129")
    assert "'EfficientDet-D0'" in line
    traced = ValueError(
        'in user code:\n\n    File "x.py", line 3, in f\n        g()\n\n'
        "    ValueError: min_padded_size_ratio should have 2 elements if set!\n"
    )
    assert errors.one_line(traced) == (
        "ValueError: min_padded_size_ratio should have 2 elements if set!"
    )
    assert errors.one_line(KeyError("plain")) == "KeyError: 'plain'"
