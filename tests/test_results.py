"""The TF-free end of a run: detection comparison, best-metric direction, EXPORT.* rules, usage.

Fast: no model is built. The driver runs and the exports themselves are in test_finish.py,
test_demo.py and test_export_standins.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import DEMO_CONFIG, preflight, run_python
from train import results, verify
from train.pipeline import configfile


def _dets(rows, slots=None):
    """Detections from (ymin, xmin, ymax, xmax, class, score) rows; `slots`: the output size
    (the rest padding), default one more than the rows (not full)."""
    rows = np.array(rows, dtype=float).reshape(-1, 6)
    slots = slots or len(rows) + 1
    padded = np.zeros((slots, 6))
    padded[: len(rows)] = rows
    return verify.Detections.of(padded[:, :4], padded[:, 4], padded[:, 5], len(rows))


REFERENCE = _dets(
    [
        (0.1, 0.1, 0.5, 0.5, 1, 0.9),
        (0.5, 0.5, 0.9, 0.9, 2, 0.8),
        (0.0, 0.6, 0.3, 1.0, 3, 0.7),
    ]
)


def test_identical_detections_in_another_order_match_exactly():
    shuffled = _dets(
        [
            (0.0, 0.6, 0.3, 1.0, 3, 0.7),
            (0.1, 0.1, 0.5, 0.5, 1, 0.9),
            (0.5, 0.5, 0.9, 0.9, 2, 0.8),
        ]
    )
    comparison = verify.Comparison(verify.TOLERANCES["saved_model"])
    comparison.add(REFERENCE, shuffled)
    assert (comparison.compared, comparison.matched) == (3, 3)
    assert comparison.max_box_delta == 0 and comparison.max_score_delta == 0
    assert comparison.conclusive and comparison.problem() is None


def test_small_drift_passes_float16_but_not_float32():
    drifted = _dets(
        [
            (0.1, 0.1, 0.5, 0.51, 1, 0.88),
            (0.5, 0.5, 0.9, 0.9, 2, 0.8),
            (0.0, 0.6, 0.3, 1.0, 3, 0.7),
        ]
    )
    tight = verify.Comparison(verify.TOLERANCES["saved_model"])
    loose = verify.Comparison(verify.TOLERANCES["tflite_float16"])
    for comparison in (tight, loose):
        comparison.add(REFERENCE, drifted)
    assert tight.max_box_delta == pytest.approx(0.01) and tight.max_score_delta == pytest.approx(
        0.02
    )
    assert "boxes differ by up to 0.01" in tight.problem()
    assert "scores differ by up to 0.02" in tight.problem()
    assert loose.problem() is None


def test_garbage_detections_fail_on_matches():
    """Wrong preprocessing on a device: boxes elsewhere, classes shuffled."""
    garbage = _dets([(0.6, 0.0, 0.9, 0.2, 2, 0.9), (0.0, 0.0, 0.1, 0.1, 1, 0.85)])
    comparison = verify.Comparison(verify.TOLERANCES["tflite_int8"])
    comparison.add(REFERENCE, garbage)
    assert comparison.matched == 0 and comparison.compared == 3
    assert "only 0/3 of the checkpoint's detections found" in comparison.problem()


def test_the_same_degenerate_box_is_the_same_detection():
    """An untrained CenterNet emits zero-area boxes; identical ones still match, others not."""
    point = _dets([(0.3, 1.0, 0.3, 1.0, 2, 0.99)])
    comparison = verify.Comparison(verify.TOLERANCES["saved_model"])
    comparison.add(point, point)
    assert comparison.matched == comparison.compared == 1
    moved = verify.Comparison(verify.TOLERANCES["saved_model"])
    moved.add(point, _dets([(0.3, 0.9, 0.3, 0.9, 2, 0.99)]))
    assert moved.matched == 0


def test_a_small_box_in_whole_pixels_matches_within_the_box_tolerance():
    """MediaPipe returns whole pixels: a 6-pixel box of a 160-pixel image moves its edges by up
    to one pixel (0.00625), within the TFLite row's 0.01, and its IoU falls to ~0.65."""
    small = _dets([(0.7314, 0.8191, 0.7701, 0.8613, 1, 0.44)])
    rounded = _dets([(0.725, 0.81875, 0.7625, 0.85625, 1, 0.4427)])
    assert verify.iou(small.boxes[0], rounded.boxes)[0] < 0.9
    comparison = verify.Comparison(verify.TOLERANCES["tflite"])
    comparison.add(small, rounded)
    assert comparison.matched == comparison.compared == 1 and comparison.problem() is None
    stricter = verify.Comparison(verify.TOLERANCES["saved_model"])  # 0.001: not the same box
    stricter.add(small, rounded)
    assert stricter.matched == 0 and stricter.problem()


