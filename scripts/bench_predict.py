"""train.predict's pictures/s against the bare model on already-decoded pictures, per model kind.

    python scripts/bench_predict.py [--model_dir demo_out/model] [--pictures 48] [--size 640x480]
                                    [--rounds 3] [--noise]

For each model kind the run has (its checkpoint, export/saved_model, export/model.tflite,
export/model.onnx): `--pictures` JPEGs of `--size` are written to a temporary folder; "bare" is
the model's own detect() called in a loop on pictures decoded beforehand (the best a loop can
do; for an ONNX file that train.predict feeds resized pictures, the faster of that feed and the
whole picture's, named in the row); "predict" is train.predict's whole pipeline on the files
(decode, prepare, model, draw, encode, write, JSON/CSV), which keeps `predictor.calls` model
calls in flight. The two alternate `--rounds` times (this VM's speed drifts by +-15 % within a
minute) and the medians are compared: the goal is predict / bare >= 0.9. The last column is
the bare loop with as many calls in flight as train.predict keeps: what the model alone does
that way, so predict / it is the share the decoding and drawing cost. Each also reports the
CPU time per picture (every thread): on 2 cores a model whose bare loop takes nearly 2 ms of
CPU per ms leaves the pipeline's decoding and drawing no idle core.

The pictures are crops of a real photograph (matplotlib's sample portrait, installed with the
project) with a few shapes drawn on them: a JPEG of a photo decodes and re-encodes at a photo's
cost (~70 KB at 640x480, quality 90). `--noise` draws them on uniform noise instead (~260 KB:
JPEG's worst case, about twice the decoding and encoding).
`make demo` leaves a run with every kind in demo_out/model.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _background(rng, photo, width: int, height: int):
    """A random crop of `photo` at `width`x`height`, or uniform noise where photo is None."""
    import numpy as np
    from PIL import Image

    if photo is None:
        return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    scale = rng.uniform(0.5, 1.0)
    crop_w = int(photo.width * scale)
    crop_h = min(photo.height, int(crop_w * height / width))
    x = int(rng.integers(0, photo.width - crop_w + 1))
    y = int(rng.integers(0, photo.height - crop_h + 1))
    picture = photo.crop((x, y, x + crop_w, y + crop_h)).resize((width, height))
    return picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else picture


def _pictures(folder: str, count: int, width: int, height: int, noise: bool) -> list[str]:
    """JPEGs with a few shapes on a photo (or noise): decoding and drawing cost real ones'."""
    import numpy as np
    from matplotlib import cbook
    from PIL import Image, ImageDraw

    photo = None
    if not noise:
        with cbook.get_sample_data("grace_hopper.jpg") as f:
            photo = Image.open(f).convert("RGB")
    rng = np.random.default_rng(0)
    paths = []
    for n in range(count):
        picture = _background(rng, photo, width, height)
        pen = ImageDraw.Draw(picture)
        for _ in range(3):
            x, y = int(rng.integers(0, width - 100)), int(rng.integers(0, height - 100))
            pen.ellipse([x, y, x + 90, y + 90], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        path = os.path.join(folder, f"picture_{n:03d}.jpg")
        picture.save(path, quality=90)
        paths.append(path)
    return paths


def _kinds(model_dir: str) -> list[tuple[str, str]]:
    export = os.path.join(model_dir, "export")
    candidates = (
        ("checkpoint", model_dir),
        ("saved_model", os.path.join(export, "saved_model")),
        ("tflite", os.path.join(export, "model.tflite")),
        ("onnx", os.path.join(export, "model.onnx")),
    )
    return [(kind, path) for kind, path in candidates if os.path.exists(path)]


def _timed(fn, *args) -> tuple[float, float]:
    """(wall s, CPU s of every thread of this process) of fn(*args)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def _loop(predictor, decoded) -> None:
    for picture in decoded:
        predictor.detect(picture)


def _at_once(predictor, decoded) -> None:
    """The bare loop with `predictor.calls` calls in flight, as train.predict runs them."""
    import collections
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(predictor.calls) as pool:
        running: collections.deque = collections.deque()
        for picture in decoded:
            running.append(pool.submit(predictor.detect, picture))
            while len(running) >= predictor.calls:
                running.popleft().result()
        for call in running:
            call.result()


def main() -> int:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", default=os.path.join(ROOT, "demo_out", "model"))
    parser.add_argument("--pictures", type=int, default=48)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--noise", action="store_true", help="pictures on noise, not a photo")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    if not os.path.isdir(args.model_dir):
        print(f"error: no run at {args.model_dir}: run `make demo` first", file=sys.stderr)
        return 2

    from train import compat

    compat.apply()
    from train.data import images
    from train.predicting import pipeline
    from train.predicting import plan as plans
    from train.tf import predictors

    work = tempfile.mkdtemp(prefix="bench_predict-")
    folder = os.path.join(work, "pictures")
    os.makedirs(folder)
    paths = _pictures(folder, args.pictures, width, height, args.noise)
    decoded = [images.pixels(path) for path in paths]
    kilobytes = sum(os.path.getsize(path) for path in paths) / len(paths) / 1024
    n = len(decoded)
    print(
        f"{n} pictures {width}x{height} ({'noise' if args.noise else 'photo'}, {kilobytes:.0f} KB "
        f"each), {args.rounds} rounds, run {args.model_dir}"
    )
    print(
        "| model | bare pictures/s | predict pictures/s | predict / bare "
        "| CPU ms per picture: bare, predict | calls at once: bare pictures/s (predict / it) |"
    )
    print("|---|---|---|---|---|---|")
    for kind, path in _kinds(args.model_dir):
        out = os.path.join(work, f"out_{kind}")
        options = plans.PredictOptions(model=path, inputs=(folder,), out=out, progress=False)
        plan = plans.plan(options)
        predictor = predictors.load(plan)
        bare = _bare_feeds(kind, predictor)
        runs = {**{name: [] for name in bare}, "predict": [], "at once": []}  # (wall, CPU) s
        for _ in range(args.rounds):
            for name, fed in bare.items():
                runs[name].append(_timed(_loop, fed, decoded))
            runs["at once"].append(_timed(_at_once, predictor, decoded))
            shutil.rmtree(out, ignore_errors=True)  # emptied here, not in the timed run
            runs["predict"].append(_timed(pipeline.run, plan, predictor))
        rate = {k: statistics.median(n / wall for wall, _ in v) for k, v in runs.items()}
        cpu = {k: 1000 * statistics.median(c for _, c in v) / n for k, v in runs.items()}
        best = max(bare, key=rate.get)
        print(
            f"| {kind}{best} | {rate[best]:.1f} | {rate['predict']:.1f} "
            f"| {rate['predict'] / rate[best]:.2f} | {cpu[best]:.1f}, {cpu['predict']:.1f} "
            f"| {predictor.calls}: {rate['at once']:.1f} "
            f"({rate['predict'] / rate['at once']:.2f}) |",
            flush=True,
        )
    return 0


def _bare_feeds(kind: str, predictor) -> dict:
    """The bare loops to time, by the row's suffix (the faster one is "bare").

    The predictor's own feed; for an ONNX file that train.predict feeds resized pictures, the
    whole picture's too: its resize in the graph can beat the one train.predict prepares.
    """
    if kind != "onnx":
        return {"": predictor}
    import dataclasses

    import numpy as np

    from train.tf.formats import onnx

    if predictor.detect.prepare is onnx.whole_picture:  # the file has no resize entry
        return {"": predictor}
    whole = dataclasses.replace(predictor.detect, prepare=onnx.whole_picture)  # same session
    whole(np.zeros((64, 64, 3), np.uint8))  # allocates once, untimed, as predictors.load does
    fed_whole = dataclasses.replace(predictor, detect=whole)
    return {" (fed resized)": predictor, " (fed whole)": fed_whole}


if __name__ == "__main__":
    sys.exit(main())
