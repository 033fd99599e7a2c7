"""Benchmark: the NaN guard's cost, as the training child's steps/s with and without it.

    python scripts/bench_nan_guard.py [--steps 60] [--pairs 3] [--out bench_out/nan_guard]

The driver plans the demo fine-tune once (SSD MobileNetV2 FPNLite 320, batch 2, from the
stand-in checkpoint) and writes its TrainSpec; then the training child itself
(`python -m train.tf.child`) runs that spec in fresh model_dirs, alternately with
`nan_guard` on and off, so machine drift hits both. Steady state: the median
`steps_per_sec` scalar over the second half of the steps (bench_overhead's measure). Prints
each run and the ratio guarded / unguarded (goal >= 0.99).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
CONFIG = os.path.join(ROOT, "configs", "ssd_mobilenet_v2_fpnlite_320x320.config")


def main() -> int:
    """Plans once, runs the child guarded and unguarded in turn, prints the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--out", default="bench_out/nan_guard")
    args = parser.parse_args()

    from bench_overhead import steady_steps_per_sec, step_events

    from train.contracts import TrainSpec
    from train.demo import __main__ as demo

    out = os.path.abspath(args.out)
    shutil.rmtree(out, ignore_errors=True)
    assets = demo.prepare(os.path.join(out, "assets"))
    planned = os.path.join(out, "planned")
    driver = [
        sys.executable,
        "-m",
        "train.finetune",
        f"--pipeline_config={CONFIG}",
        f"--model_dir={planned}",
        f"--checkpoint={assets['zoo']}",
        f"--label_map={assets['label_map']}",
        f"--train_input_path={assets['train']}",
        f"--eval_input_path={assets['eval']}",
        "--batch_size=2",
        "--num_train_steps=1",
        "--nofinal_eval",
    ]
    subprocess.run(driver, check=True, capture_output=True, cwd=ROOT)
    with open(os.path.join(planned, "train_spec.json"), encoding="utf-8") as f:
        spec = TrainSpec.from_json(f.read())
    rates: dict[bool, list[float]] = {True: [], False: []}
    for pair in range(args.pairs):
        for guard in (True, False):
            model_dir = os.path.join(out, f"run{pair}-{'on' if guard else 'off'}")
            run_spec = dataclasses.replace(
                spec,
                model_dir=model_dir,
                num_train_steps=args.steps,
                checkpoint_every_n=args.steps,
                num_steps_per_iteration=1,
                restore_report=os.path.join(model_dir, "restore.json"),
                outcome=os.path.join(model_dir, "outcome.json"),
                freeze_report=os.path.join(model_dir, "freeze.json"),
                nan_guard=guard,
            )
            os.makedirs(model_dir)
            path = os.path.join(model_dir, "train_spec.json")
            run_spec.write(path)
            with open(os.path.join(model_dir, "train.log"), "w") as log:
                subprocess.run(
                    [sys.executable, "-m", "train.tf.child", path],
                    check=True,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                )
            rate = steady_steps_per_sec(step_events(model_dir))
            rates[guard].append(rate)
            print(
                f"pair {pair + 1} guard {'on ' if guard else 'off'}: {rate:.3f} steps/s", flush=True
            )
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    print(
        f"NaN guard: {on:.3f} steps/s with, {off:.3f} without (medians of {args.pairs}): "
        f"ratio {on / off:.3f} (goal >= 0.99)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