def test_class_off_by_one_is_not_a_match():
    shifted = verify.Detections(REFERENCE.boxes, REFERENCE.classes + 1, REFERENCE.scores)
    comparison = verify.Comparison(verify.TOLERANCES["saved_model"])
    comparison.add(REFERENCE, shifted)
    assert comparison.matched == 0 and comparison.problem()


def test_ties_at_the_cut_are_inconclusive_never_a_pass():
    """A barely trained model scores every box alike: the exported list may rank others."""
    flat = _dets([(0.1 * i, 0.0, 0.1 * i + 0.1, 0.1, 1, 0.0117) for i in range(5)], slots=5)
    elsewhere = _dets(
        [(0.0, 0.5 + 0.05 * i, 0.1, 0.55 + 0.05 * i, 1, 0.0117) for i in range(5)], slots=5
    )
    comparison = verify.Comparison(verify.TOLERANCES["tflite_int8"])
    comparison.add(flat, elsewhere)
    assert comparison.at_cut == 5 and comparison.compared == 0
    assert not comparison.conclusive
    # The same list with a free slot left: nothing was cut, so each is a plain miss.
    missed = verify.Comparison(verify.TOLERANCES["tflite_int8"])
    missed.add(flat, _dets([(0.0, 0.5, 0.1, 0.55, 1, 0.0117)] * 5, slots=6))
    assert missed.compared == 5 and missed.matched == 0 and missed.problem()


def test_an_export_that_invents_detections_fails():
    """The checkpoint finds nothing; the export finds boxes: not "nothing to compare"."""
    nothing = _dets([])
    invented = _dets([(0.1, 0.1, 0.5, 0.5, 1, 0.6), (0.2, 0.2, 0.4, 0.4, 2, 0.5)])
    comparison = verify.Comparison(verify.TOLERANCES["saved_model"])
    comparison.add(nothing, invented)
    assert comparison.compared == 0 and comparison.extra == 2
    assert comparison.conclusive
    assert "2/2 of the export's top detections are not the checkpoint's" in comparison.problem()
    line = results.render_export(
        {
            "tflite": {
                "format": "tflite_int8",
                "path": "m.tflite",
                "size_bytes": 3_400_000,
                "comparison": comparison.as_dict(),
                "conclusive": False,
                "problem": None,
                "images": 1,
                "latency_ms": 30.0,
                "reference_latency_ms": 80.0,
            }
        }
    )[0]
    assert "INCONCLUSIVE" in line and "verified" not in line


def test_best_metric_direction_and_min_delta():
    assert results.improved("DetectionBoxes_Precision/mAP", 0.31, 0.30, 0.0)
    assert not results.improved("DetectionBoxes_Precision/mAP", 0.305, 0.30, 0.01)
    assert results.improved("Loss/total_loss", 0.9, 1.0, 0.05)
    assert not results.improved("Loss/total_loss", 1.1, 1.0, 0.0)
    assert results.improved("DetectionBoxes_Recall/AR@100", 0.0, None, 0.5)


