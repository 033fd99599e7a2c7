"""`make demo` as a newcomer runs it: the stand-in learns the shapes, every export verified.

One run of `python -m train.demo` (about 4 minutes on 2 cores): 500 steps from the stand-in
zoo folder, the final evaluation, SavedModel, TFLite (in MediaPipe too) and ONNX, then
train.predict with the TFLite file on the eval pictures. It runs from a wheel installed
outside the source tree (`pip install .` as a user does, not the editable tree), so the same
run shows that the package carries the demo's config and that every step runs from it.

It is also the suite's one run of a model that learnt, with every model kind (checkpoint,
SavedModel, TFLite, ONNX): the TFLite metadata, ONNX and train.predict tests use it, where
detections are decisive (tests/test_finish.py's run exports the SavedModel only).
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_python
from train.demo.__main__ import STEPS

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
    printed = re.search(rf"final eval \(step {STEPS}, .*\): .*mAP@\.5 ([0-9.]+)", demo["log"])
    assert printed and float(printed.group(1)) >= 0.5
    curves = demo["report"]["curves"]
    assert curves["f1"] >= 0.4 and 0.05 <= curves["threshold"] <= 0.95
    assert min(curves["ap50"].values()) > 0  # every class found, not one learnt


def test_past_the_one_step_calls_the_demo_calls_the_step_at_its_summary_cadence(demo):
    """500 CPU steps are past CPU_SINGLE_STEP_CALLS: the step is traced twice (train_loop's
    loop body and its last call), then called 20 times, not 500. Summaries at the cadence.

    One step per call and its thinned input images: tests/test_launch.py.
    """
    import tensorflow as tf

    from train.launch import specs

    assert STEPS > specs.CPU_SINGLE_STEP_CALLS
    every = re.search(r"--checkpoint_every_n=(\d+)", demo["run"].stdout)  # as the demo ran it
    per = specs.summary_cadence(STEPS, int(every.group(1)))
    assert f"training: {STEPS} steps from step 0 ({per} per iteration)" in demo["log"]
    steps = {}
    for path in glob.glob(os.path.join(demo["model_dir"], "train", "*.v2")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    assert sorted(steps["Loss/total_loss"]) == list(range(per, STEPS + 1, per))
    assert sorted(steps["train_input_images"]) == list(range(0, STEPS, per))


def test_the_standin_folders_config_is_the_zoo_config_but_for_batch_norm_decay_and_size(demo):
    from tests.conftest import DEMO_CONFIG
    from train.pipeline import configfile
    from train.tf import standin

    folder = glob.glob(os.path.join(demo["out"], "zoo", "*", "pipeline.config"))
    assert len(folder) == 1
    assert f"--pipeline_config={folder[0]}" in demo["run"].stdout  # as users pass a download's
    ours = configfile.load(folder[0]).proto
    assert ours.model.ssd.feature_extractor.conv_hyperparams.batch_norm.decay == pytest.approx(0.9)
    assert standin.set_batch_norm_decay(ours, 0.997) == 2
    resizer = ours.model.ssd.image_resizer.fixed_shape_resizer
    assert (resizer.height, resizer.width) == (192, 192)  # the demo's, for time
    resizer.height = resizer.width = 320
    assert ours == configfile.load(DEMO_CONFIG).proto
    # The run trained at that size: the resolved config keeps it.
    resolved = configfile.load(os.path.join(demo["model_dir"], "pipeline.config")).proto
    assert resolved.model.ssd.image_resizer.fixed_shape_resizer.height == 192


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
    for name in exports:
        assert f"export {name}: " in demo["log"]
    assert not glob.glob(os.path.join(demo["model_dir"], "export", ".staging-*"))


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


def test_the_tflite_carries_its_metadata_and_runs_in_mediapipe_as_verified(demo):
    """MediaPipe's ObjectDetector, knowing nothing but the file, detects what the checkpoint
    does (the same comparison and tolerance as the TFLite interpreter's)."""
    from train.tf.formats import tflite_metadata

    entry = demo["report"]["export"]["tflite"]
    assert entry["metadata"]["written"], entry["metadata"]
    mediapipe = entry["runtimes"]["mediapipe"]
    assert mediapipe["failed"] is None and mediapipe["verified"], mediapipe
    assert mediapipe["comparison"]["compared"] > 0
    assert mediapipe["comparison"]["matched"] >= 0.9 * mediapipe["comparison"]["compared"]
    with open(entry["path"], "rb") as f:
        metadata = tflite_metadata.read(f.read())
    assert metadata.labels == ("square", "circle", "triangle")
    assert metadata.mean == pytest.approx((127.5,) * 3, abs=1e-4)
    assert metadata.std == pytest.approx((127.5,) * 3, abs=1e-4)
    # The run's recommended threshold, as train.predict's default on this file.
    assert metadata.score_threshold == pytest.approx(demo["report"]["curves"]["threshold"])
    assert "the same file in mediapipe: verified:" in demo["log"]
    assert entry["checkpoint"] == demo["report"]["eval"]["final"]["checkpoint"]
    export = os.path.join(demo["model_dir"], "export")
    assert os.path.getsize(os.path.join(export, "model.tflite")) == entry["size_bytes"]
    with open(os.path.join(export, "labels.txt"), encoding="utf-8") as f:
        assert f.read().split() == ["square", "circle", "triangle"]
    assert "mean [127.5, 127.5, 127.5] and std [127.5, 127.5, 127.5]" in entry["input"]


def test_the_onnx_export_takes_float32_keeps_nms_and_is_verified_in_onnx_runtime(demo):
    import onnx
    import onnxruntime

    model_dir, report = demo["model_dir"], demo["report"]
    entry = report["export"]["onnx"]
    assert entry["checkpoint"] == report["eval"]["final"]["checkpoint"] and entry["verified"], entry
    compared = entry["comparison"]
    assert compared["compared"] > 0 and compared["matched"] == compared["compared"], compared
    path = os.path.join(model_dir, "export", "model.onnx")
    assert entry["path"] == path and os.path.getsize(path) == entry["size_bytes"]
    model = onnx.load(path)

    def op_types(graph) -> set[str]:  # the batch's NMS runs in a Loop body: walk subgraphs
        found = set()
        for node in graph.node:
            found.add(node.op_type)
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    found |= op_types(attribute.g)
        return found

    assert "NonMaxSuppression" in op_types(model.graph)  # the post-processing is in the file
    assert model.opset_import[0].version == 17
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (feed,) = session.get_inputs()
    assert feed.type == "tensor(float)"  # not the uint8 image_tensor TensorRT refuses
    outputs = {o.name for o in session.get_outputs()}
    assert {"detection_boxes", "detection_scores", "detection_classes", "num_detections"} <= outputs
    # The file says it resizes to the config's 192x192 (train.predict feeds it pictures resized
    # beforehand), and that feed was verified against the checkpoint too.
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert json.loads(metadata["tfod_finetune.resized_input"]) == {
        "height": 192,
        "width": 192,
        "resize": "tf1_bilinear",
    }
    resized = entry["runtimes"]["onnxruntime_resized_input"]
    assert resized["gates"] and resized["verified"] and resized["failed"] is None, resized
    assert resized["comparison"]["matched"] == compared["compared"], resized


_ONNX_RESIZE_ENTRY = """
import json, sys
import onnx
from train import compat
compat.apply()
from train import verify
from train.tf import exporting
from train.tf.formats import onnx as onnx_format

source, record, work = sys.argv[1:]
pictures = exporting.record_images([record], 4)
found = {}
for name, size in (("wrong", (96, 96)), ("none", None)):
    path = f"{work}/{name}.onnx"
    model = onnx.load(source)
    del model.metadata_props[:]
    onnx.save(model, path)
    if size:
        onnx_format.write_resized(path, *size)
    whole, resized = onnx_format.runners(path)
    found[name] = resized is not None
    if resized:  # compared as the export's verification compares that feed
        comparison = verify.Comparison(verify.TOLERANCES["onnx"])
        for picture in pictures:
            comparison.add(whole(picture), resized(picture))
        found["wrong_problem"] = comparison.problem()
print("JSON" + json.dumps(found))
"""


def test_a_wrong_resize_entry_in_the_onnx_file_disagrees_and_no_entry_feeds_whole_pictures(
    demo, tmp_path
):
    # What the export's gate on train.predict's feed would see if the file named another size
    # than its graph resizes to; and a file without the entry (another tool's) is fed whole.
    source = os.path.join(demo["model_dir"], "export", "model.onnx")
    record = os.path.join(demo["out"], "data", "eval.record")
    done = run_python(["-c", _ONNX_RESIZE_ENTRY, source, record, str(tmp_path)])
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.split("JSON", 1)[1])
    assert found["wrong"] and found["wrong_problem"], found
    assert found["none"] is False


