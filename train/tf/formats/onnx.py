"""--export onnx: a float32-input SavedModel converted by tf2onnx, run in ONNX Runtime.

The OD API's default input is a uint8 `image_tensor`, which TensorRT's ONNX parser and many
runtimes refuse; the exporter's `float_image_tensor` input takes the same 0-255 pixels as
float32. The post-processing (NMS) stays in the graph (ONNX NonMaxSuppression), so the file's
outputs are the SavedModel's: detection_boxes (normalised ymin, xmin, ymax, xmax),
detection_classes (1-based), detection_scores, num_detections. A model that resizes every
picture to one size as `exporting.resize_like_the_model` does also says so in the file's
metadata (RESIZED_KEY), so that train.predict can feed it pictures resized beforehand; that
feed is verified against the checkpoint as the whole picture's is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np

from train.tf import exporting
from train.tf.formats import Exported, Job
from train.verify import Detections, Staged

OPSET = 17  # ONNX Runtime >= 1.13 and TensorRT >= 8.6 run it
RESIZED_RUNTIME = "onnxruntime_resized_input"  # its row in the report: train.predict's feed


# tf2onnx deep-copies the whole graph before each optimizer pass (12 optimizers, repeated until
# none changes the graph) so that one that raises can be skipped; with TF2ONNX_CATCH_ERRORS
# set they run on the graph itself. On the SSD MobileNetV2 stand-in that is 0.72-0.76 of the
# time for the same ONNX graph (same ops, identical outputs; scripts/bench_onnx_convert.py).
# A conversion that fails that way is run again as tf2onnx runs by default, so the fast path
# never loses a file the default makes.
FAST = {"TF2ONNX_CATCH_ERRORS": "false"}


def convert(saved_model: str, out: str) -> None:
    """tf2onnx's converter on the SavedModel's serving signature (RuntimeError with its log).

    In a process of its own: its optimizer can need far more memory than the model (on a
    CenterNet Hourglass-104 stand-in it was killed at 19.7 GB on a 23.5 GB machine), and the
    kernel's OOM killer then ends that process, not the finish child, which names the failure
    (EXPORT.failed). Tried in-process (tf2onnx.convert.from_function on the OD API's float32
    module, ~40 % faster, identical outputs): there the OOM killer took the whole finish
    child, and the evaluation and the other formats' report with it.
    """
    done = run_converter(saved_model, out, FAST)
    if done.returncode != 0 and done.returncode != -signal.SIGKILL:
        print(
            "tf2onnx failed with its optimizers on the graph itself; converting again as by default"
        )
        done = run_converter(saved_model, out, {})
    if done.returncode != 0 or not os.path.isfile(out):
        last = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["no output"]
        raise RuntimeError(f"tf2onnx failed (exit {done.returncode}): {last[0]}")


def run_converter(saved_model: str, out: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """One tf2onnx process; a SIGKILL by the OOM killer raises with its evidence."""
    from train.launch import deaths

    oom_kills = deaths.oom_kill_count()
    base = {k: v for k, v in os.environ.items() if k not in FAST}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tf2onnx.convert",
            "--saved-model",
            saved_model,
            "--opset",
            str(OPSET),
            "--output",
            out,
        ],
        capture_output=True,
        text=True,
        env={**base, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
        check=False,
    )
    print(done.stdout[-4000:], done.stderr[-4000:], sep="\n", flush=True)  # the finish log
    if done.returncode == -signal.SIGKILL:  # the OOM killer's only with its evidence
        memory = deaths.out_of_memory(done.returncode, "", "tf2onnx", oom_kills_before=oom_kills)
        if memory:
            raise RuntimeError(
                f"{memory}: export onnx on a machine with more memory "
                "(python -m train.export --export onnx)"
            )
    return done


def runners(path: str, spinning: bool = True) -> tuple[Staged, Staged | None]:
    """The ONNX file in ONNX Runtime (CPU) on one uint8 picture: (whole, resized or None).

    `whole` feeds the picture as it is, as any app may (the graph resizes it). `resized` feeds
    it already resized as the graph would (exporting.resize_like_the_model), when the file
    says that is its resize (RESIZED_KEY, written by `export`): the graph's own resize then
    does nothing, and train.predict does the resizing on its decoding threads instead of the
    model's (the demo's model, 150 pictures 640x480 on 2 cores, two paired runs: 90.0/87.1 ->
    96.5/90.1 pictures/s, boxes 1.2e-07 apart). Both share one session.

    `spinning=False` (train.predict) lets ONNX Runtime's idle workers sleep instead of
    spinning between calls: the cores they would spin on decode and draw the pictures around
    the model. Four paired runs on 2 cores (the demo's model, 48 pictures 640x480): predict
    44.5/45.2/37.1/44.4 -> 48.3/47.9/41.6/43.6 pictures/s, while the bare loop loses ~10 %
    (63 -> 56): the verification's latency keeps ONNX Runtime's default.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors: its optimizer warns about tf2onnx's NMS loop
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(
        path, sess_options=options, providers=["CPUExecutionProvider"]
    )
    (feed,) = session.get_inputs()
    names = [output.name for output in session.get_outputs()]

    def infer(batch: np.ndarray) -> Detections:
        out = dict(zip(names, session.run(None, {feed.name: batch}), strict=True))
        return Detections.of(
            out["detection_boxes"][0],
            out["detection_classes"][0],
            out["detection_scores"][0],
            int(out["num_detections"][0]),
        )

    size = resized_size(session.get_modelmeta().custom_metadata_map)
    if size is None:
        return Staged(whole_picture, infer), None
    height, width = size
    return Staged(whole_picture, infer), Staged(
        lambda image: exporting.resize_like_the_model(image, height, width), infer
    )


def whole_picture(image: np.ndarray) -> np.ndarray:
    """The `whole` feed's prepare: the picture as the file's float32 batch of one."""
    return image[np.newaxis].astype(np.float32)


# The file's metadata entry that lets a picture be fed already resized: the model's size and
# the resize (the OD API's fixed_shape_resizer, TF1 bilinear). A file without it is fed whole.
RESIZED_KEY = "tfod_finetune.resized_input"
_RESIZE = "tf1_bilinear"


def resized_size(metadata: dict[str, str]) -> tuple[int, int] | None:
    """(height, width) from the file's RESIZED_KEY entry; None without one or when unreadable."""
    try:
        entry = json.loads(metadata.get(RESIZED_KEY, "null"))
        height, width = int(entry["height"]), int(entry["width"])
    except (ValueError, TypeError, KeyError):
        return None
    if entry.get("resize") != _RESIZE or height <= 0 or width <= 0:
        return None
    return height, width


def write_resized(path: str, height: int, width: int) -> None:
    """Adds the RESIZED_KEY entry to the ONNX file's metadata (onnx's own writer)."""
    import onnx

    model = onnx.load(path)
    entry = model.metadata_props.add()
    entry.key = RESIZED_KEY
    entry.value = json.dumps({"height": height, "width": width, "resize": _RESIZE})
    onnx.save(model, path)


def export(job: Job) -> Exported:
    """Exports a float32-input SavedModel of the pinned checkpoint and converts it."""
    source = exporting.export_saved_model(
        job.pipeline, job.pinned, os.path.join(job.staging, "onnx_source"), "float_image_tensor"
    )
    staged = os.path.join(job.staging, "model.onnx")
    convert(source, staged)
    size = exporting.resized_like_this(job.pipeline)
    if size:
        write_resized(staged, *size)
    whole, resized = runners(staged)
    # What train.predict feeds the file is verified as what other apps feed it: both gate.
    also = () if resized is None else ((RESIZED_RUNTIME, resized, True, None),)
    final = os.path.join(job.spec.export_dir, "model.onnx")
    return Exported(staged, whole, final, "onnx", also=also)  # the graph preprocesses itself