def test_render_eval_lists_the_worst_class_first():
    text = results.render_eval(
        {
            "step": 120,
            "checkpoint": "m/ckpt-3",
            "metrics": {
                "DetectionBoxes_Precision/mAP": 0.4,
                "DetectionBoxes_Precision/mAP@.50IOU": 0.7,
                "DetectionBoxes_Precision/mAP@.75IOU": 0.35,
                "DetectionBoxes_Recall/AR@100": 0.5,
            },
            "per_class": {"cat": 0.6, "dog": 0.2, "owl": -1.0},
        }
    )
    assert text.splitlines()[0] == (
        "final eval (step 120, m/ckpt-3): mAP@[.5:.95] 0.4000  mAP@.5 0.7000  mAP@.75 0.3500  "
        "AR@100 0.5000"
    )
    names = [line.split()[0] for line in text.splitlines()[2:]]
    assert names == ["owl", "dog", "cat"]
    assert "no eval boxes" in text.splitlines()[2]


def test_formats_parse_in_order_and_refuse_unknown_names():
    assert results.parse_formats(["tflite,saved_model"]) == ("saved_model", "tflite")
    assert results.parse_formats(["tflite", "tflite"]) == ("tflite",)
    with pytest.raises(results.UsageError, match="coreml"):
        results.parse_formats(["saved_model,coreml"])


def _codes(report):
    return {f.code: f for f in report.findings}


def test_export_preflight_rules(tmp_path, good_config, good_options):
    ok = _codes(
        preflight(good_config, tmp_path / "a", export=("saved_model,tflite",), **good_options)
    )
    assert not [c for c in ok if c.startswith("EXPORT")]

    quiet = _codes(preflight(good_config, tmp_path / "b", tflite_quantize="int8", **good_options))
    assert quiet["EXPORT.quantize_unused"].severity == "warning"

    config = configfile.load(str(good_config)).proto
    config.model.ssd.image_resizer.keep_aspect_ratio_resizer.min_dimension = 320
    config.model.ssd.image_resizer.keep_aspect_ratio_resizer.max_dimension = 384
    keep = tmp_path / "keep.config"
    keep.write_text(configfile.to_text(config))
    found = _codes(preflight(keep, tmp_path / "c", export=("tflite",), **good_options))
    resizer = found["EXPORT.tflite_resizer"]
    assert resizer.severity == "error" and not resizer.fixable  # never applied silently
    assert "fixed_shape_resizer { height: 384 width: 384 }" in resizer.fix
    assert resizer.line == keep.read_text().splitlines().index("    image_resizer {") + 1

    options = {**good_options, "train_input_path": ()}
    config = configfile.load(str(good_config)).proto
    del config.train_input_reader.tf_record_input_reader.input_path[:]
    empty = tmp_path / "empty.config"
    empty.write_text(configfile.to_text(config))
    found = _codes(
        preflight(empty, tmp_path / "d", export=("tflite",), tflite_quantize="int8", **options)
    )
    assert "EXPORT.int8_calibration" in found


def test_onnx_of_an_hourglass_needs_the_memory_tf2onnx_was_measured_to_need(
    shared_fixtures, tmp_path, good_options
):
    """EXPORT.onnx_memory: exactly the 8 zoo configs on Hourglass-104, below 32 GB only."""
    import glob
    import os

    from train import envinfo, exportformats

    gb = 1024**3
    flagged = {24: [], 64: [], None: []}
    for path in sorted(glob.glob(os.path.join(shared_fixtures, "zoo_tf2", "*.config"))):
        config = configfile.load(path).proto
        for memory in flagged:
            found = exportformats.problems(config, ("saved_model", "onnx"), memory and memory * gb)
            if found:
                assert [name for name, _ in found] == ["onnx"]
                flagged[memory].append(os.path.basename(path))
    assert len(flagged[24]) == 8 and flagged[64] == [] and flagged[None] == []
    assert all("hourglass104" in name or "deepmac" in name for name in flagged[24])
    # The preflight applies it with this machine's memory, as the export would run here.
    hourglass = os.path.join(shared_fixtures, "zoo_tf2", flagged[24][0])
    expected = exportformats.onnx_problem(
        configfile.load(hourglass).proto, envinfo.host_memory_bytes()
    )
    found = _codes(preflight(hourglass, tmp_path / "m", export=("onnx",), **good_options))
    assert ("EXPORT.onnx_memory" in found) is (expected is not None)
    if expected is not None:
        assert found["EXPORT.onnx_memory"].severity == "error"
        assert "python -m train.export" in found["EXPORT.onnx_memory"].fix