_PREDICT_KINDS = """
import dataclasses, json, sys, threading
import numpy as np
from train import compat
compat.apply()
from train.data import images
from train.predicting import pipeline
from train.predicting import plan as plans
from train.tf import predictors

model_dir, pictures, out = sys.argv[1], sys.argv[2:-1], sys.argv[-1]
found = {}
for kind, model in (
    ("checkpoint", model_dir),
    ("saved_model", model_dir + "/export/saved_model"),
    ("tflite", model_dir + "/export/model.tflite"),
    ("onnx", model_dir + "/export/model.onnx"),
):
    options = plans.PredictOptions(model=model, inputs=tuple(pictures), out=out + "/" + kind)
    plan = plans.plan(options)
    predictor = predictors.load(plan)
    assert plan.model.kind == kind, plan.model
    found[kind] = {"names": predictor.names, "pictures": []}
    for picture in pictures:
        d = predictor.detect(images.pixels(picture))
        found[kind]["pictures"].append([d.boxes.tolist(), d.classes.tolist(), d.scores.tolist()])
    # The same pictures through train.predict's pipeline, noting where the inputs were made
    # and how many model calls ran at once.
    threads, prepare, infer = set(), predictor.detect.prepare, predictor.detect.infer
    lock, running, calling = threading.Lock(), [0, 0], {threading.get_ident()}
    def noting(image):
        threads.add(threading.get_ident())
        return prepare(image)
    def counting(feed):
        with lock:
            calling.add(threading.get_ident())
            running[0] += 1
            running[1] = max(running)
        try:
            return infer(feed)
        finally:
            with lock:
                running[0] -= 1
    staged = dataclasses.replace(predictor.detect, prepare=noting, infer=counting)
    pipeline.run(plan, dataclasses.replace(predictor, detect=staged))
    found[kind]["calls"] = [predictor.calls, running[1]]
    with open(out + "/" + kind + "/detections.json") as f:
        found[kind]["piped"] = json.load(f)
    found[kind]["threshold"] = plan.options.threshold
    found[kind]["fed"] = list(np.shape(prepare(images.pixels(pictures[0]))))
    found[kind]["prepared_on"] = ["model's" if t in calling else "other" for t in threads]
print("JSON" + json.dumps(found))
"""


