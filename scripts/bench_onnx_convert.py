"""Benchmark: tf2onnx's conversion as by default vs on the graph itself (the export's way).

    python scripts/bench_onnx_convert.py [--fixtures ../shared/fixtures] [--size 128]
        [--rounds 2] [--out bench_out/onnx_convert]

By default tf2onnx deep-copies the whole ONNX graph before each optimizer pass so that a pass
that raises can be skipped; `--export onnx` sets TF2ONNX_CATCH_ERRORS (train/tf/formats/onnx.py)
so the passes run on the graph itself, and converts again as by default only if that fails.
For the SSD MobileNetV2 stand-in (the zoo config with --fixtures, else the demo's FPNLite
config) at --size px: exports the float32 SavedModel once, converts it both ways in alternating
rounds (a fresh process each), and prints the seconds, the ratio fast / default, whether the
two files have the same ops, and the largest output difference in ONNX Runtime on 4 images.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _saved_model(config: str, size: int, out: str) -> str:
    """A stand-in of `config` at `size` px exported with the float32 input, as --export onnx."""
    from train import compat

    compat.apply()
    from train.pipeline import configfile
    from train.tf import exporting, standin

    standin.build_standin(config, os.path.join(out, "standin"), num_classes=3, image_size=size)
    pipeline = configfile.load(os.path.join(out, "standin", "pipeline.config")).proto
    checkpoint = os.path.join(out, "standin", "checkpoint")
    target = os.path.join(out, "float_saved_model")
    return exporting.export_saved_model(pipeline, checkpoint, target, "float_image_tensor")


def _convert(saved_model: str, out: str, env: dict[str, str]) -> float:
    from train.tf.formats import onnx

    start = time.monotonic()
    done = onnx.run_converter(saved_model, out, env)
    if done.returncode != 0:
        raise SystemExit(f"tf2onnx failed: {done.stderr[-2000:]}")
    return time.monotonic() - start


def _compare(first: str, second: str, size: int) -> tuple[bool, float]:
    """(same op types and counts, largest |difference| of any output on 4 random images)."""
    import numpy as np
    import onnx
    import onnxruntime

    def ops(path):
        return collections.Counter(node.op_type for node in onnx.load(path).graph.node)

    sessions = [
        onnxruntime.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in (first, second)
    ]
    name = sessions[0].get_inputs()[0].name
    largest = 0.0
    for seed in range(4):
        image = np.random.RandomState(seed).randint(0, 256, (1, size, size, 3)).astype(np.float32)
        a, b = (s.run(None, {name: image}) for s in sessions)
        largest = max([largest] + [float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True)])
    return ops(first) == ops(second), largest


def main() -> int:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", default="")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default="bench_out/onnx_convert")
    args = parser.parse_args()
    if args.fixtures:
        config = os.path.join(
            args.fixtures, "zoo_tf2", "ssd_mobilenet_v2_320x320_coco17_tpu-8.config"
        )
    else:
        config = os.path.join(ROOT, "configs", "ssd_mobilenet_v2_fpnlite_320x320.config")
    os.makedirs(args.out, exist_ok=True)
    from train.tf.formats import onnx

    saved_model = _saved_model(config, args.size, args.out)
    seconds = {"default": [], "fast": []}
    for _ in range(args.rounds):
        for how, env in (("default", {}), ("fast", onnx.FAST)):
            seconds[how].append(_convert(saved_model, os.path.join(args.out, f"{how}.onnx"), env))
    same_ops, largest = _compare(*(os.path.join(args.out, f"{h}.onnx") for h in seconds), args.size)
    for how, values in seconds.items():
        print(f"{how:8s} " + " ".join(f"{v:.1f} s" for v in values))
    ratios = [f / d for f, d in zip(seconds["fast"], seconds["default"], strict=True)]
    print("fast / default: " + " ".join(f"{r:.2f}" for r in ratios))
    print(f"same ops: {same_ops}; largest output difference: {largest:.3g}")
    return 0 if same_ops and largest == 0.0 else 1


if __name__ == "__main__":
    sys.exit(main())
