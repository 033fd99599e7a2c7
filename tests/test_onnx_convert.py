"""The ONNX conversion's two attempts (train/tf/formats/onnx.py), with real tf2onnx processes.

The conversion runs tf2onnx with its optimizers on the graph itself first, and as tf2onnx runs
by default only when that fails; the error raised is the default's. The fast attempt's output
is checked against the checkpoint in every ONNX export test (test_export_standins, test_demo)
and against the default's file by scripts/bench_onnx_convert.py.
"""

from __future__ import annotations

import pytest


def test_a_failed_conversion_is_tried_again_as_by_default_then_raises(tmp_path, capfd):
    from train.tf.formats import onnx

    missing = tmp_path / "no_saved_model"
    out = tmp_path / "model.onnx"
    with pytest.raises(RuntimeError, match=r"^tf2onnx failed \(exit 1\): ") as raised:
        onnx.convert(str(missing), str(out))
    printed = capfd.readouterr().out
    assert "converting again as by default" in printed
    assert str(missing) in printed  # both processes' logs go to the finish log
    assert "Traceback" not in str(raised.value)  # its last line, not the whole stack
    assert not out.exists()


@pytest.mark.parametrize(
    ("resizer", "expected"),
    [
        ("fixed_shape_resizer { height: 96 width: 128 }", (96, 128)),
        ("fixed_shape_resizer { height: 96 width: 128 resize_method: NEAREST_NEIGHBOR }", None),
        ("fixed_shape_resizer { height: 96 width: 128 convert_to_grayscale: true }", None),
        ("keep_aspect_ratio_resizer { min_dimension: 96 max_dimension: 96 }", None),
    ],
)
def test_only_a_fixed_bilinear_colour_resize_lets_pictures_be_fed_resized(resizer, expected):
    from google.protobuf import text_format
    from object_detection.protos import pipeline_pb2

    from train.tf import exporting

    pipeline = text_format.Parse(
        f"model {{ ssd {{ image_resizer {{ {resizer} }} }} }}",
        pipeline_pb2.TrainEvalPipelineConfig(),
    )
    assert exporting.resized_like_this(pipeline) == expected


def test_the_files_resize_entry_is_read_only_when_complete():
    from train.tf.formats import onnx

    key = onnx.RESIZED_KEY
    good = '{"height": 192, "width": 160, "resize": "tf1_bilinear"}'
    assert onnx.resized_size({key: good}) == (192, 160)
    for bad in (
        "",
        "not json",
        "[192, 160]",
        '{"height": 192, "width": 160}',  # which resize: unknown
        '{"height": 192, "width": 160, "resize": "bicubic"}',
        '{"height": 0, "width": 160, "resize": "tf1_bilinear"}',
        '{"height": "x", "width": 160, "resize": "tf1_bilinear"}',
    ):
        assert onnx.resized_size({key: bad}) is None, bad
    assert onnx.resized_size({}) is None
    assert onnx.resized_size({"other": good}) is None