def _pictures_for_predict(demo, folder) -> list[str]:
    """Eval pictures as users have them: a JPEG, a non-square PNG, and a phone-style PNG stored
    on its side with EXIF orientation 6 (shown upright), beside its upright twin."""
    from PIL import Image

    from train.tf import exporting

    originals = exporting.record_images([os.path.join(demo["out"], "data", "eval.record")], 3)
    os.makedirs(folder, exist_ok=True)
    paths = [
        os.path.join(folder, name) for name in ("a.jpg", "wide.png", "upright.png", "phone.png")
    ]
    Image.fromarray(originals[0]).save(paths[0], quality=95)
    Image.fromarray(originals[1]).resize((240, 150)).save(paths[1])
    upright = Image.fromarray(originals[2])
    upright.save(paths[2])
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: stored turned counter-clockwise
    upright.transpose(Image.Transpose.ROTATE_90).save(paths[3], exif=exif)
    return paths


def test_predict_gives_the_same_picture_from_all_four_model_kinds(demo, tmp_path):
    from PIL import Image

    from train import verify

    pictures = _pictures_for_predict(demo, str(tmp_path / "pictures"))
    done = run_python(["-c", _PREDICT_KINDS, demo["model_dir"], *pictures, str(tmp_path / "o")])
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.split("JSON", 1)[1])
    names = {"1": "square", "2": "circle", "3": "triangle"}
    as_detections = {
        kind: [verify.Detections.of(*picture) for picture in entry["pictures"]]
        for kind, entry in found.items()
    }
    for kind in ("saved_model", "tflite", "onnx"):
        assert found[kind]["names"] == names, kind  # labels.txt / the TFLite's metadata
        comparison = verify.Comparison(verify.TOLERANCES[kind])
        for reference, other in zip(as_detections["checkpoint"], as_detections[kind], strict=True):
            comparison.add(reference, other)
        assert comparison.compared > 0 and comparison.problem() is None, (kind, comparison)
    # train.predict's pipeline finds what the model's detect() finds, picture by picture,
    # having made every model input off the threads that run the model (and its caller).
    for kind, entry in found.items():
        assert entry["prepared_on"] and set(entry["prepared_on"]) == {"other"}, kind
        piped = [[] for _ in pictures]
        for r in entry["piped"]:
            piped[r["image_id"] - 1].append(r["score"])
        looped = [[round(s, 5) for s in p[2] if s >= entry["threshold"]] for p in entry["pictures"]]
        assert piped == looped and any(looped), (kind, piped, looped)
        # Two calls at once (a TFLite file: one interpreter each, tests/test_predict_pipeline.py).
        allowed, most = entry["calls"]
        assert allowed == 2 and 1 <= most <= allowed, (kind, most)
    # ONNX is fed the picture resized as its graph resizes (its metadata says 192x192);
    # the checkpoint takes the picture as it is.
    with Image.open(pictures[0]) as first:
        width, height = first.size
    assert found["onnx"]["fed"] == [1, 192, 192, 3]
    assert found["checkpoint"]["fed"] == [height, width, 3]
    # The phone picture is predicted upright: exactly as its upright twin.
    for kind, detections in as_detections.items():
        upright, phone = detections[2], detections[3]
        assert upright.boxes.tolist() == phone.boxes.tolist(), kind
        assert upright.scores.tolist() == phone.scores.tolist(), kind


