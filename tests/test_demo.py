"""`make demo` as a newcomer runs it: the stand-in learns the shapes, every export verified.

One run of `python -m train.demo` (about 4 minutes on 2 cores): 300 steps from the stand-in
zoo folder, the final evaluation, SavedModel, TFLite (in MediaPipe too) and ONNX, then
train.predict with the TFLite file on the eval pictures. It runs from a wheel installed
outside the source tree (`pip install .` as a user does, not the editable tree), so the same
run shows that the package carries the demo's config and that every step runs from it.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def _install_wheel(work) -> str:
    """Builds the project's wheel and installs it (no deps) into a folder; returns it."""
    wheels, target = work / "wheels", work / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), ROOT]
    subprocess.run(build, check=True, capture_output=True)
    (wheel,) = glob.glob(str(wheels / "*.whl"))
    install = [*pip, "install", "--no-deps", "--target", str(target), wheel]
    subprocess.run(install, check=True, capture_output=True)
    return str(target)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    site = _install_wheel(work)
    out = work / "out"
    done = subprocess.run(  # outside the source tree, the installed copy first on the path
        [sys.executable, "-m", "train.demo", f"--out={out}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": site, "TF_CPP_MIN_LOG_LEVEL": "2"},
        cwd=work,
        timeout=1200,
    )
    model_dir = out / "model"
    report = model_dir / "report.json"
    return {
        "run": done,
        "site": site,
        "out": str(out),
        "model_dir": str(model_dir),
        "log": done.stdout + done.stderr,
        "report": json.loads(report.read_text()) if report.is_file() else {},
    }


def test_the_demo_learns_the_shapes(demo):
    assert demo["run"].returncode == 0, demo["log"][-4000:]
    final = demo["report"]["eval"]["final"]
    assert final["metrics"]["DetectionBoxes_Precision/mAP@.50IOU"] >= 0.5
    printed = re.search(r"final eval \(step 300, .*\): .*mAP@\.5 ([0-9.]+)", demo["log"])
    assert printed and float(printed.group(1)) >= 0.5
    curves = demo["report"]["curves"]
    assert curves["f1"] >= 0.4 and 0.05 <= curves["threshold"] <= 0.95
    assert min(curves["ap50"].values()) > 0  # every class found, not one learnt


def test_the_standin_folders_config_is_the_zoo_config_but_for_batch_norm_decay(demo):
    from tests.conftest import DEMO_CONFIG
    from train.pipeline import configfile
    from train.tf import standin

    folder = glob.glob(os.path.join(demo["out"], "zoo", "*", "pipeline.config"))
    assert len(folder) == 1
    assert f"--pipeline_config={folder[0]}" in demo["run"].stdout  # as users pass a download's
    ours = configfile.load(folder[0]).proto
    assert ours.model.ssd.feature_extractor.conv_hyperparams.batch_norm.decay == pytest.approx(0.9)
    assert standin.set_batch_norm_decay(ours, 0.997) == 2
    assert ours == configfile.load(DEMO_CONFIG).proto


def test_every_export_is_verified_and_mediapipe_finds_every_detection(demo):
    """A model that scores boxes apart makes the checks decisive (a random one's were not).

    MediaPipe returns a box the model gave several classes as one detection with several
    categories: every category counts (only the first, 71/80 found, rejected the file).
    """
    exports = demo["report"]["export"]
    assert sorted(exports) == ["onnx", "saved_model", "tflite"]
    for name, export in exports.items():
        assert export["verified"] and export["conclusive"], (name, export["problem"])
    mediapipe = exports["tflite"]["runtimes"]["mediapipe"]
    assert mediapipe["verified"]
    assert mediapipe["comparison"]["matched"] == mediapipe["comparison"]["compared"]
    assert os.path.isfile(os.path.join(demo["model_dir"], "export", "model.tflite"))


def test_the_demo_prints_where_the_results_are(demo):
    log, model_dir = demo["log"], demo["model_dir"]
    assert f"run report: {model_dir}/report.html" in log
    assert os.path.isfile(os.path.join(model_dir, "report.html"))
    plots = {os.path.basename(p) for p in glob.glob(os.path.join(model_dir, "plots", "*.png"))}
    assert {"pr_curves.png", "confusion_matrix.png", "f1_threshold.png"} <= plots
    annotated = glob.glob(os.path.join(demo["out"], "predictions", "annotated", "*.jpg"))
    assert len(annotated) == 8
    with open(os.path.join(demo["out"], "predictions", "detections.json")) as f:
        found = json.load(f)
    assert found and {d["category_id"] for d in found} <= {1, 2, 3}


def test_the_demos_report_reads_in_a_browser(demo):
    """The page a newcomer opens first: every image loads, nothing leaves the file."""
    from tests.helpers import render_in_chromium

    seen = render_in_chromium(os.path.join(demo["model_dir"], "report.html"))
    assert seen["errors"] == []
    assert all(url.startswith(("file:", "data:")) for url in seen["requests"]), seen["requests"]
    assert seen["images"] and all(done and width > 0 for _, done, width in seen["images"])
    assert "Exports, each against the checkpoint" in seen["headings"]


def test_the_demo_runs_from_an_installed_wheel(demo):
    """`pip install .` (a wheel, not the source tree) carries the demo's config and runs it."""
    config = os.path.join(
        demo["site"], "train", "configs", "ssd_mobilenet_v2_fpnlite_320x320.config"
    )
    # The installed copy's, not the tree's: the stand-in folder's pipeline.config is built from it.
    assert f"stand-in zoo folder under {demo['out']} (from {config})" in demo["run"].stdout
    assert "done: checkpoints in" in demo["run"].stderr
    assert "annotated pictures:" in demo["run"].stdout  # train.predict ran from the wheel too
