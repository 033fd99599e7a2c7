"""train.predict's plan: which model, which inputs, where outputs go; usage errors (issue 24);
and how an annotated picture is drawn.

TF-free: every refusal here happens before a model is loaded, in about a second. The
predictions themselves (four model kinds, a folder, a video) are in tests/test_demo.py,
on the demo's run.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from train.predicting import plan as plans


def _model_dir(root) -> str:
    """A folder that looks like a run to the plan: a checkpoint state, an index, a config."""
    model = root / "run"
    model.mkdir()
    (model / "ckpt-3.index").write_bytes(b"")
    (model / "ckpt-3.data-00000-of-00001").write_bytes(b"")
    (model / "checkpoint").write_text('model_checkpoint_path: "ckpt-3"\n')
    (model / "pipeline.config").write_text("model { ssd { num_classes: 2 } }\n")
    return str(model)


def _pictures(root, names) -> str:
    from PIL import Image

    folder = root / "pictures"
    folder.mkdir(exist_ok=True)
    for name in names:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".txt"):
            target.write_text("not a picture\n")
        else:
            Image.new("RGB", (8, 6), "red").save(target)
    return str(folder)


def _predict(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "train.predict", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def test_the_four_model_kinds_are_told_apart(tmp_path):
    run = _model_dir(tmp_path)
    found = plans.find_model(run)
    assert (found.kind, found.path) == (plans.CHECKPOINT, os.path.join(run, "ckpt-3"))
    layout = tmp_path / "run" / "export" / "saved_model"
    (layout / "saved_model").mkdir(parents=True)
    (layout / "saved_model" / "saved_model.pb").write_bytes(b"")
    (layout / "pipeline.config").write_text("")
    for given in (layout, layout / "saved_model"):  # the OD API layout, or the SavedModel in it
        found = plans.find_model(str(given))
        assert found.kind == plans.SAVED_MODEL
        assert found.path == str(layout / "saved_model")
        assert found.pipeline_config == str(layout / "pipeline.config")
    for name, kind in (("model.tflite", plans.TFLITE), ("model.ONNX", plans.ONNX)):
        path = tmp_path / "run" / "export" / name
        path.write_bytes(b"")
        found = plans.find_model(str(path))
        assert found.kind == kind
        assert found.pipeline_config == os.path.join(run, "pipeline.config")  # the run's


def test_inputs_keep_their_folders_and_never_collide(tmp_path):
    folder = _pictures(tmp_path, ["a.jpg", "sub/a.jpg", "b.PNG", "c.bmp", "notes.txt"])
    loose = tmp_path / "a.jpg"
    loose.write_bytes(b"x")
    clip = tmp_path / "clip.avi"
    clip.write_bytes(b"x")
    items, skipped = plans.inputs(
        (folder, str(loose), os.path.join(folder, "*.jpg"), str(clip), str(tmp_path / "gone.jpg"))
    )
    outputs = [(os.path.relpath(i.path, tmp_path), i.output, i.video) for i in items]
    assert outputs == [
        ("pictures/a.jpg", "a.jpg", False),
        ("pictures/b.PNG", "b.png", False),
        ("pictures/c.bmp", "c.png", False),  # annotated as PNG
        ("pictures/sub/a.jpg", os.path.join("sub", "a.jpg"), False),
        ("a.jpg", "a-2.jpg", False),  # another file of the same name
        ("clip.avi", "clip.mp4", True),  # the glob's a.jpg is the folder's: once
    ]
    assert (folder, "1 file(s) in it are not images or videos") in skipped
    assert (str(tmp_path / "gone.jpg"), "no such file or folder") in skipped


@pytest.mark.parametrize(
    "case",
    [
        "missing_model",
        "model_not_a_model",
        "folder_without_model",
        "missing_label_map",
        "out_inside_inputs",
        "out_holds_an_input",
        "out_is_a_file",
        "out_of_someone_else",
        "no_inputs",
        "nothing_to_predict",
        "threshold",
    ],
)
def test_usage_errors_are_one_line_exit_2_before_any_model_loads(tmp_path, case):
    run = _model_dir(tmp_path)
    folder = _pictures(tmp_path, ["a.jpg"])
    out = str(tmp_path / "out")
    args = {
        "missing_model": ["--model", str(tmp_path / "nope"), "--out", out, folder],
        "model_not_a_model": [
            "--model",
            os.path.join(run, "pipeline.config"),
            "--out",
            out,
            folder,
        ],
        "folder_without_model": ["--model", folder, "--out", out, folder],
        "missing_label_map": ["--model", run, "--label_map", "x.pbtxt", "--out", out, folder],
        "out_inside_inputs": ["--model", run, "--out", os.path.join(folder, "p"), folder],
        "out_holds_an_input": ["--model", run, "--out", folder, os.path.join(folder, "a.jpg")],
        "out_is_a_file": ["--model", run, "--out", os.path.join(run, "checkpoint"), folder],
        "out_of_someone_else": ["--model", run, "--out", run, folder],
        "no_inputs": ["--model", run, "--out", out],
        "nothing_to_predict": ["--model", run, "--out", out, os.path.join(run, "checkpoint")],
        "threshold": ["--model", run, "--threshold", "1.5", "--out", out, folder],
    }[case]
    before = sorted(os.walk(tmp_path))
    done = _predict(*args, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr and "tensorflow" not in done.stderr.lower()
    assert sorted(os.walk(tmp_path)) == before  # nothing written, nothing moved
    expected = {
        "missing_model": "no such file or folder",
        "model_not_a_model": "not a .tflite or .onnx",
        "folder_without_model": "no checkpoint and no saved_model.pb",
        "missing_label_map": "--label_map x.pbtxt",
        "out_inside_inputs": "is inside the input folder",
        "out_holds_an_input": "holds the input",
        "out_is_a_file": "is a file",
        "out_of_someone_else": "did not write",
        "no_inputs": "no inputs",
        "nothing_to_predict": "no image or video among the inputs",
        "threshold": "is not a score",
    }[case]
    assert expected in lines[0]


def test_the_default_threshold_is_the_runs_recommended_one(tmp_path):
    import json

    run = _model_dir(tmp_path)
    pictures = _pictures(tmp_path, ["a.png"])
    export = tmp_path / "run" / "export"
    export.mkdir()
    (export / "model.tflite").write_bytes(b"")

    def planned(model, threshold=None):
        options = plans.PredictOptions(
            model=model, inputs=(pictures,), out=str(tmp_path / "out"), threshold=threshold
        )
        found = plans.plan(options)
        return found.options.threshold, found.threshold_from

    assert planned(run) == (plans.DEFAULT_THRESHOLD, "the default")  # no evaluation yet
    curves = tmp_path / "run" / "plots" / "curves.json"
    curves.parent.mkdir()
    curves.write_text(json.dumps({"threshold": 0.37, "f1": 0.9}))
    for model in (run, str(export / "model.tflite")):
        assert planned(model) == (0.37, str(curves))
    assert planned(run, threshold=0.6) == (0.6, "--threshold")  # given: given wins
    curves.write_text("{not json")
    assert planned(run) == (plans.DEFAULT_THRESHOLD, "the default")


def test_a_pasted_label_is_the_label_drawn_in_place_and_clipped_at_the_edges():
    """outputs.draw pastes each label from a cache (one render per distinct label): the
    pixels must be those of drawing the filled box and the text there, as it did before."""
    import numpy as np
    from PIL import Image, ImageDraw

    from train.predicting import outputs

    background = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    found = outputs.Found(
        boxes=np.array([[30.0, 40.0, 90.0, 100.0], [2.0, 3.0, 60.0, 50.0], [120.0, 20, 159, 70]]),
        classes=np.array([1, 2, 3]),
        scores=np.array([0.91, 0.5, 0.77]),
    )
    names = {1: "square", 2: "circle"}  # class 3 has no name: class_3
    drawn = np.asarray(outputs.draw(background, found, names))

    expected = Image.fromarray(background)
    pen = ImageDraw.Draw(expected)
    font = outputs._font()
    for (x0, y0, x1, y1), cls, score in zip(found.boxes, found.classes, found.scores, strict=True):
        colour = outputs._COLOURS[int(cls) % len(outputs._COLOURS)]
        x0, y0, x1, y1 = (round(v) for v in (x0, y0, x1, y1))
        pen.rectangle([x0, y0, x1, y1], outline=colour, width=2)
        label = f"{outputs.name_of(names, cls)} {score:.2f}"
        left, top, right, bottom = pen.textbbox((x0, y0), label, font=font)
        high = bottom - top + 2
        lift = min(high, y0)  # inside the box at the top (the second box), cut at the right
        pen.rectangle([x0, y0 - lift, x0 + right - left + 4, y0 - lift + high], fill=colour)
        pen.text((x0 + 2, y0 - lift), label, fill="white", font=font)
    assert np.array_equal(drawn, np.asarray(expected))
    assert outputs.label_patch.cache_info().currsize >= 3  # rendered once, kept
