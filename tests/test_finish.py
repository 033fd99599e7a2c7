"""The end of a run: final eval, best checkpoint, early stopping, verified export (issue 12).

One driver run (module scope) serves every assertion about the driver: a zero learning rate
and frozen batch norm make every checkpoint the same model, so the metric never improves and
`--patience` stops it early; `--checkpoint_max_to_keep 1`
makes the trainer delete the best step's own checkpoint, which model_dir/best keeps; the
OD API's own continuous evaluation (`--eval`) is the reference the final eval must equal.
It exports the SavedModel; the TFLite, ONNX and train.predict tests use the demo's run
(tests/test_demo.py), a model that learnt, with every model kind.
"""

from __future__ import annotations

import glob
import json
import os

import pytest

from tests.conftest import run_python
from tests.helpers import demo_driver_args, small_demo_config, zero_learning_rate_config

HEADLINE = (
    "DetectionBoxes_Precision/mAP",
    "DetectionBoxes_Precision/mAP@.50IOU",
    "DetectionBoxes_Precision/mAP@.75IOU",
    "DetectionBoxes_Recall/AR@100",
)


def _scalars(directory: str) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of the scalar summaries in `directory`'s events files."""
    import tensorflow as tf

    found: dict[str, dict[int, float]] = {}
    for path in sorted(glob.glob(f"{directory}/events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.HasField("tensor"):
                    array = tf.make_ndarray(value.tensor)
                    if array.size != 1 or array.dtype.kind not in "fiu":
                        continue  # images, text
                    number = float(array.reshape(()))
                else:
                    number = value.simple_value
                found.setdefault(value.tag, {})[event.step] = number
    return found


@pytest.fixture(scope="module")
def finished(demo_assets, tmp_path_factory):
    """A driver run with --eval, early stopping, and an export of the best checkpoint."""
    from train.tf import standin

    work = tmp_path_factory.mktemp("finish")
    small = small_demo_config(work)  # the input size is not what these tests are about
    config = zero_learning_rate_config(small, str(work / "zero_lr.config"), freeze_batchnorm=True)
    # A 3-class stand-in restored whole (--restore=transplant), calibrated on the training
    # images so it scores boxes apart as a trained model does: a random one scores every
    # anchor ~0.0102 whatever the image, and no comparison of two detectors is decisive on
    # ties (the TFLite verification was inconclusive in some runs).
    start = standin.build_standin(
        small,
        str(work / "zoo"),
        num_classes=3,
        shift=(-0.01, 0.01),
        calibrate_on=(demo_assets["train"],),
    )
    model_dir = work / "m"
    report = work / "report.json"
    done = run_python(
        demo_driver_args(
            demo_assets,
            model_dir,
            "--num_train_steps=2000",  # never reached: the early stop ends it
            "--batch_size=1",
            "--checkpoint_every_n=20",
            "--checkpoint_max_to_keep=1",
            "--eval",
            "--patience=2",
            "--min_delta=0.01",
            "--export=saved_model",  # TFLite, ONNX and predict: on the demo's run (test_demo.py)
            "--verify_images=4",
            "--restore=transplant",
            f"--report_json={report}",
            config=config,
            checkpoint=start,
            final_eval=True,
        ),
        timeout=1500,
    )
    return {
        "run": done,
        "model_dir": str(model_dir),
        "report": json.loads(report.read_text()),
        "out": done.stdout + done.stderr,
    }


@pytest.mark.slow
def test_early_stop_ends_the_run_normally_and_says_why(finished):
    out, report = finished["out"], finished["report"]
    assert finished["run"].returncode == 0, out[-4000:]
    assert "early stop: DetectionBoxes_Precision/mAP has not improved for 2 evaluations" in out
    early = report["early_stop"]
    assert early["evaluations"] == 2 and early["metric"] == "DetectionBoxes_Precision/mAP"
    final_step = report["eval"]["final"]["step"]
    assert early["step"] <= final_step < 2000  # stopped well before the 2000 steps
    assert report["outcome"]["status"] == "ok"
    done = f"done (stopped early): checkpoints in {finished['model_dir']} (ckpt-* at step "
    assert f"{done}{final_step})" in out


@pytest.mark.slow
def test_best_checkpoint_survives_checkpoint_max_to_keep(finished):
    model_dir, report = finished["model_dir"], finished["report"]
    best = report["eval"]["best"]
    assert best["metric"] == "DetectionBoxes_Precision/mAP"
    assert os.path.isfile(best["checkpoint"] + ".index")
    assert os.path.dirname(best["checkpoint"]) == os.path.join(model_dir, "best")
    # The trainer kept one checkpoint: the best step's own copy in model_dir is gone.
    kept = glob.glob(os.path.join(model_dir, "ckpt-*.index"))
    assert len(kept) == 1
    assert best["step"] < report["eval"]["final"]["step"]
    assert not os.path.exists(
        os.path.join(model_dir, os.path.basename(best["checkpoint"]) + ".index")
    )
    # The best step is the first evaluation's: nothing after it improved by min_delta.
    evaluated = _scalars(os.path.join(model_dir, "eval"))["DetectionBoxes_Precision/mAP"]
    assert best["step"] == min(evaluated)
    assert best["value"] == pytest.approx(evaluated[best["step"]], abs=1e-6)
    assert f"best checkpoint: {best['checkpoint']} (step {best['step']}" in finished["out"]


@pytest.mark.slow
def test_final_eval_equals_the_od_apis_continuous_evaluation(finished):
    model_dir, report = finished["model_dir"], finished["report"]
    final = report["eval"]["final"]
    continuous = _scalars(os.path.join(model_dir, "eval"))
    for name in HEADLINE:
        assert final["metrics"][name] == pytest.approx(continuous[name][final["step"]], abs=1e-6)
    assert set(final["per_class"]) == {"square", "circle", "triangle"}
    # The COCO mAP is the mean of the per-class APs of the classes present.
    present = [v for v in final["per_class"].values() if v >= 0]
    assert final["metrics"]["DetectionBoxes_Precision/mAP"] == pytest.approx(
        sum(present) / len(present), abs=1e-6
    )
    written = _scalars(os.path.join(model_dir, "final", "eval"))
    assert written["DetectionBoxes_Precision/mAP"][final["step"]] == pytest.approx(
        final["metrics"]["DetectionBoxes_Precision/mAP"], abs=1e-6
    )
    assert "final eval (step" in finished["out"] and "AP per class:" in finished["out"]
    assert "evaluation: finished; summaries in" in finished["out"]  # the evaluator ended too


@pytest.mark.slow
def test_export_of_the_best_checkpoint_is_verified(finished):
    model_dir, report = finished["model_dir"], finished["report"]
    best = report["eval"]["best"]["checkpoint"]
    export = report["export"]
    saved = export["saved_model"]
    assert saved["checkpoint"] == best
    assert saved["verified"], saved
    assert saved["comparison"]["compared"] > 0
    assert saved["comparison"]["matched"] == saved["comparison"]["compared"]
    layout = os.path.join(model_dir, "export", "saved_model")
    assert os.path.isfile(os.path.join(layout, "saved_model", "saved_model.pb"))
    assert os.path.isfile(os.path.join(layout, "pipeline.config"))
    assert glob.glob(os.path.join(layout, "checkpoint", "ckpt-0.index"))
    assert "export saved_model:" in finished["out"]
    assert not glob.glob(os.path.join(model_dir, "export", ".staging-*"))


@pytest.mark.slow
def test_contact_sheet_shows_the_evaluations_worst_pictures(finished, demo_assets):
    from PIL import Image

    from train.data import scan

    path = os.path.join(finished["model_dir"], "eval", "detections.png")
    assert finished["report"]["contact_sheet"] == path
    shown = min(8, scan.count_records([demo_assets["eval"]]))  # runviews.SHEET_IMAGES
    columns = min(4, shown)
    rows = -(-shown // columns)
    with Image.open(path) as sheet:
        assert sheet.size == (max(640, columns * 320), 22 + rows * (320 + 18))
    assert f"detections drawn: {path}" in finished["out"]


@pytest.mark.slow
def test_plots_come_from_the_final_evaluations_own_detections(finished, demo_assets):
    from PIL import Image

    from train import evalcurves
    from train.data import scan

    model_dir, report = finished["model_dir"], finished["report"]
    curves = report["curves"]
    plots_dir = os.path.join(model_dir, "plots")
    assert sorted(curves["plots"]) == [
        "confusion_matrix",
        "f1_threshold",
        "pr_curves",
        "training_curves",
        "training_data",
    ]
    # The training data as the 320 px model sees it: every box counted, none under the
    # 16 px the smallest anchor (32 px, FPN level 3) needs.
    data = curves["data"]
    assert data["records"] == scan.count_records([demo_assets["train"]])
    assert data["smallest_anchor_px"] == 32.0 and data["too_small"] == 0
    assert set(data["per_class"]) <= {"square", "circle", "triangle"}
    for path in curves["plots"].values():
        assert os.path.dirname(path) == plots_dir
        with Image.open(path) as image:
            assert image.format == "PNG"
    # Every eval image as the COCO evaluator got it: its mAP@.5 is the mean of ours per class.
    evalset = evalcurves.EvalSet.read(os.path.join(plots_dir, "detections.json"))
    assert len(evalset.images) == scan.count_records([demo_assets["eval"]])
    assert set(curves["ap50"]) == {"square", "circle", "triangle"}
    present = [ap for ap in curves["ap50"].values() if ap is not None]
    final = report["eval"]["final"]["metrics"]
    assert sum(present) / len(present) == pytest.approx(
        final["DetectionBoxes_Precision/mAP@.50IOU"], abs=1e-6
    )
    assert evalcurves.summary(evalset)["threshold"] == curves["threshold"]
    with open(os.path.join(plots_dir, "curves.json"), encoding="utf-8") as f:
        assert json.load(f)["threshold"] == curves["threshold"]
    labels = curves["confusion"]["labels"]
    assert labels == ["square", "circle", "triangle"]
    assert f"recommended score threshold: {curves['threshold']:.2f}" in finished["out"]
    # The same pictures in TensorBoard, beside the final evaluation's scalars.
    import tensorflow as tf

    tags = set()
    for events in glob.glob(os.path.join(model_dir, "final", "eval", "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(events):
            tags.update(value.tag for value in event.summary.value)
    assert {f"plots/{name}" for name in curves["plots"]} <= tags
    # The training curves: train_loop's losses (not the evaluator's losses of the same names)
    # and the evaluator's mAP.
    from train.tf import runviews

    scalars = runviews.run_scalars(model_dir)
    assert (
        scalars["Loss/total_loss"] == _scalars(os.path.join(model_dir, "train"))["Loss/total_loss"]
    )
    evaluated = _scalars(os.path.join(model_dir, "eval"))["DetectionBoxes_Precision/mAP"]
    assert scalars["DetectionBoxes_Precision/mAP"] == pytest.approx(evaluated)


@pytest.mark.slow
def test_the_run_report_reads_in_a_browser_with_everything_in_it(finished):
    from tests.helpers import render_in_chromium

    page = os.path.join(finished["model_dir"], "report.html")
    assert f"run report: {page}" in finished["out"]
    seen = render_in_chromium(page)
    assert seen["errors"] == []
    assert all(url.startswith(("file:", "data:")) for url in seen["requests"]), seen["requests"]
    loaded = {alt: width for alt, complete, width in seen["images"] if complete and width > 0}
    assert set(loaded) == {
        "training curves",
        "pr curves",
        "f1 threshold",
        "confusion matrix",
        "training data",
        "contact sheet",
    }, seen["images"]
    for heading in (
        "Command and machine",
        "Preflight and the config's changes",
        "Restore and freezing",
        "Plots of the final evaluation",
        "Exports, each against the checkpoint",
    ):
        assert heading in seen["headings"]
    text = open(page, encoding="utf-8").read()  # noqa: SIM115
    threshold = finished["report"]["curves"]["threshold"]
    assert f"Recommended score threshold: <b>{threshold:.2f}</b>" in text
    assert finished["report"]["export"]["saved_model"]["path"] in text


@pytest.mark.slow
def test_standalone_evaluate_matches_the_run(finished, tmp_path):
    model_dir, report = finished["model_dir"], finished["report"]
    best = report["eval"]["best"]
    out_json = tmp_path / "eval.json"
    done = run_python(
        [
            "-m",
            "train.evaluate",
            f"--model_dir={model_dir}",
            f"--checkpoint={best['checkpoint']}",
            f"--report_json={out_json}",
        ]
    )
    assert done.returncode == 0, done.stderr[-3000:]
    evaluated = json.loads(out_json.read_text())["eval"]["final"]
    assert evaluated["step"] == best["step"]
    assert evaluated["metrics"]["DetectionBoxes_Precision/mAP"] == pytest.approx(
        best["value"], abs=1e-6
    )


@pytest.mark.slow
def test_an_export_that_fails_is_a_finding_in_the_report(finished, tmp_path):
    """A real failure of the finish child (its export folder cannot be made): EXPORT.failed."""
    from train import errors

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the export folder would go\n")
    out_json = tmp_path / "export.json"
    done = run_python(
        [
            "-m",
            "train.export",
            f"--model_dir={finished['model_dir']}",
            "--export=saved_model",
            "--verify_images=1",
            f"--out={blocker / 'exports'}",  # under a file: the child cannot make it
            f"--report_json={out_json}",
        ]
    )
    assert done.returncode == errors.EXIT_FINISH, done.stderr[-3000:]
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("error: ")]
    assert line.startswith("error: EXPORT.failed: reference failed: NotADirectoryError")
    assert "Traceback" not in done.stderr
    (finding,) = json.loads(out_json.read_text())["findings"]
    assert finding["code"] == "EXPORT.failed" and "train.export" in finding["fix"]
    assert blocker.read_text().startswith("a file where")  # the input is not written over
