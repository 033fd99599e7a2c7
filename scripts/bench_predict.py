"""train.predict's pictures/s against the bare model on already-decoded pictures, per model kind.

    python scripts/bench_predict.py [--model_dir demo_out/model] [--pictures 48] [--size 640x480]

For each model kind the run has (its checkpoint, export/saved_model, export/model.tflite,
export/model.onnx): `--pictures` JPEGs of `--size` are written to a temporary folder; "bare" is
the model's own detect() called in a loop on pictures decoded beforehand (the best a loop can
do); "predict" is train.predict's whole pipeline on the files (decode, model, draw, encode,
write, JSON/CSV). Prints one row per kind and the ratio predict / bare (the goal: >= 0.9).
`make demo` leaves a run with every kind in demo_out/model.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _pictures(folder: str, count: int, width: int, height: int) -> list[str]:
    """Noisy pictures with a few shapes: decoding and drawing cost what real ones do."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    paths = []
    for n in range(count):
        pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        picture = Image.fromarray(pixels)
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


def main() -> int:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", default=os.path.join(ROOT, "demo_out", "model"))
    parser.add_argument("--pictures", type=int, default=48)
    parser.add_argument("--size", default="640x480")
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
    paths = _pictures(folder, args.pictures, width, height)
    decoded = [images.pixels(path) for path in paths]
    print(f"{args.pictures} pictures {width}x{height}, run {args.model_dir}")
    print("| model | bare pictures/s | predict pictures/s | predict / bare |")
    print("|---|---|---|---|")
    for kind, path in _kinds(args.model_dir):
        out = os.path.join(work, f"out_{kind}")
        options = plans.PredictOptions(model=path, inputs=(folder,), out=out, progress=False)
        plan = plans.plan(options)
        predictor = predictors.load(plan)
        start = time.perf_counter()
        for picture in decoded:
            predictor.detect(picture)
        bare = len(decoded) / (time.perf_counter() - start)
        summary = pipeline.run(plan, predictor)
        piped = summary["pictures_per_s"]
        print(f"| {kind} | {bare:.2f} | {piped:.2f} | {piped / bare:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