@pytest.mark.slow
def test_tflite_of_faster_rcnn_stops_before_anything_is_built(tmp_path, demo_assets):
    """The CLI: EXPORT.tflite_arch, exit 3, in the preflight (no child process started)."""
    frcnn = tmp_path / "frcnn.config"
    frcnn.write_text(
        "model { faster_rcnn { num_classes: 3 image_resizer { fixed_shape_resizer { height: 64 "
        "width: 64 } } feature_extractor { type: 'faster_rcnn_resnet50_keras' } } }\n"
        "train_config { batch_size: 1 num_steps: 2 optimizer { momentum_optimizer { "
        "learning_rate { constant_learning_rate { learning_rate: 0.01 } } } } }\n"
    )
    done = run_python(
        [
            "-m",
            "train.finetune",
            f"--pipeline_config={frcnn}",
            f"--model_dir={tmp_path / 'm'}",
            f"--label_map={demo_assets['label_map']}",
            f"--train_input_path={demo_assets['train']}",
            "--export=saved_model,tflite",
        ]
    )
    assert done.returncode == 3, done.stderr[-3000:]
    assert "EXPORT.tflite_arch" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "m" / "logs").exists()  # nothing was started
    # train.export says the same before building anything (exit 2: what was asked is impossible).
    export = run_python(
        [
            "-m",
            "train.export",
            f"--model_dir={tmp_path}",
            f"--pipeline_config={frcnn}",
            "--export=saved_model,tflite",
        ]
    )
    assert export.returncode == 2, export.stderr[-3000:]
    assert "EXPORT.tflite_arch" in export.stderr and "fix: export saved_model only" in export.stderr


def test_usage_errors_of_the_new_flags(tmp_path, demo_assets):
    base = [
        "-m",
        "train.finetune",
        f"--pipeline_config={DEMO_CONFIG}",
        f"--model_dir={tmp_path / 'm'}",
    ]
    unknown = run_python([*base, "--export=saved_model,coreml"])
    assert unknown.returncode == 2
    assert "--export: unknown export format(s) coreml" in unknown.stderr
    patience = run_python([*base, "--patience=3"])
    assert patience.returncode == 2 and "--patience needs --eval" in patience.stderr
    export = run_python(["-m", "train.export", f"--model_dir={tmp_path}", "--export=coreml"])
    assert export.returncode == 2 and "--export: unknown export format(s) coreml" in export.stderr
    alias = run_python(["-m", "train.export", f"--model_dir={tmp_path}", "--formats=coreml"])
    assert alias.returncode == 2 and "unknown export format(s) coreml" in alias.stderr
    empty = run_python(["-m", "train.evaluate", f"--model_dir={tmp_path}"])
    assert empty.returncode == 2 and "pipeline.config" in empty.stderr
    assert "Traceback" not in empty.stderr


@pytest.mark.parametrize(
    "phase,code,command",
    [
        ("eval", "EVAL.failed", "train.evaluate"),
        ("reference", "EXPORT.failed", "train.export"),
        ("export_tflite", "EXPORT.failed", "train.export"),
        ("verify_saved_model", "EXPORT.failed", "train.export"),
    ],
)
def test_a_failed_end_of_run_is_one_finding_by_phase(phase, code, command):
    from train import outcomes
    from train.contracts import FAILED, Outcome

    outcome = Outcome(FAILED, error="OSError: disk quota exceeded", phase=phase)
    finding = outcomes.of_finish(outcome, "/m/logs/finish.log")
    assert (finding.code, finding.severity) == (code, "error")
    assert finding.message == f"{phase} failed: OSError: disk quota exceeded"
    assert f"python -m {command}" in finding.fix and "/m/logs/finish.log" in finding.fix


def test_a_rejected_export_is_the_export_verify_finding():
    from train import outcomes

    finding = outcomes.export_rejected(["tflite"], "/m/export", "/m/logs/finish.log")
    assert finding.code == "EXPORT.verify"
    assert finding.message.startswith("tflite detect(s) differently from the checkpoint")
    assert "/m/export/rejected" in finding.message
    assert finding.printed().startswith("error: EXPORT.verify: tflite detect(s)")