def test_predict_command_on_a_folder_and_a_video_skips_bad_files(demo, tmp_path):
    import csv
    import hashlib

    import cv2

    folder = tmp_path / "pictures"
    pictures = _pictures_for_predict(demo, str(folder))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    (folder / "notes.txt").write_text("a file that is not a picture\n")
    video = str(tmp_path / "clip.mp4")
    frames = [cv2.imread(path) for path in pictures[:2]]
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 5, (320, 320))
    for frame in frames * 3:
        writer.write(cv2.resize(frame, (320, 320)))
    writer.release()

    def digests():
        return {
            p: hashlib.sha256(open(p, "rb").read()).hexdigest()  # noqa: SIM115
            for p in glob.glob(str(tmp_path / "**" / "*"), recursive=True)
            if os.path.isfile(p)
        }

    inputs = digests()
    out = tmp_path / "out"
    # The ONNX file: folders, videos and bad files do not depend on the model kind, and it loads
    # in a second where the checkpoint's detection function takes ~30 s to trace (the four
    # kinds' test runs the checkpoint; its threshold and labels come from the run here too).
    model = f"--model={os.path.join(demo['model_dir'], 'export', 'model.onnx')}"
    done = run_python(
        ["-m", "train.predict", model, f"--out={out}", str(folder), video],
        env_extra={"TF_CPP_MIN_LOG_LEVEL": None},  # as a user's shell has it
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # The terminal gets the command's own lines: neither TensorFlow's C++ banner nor a
    # deprecation warning from the resize that prepares each picture.
    assert "cpu_feature_guard" not in done.stderr and "deprecat" not in done.stderr, done.stderr
    after = digests()
    assert {p: after[p] for p in inputs} == inputs  # not one input touched
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["images"], summary["videos"], summary["frames"]) == (4, 1, 6)
    skipped = {entry["path"]: entry["why"] for entry in summary["skipped"]}
    assert "cannot be decoded" in skipped[str(folder / "broken.jpg")]
    assert "1 file(s) in it are not images or videos" in skipped[str(folder)]
    assert f"skipped {folder / 'broken.jpg'}: cannot be decoded" in done.stdout
    assert "pictures/s" in done.stdout
    curves = os.path.join(demo["model_dir"], "plots", "curves.json")
    threshold = demo["report"]["curves"]["threshold"]
    assert f"score threshold {threshold:g} ({curves})" in done.stdout  # the run's own
    assert summary["threshold"] == threshold
    for name, count in summary["per_class"].items():
        assert any(line.split() == [name, str(count)] for line in done.stdout.splitlines())

    results = json.loads((out / "detections.json").read_text())
    index = json.loads((out / "images.json").read_text())
    assert len(index["images"]) == 4 + 6 and len(results) == summary["detections"] > 0
    assert {c["name"] for c in index["categories"]} >= {"square", "circle", "triangle"}
    sizes = {image["id"]: (image["width"], image["height"]) for image in index["images"]}
    by_name = {image["file_name"]: image["id"] for image in index["images"]}
    assert sizes[by_name[pictures[1]]] == (240, 150)  # the non-square one, in its own pixels
    assert sizes[by_name[pictures[3]]] == (320, 320)  # the phone picture, upright
    for result in results:
        x, y, w, h = result["bbox"]
        width, height = sizes[result["image_id"]]
        assert 0 <= x and 0 <= y and x + w <= width + 0.01 and y + h <= height + 0.01
        assert result["score"] >= threshold  # the run's recommended one, the default
    with open(out / "detections.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(results)
    assert {row["frame"] for row in rows if row["file"] == video} <= {str(n) for n in range(6)}

    annotated = out / "annotated"
    assert sorted(os.listdir(annotated)) == [
        "a.jpg",
        "clip.mp4",
        "phone.png",
        "upright.png",
        "wide.png",
    ]
    capture = cv2.VideoCapture(str(annotated / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    capture.release()
    # A second run into the same --out replaces it; an input inside it is refused.
    again = run_python(["-m", "train.predict", model, f"--out={out}", pictures[0]])
    assert again.returncode == 0, again.stderr[-2000:]
    assert os.listdir(annotated) == ["a.jpg"]  # nothing stale from the first run
    refused = run_python(["-m", "train.predict", model, f"--out={out}", str(annotated)])
    assert refused.returncode == 2 and "holds the input" in refused.stderr
