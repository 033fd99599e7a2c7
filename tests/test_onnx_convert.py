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
