"""Benchmark: the driver vs calling the OD API's train_loop directly, same config and steps.

    python scripts/bench_overhead.py [--steps 40] [--pairs 2] [--out bench_out]

Runs are interleaved (raw, driver, raw, driver, ...) so machine drift hits both. Each run
trains the demo fine-tune (SSD MobileNetV2 FPNLite 320, batch 2, 3 classes) from the stand-in
checkpoint in a fresh model_dir. Steady-state speed is the median `steps_per_sec` TensorBoard
scalar over the second half of the steps (the first steps include tf.function tracing). The
raw run uses the same resolved config and the same train_loop arguments the driver chose, so
the ratio measures only what the driver adds (child process, event tailing, final save).

The driver runs with --nofinal_eval and no --export, so both sides do the same work: train
and save. The fixed cost is split by the events' wall times: start -> first step
(interpreters, imports, preflight, model build, restore and its measurement, tracing) and last
step -> exit (final save, process teardown, the driver noticing the end).

The end of a run is measured on its own, on the first driver run's final checkpoint: the
driver's final evaluation (`python -m train.evaluate`, the same finish child) against the OD
API's own `eval_continuously` on that checkpoint and the same eval images, both whole
processes.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

RAW_EVAL = """
import sys
from train import compat; compat.apply()
import tensorflow as tf
tf.config.set_visible_devices([], "GPU")  # as the driver's final evaluation: on CPU
from object_detection import model_lib_v2
model_lib_v2.eval_continuously(pipeline_config_path=sys.argv[1], model_dir=sys.argv[2],
    checkpoint_dir=sys.argv[3], train_steps=int(sys.argv[4]), wait_interval=1, timeout=1)
"""

RAW = """
import sys, json
spec = json.load(open(sys.argv[1]))
from train import compat; compat.apply()
import tensorflow as tf
from object_detection import model_lib_v2
# As model_main_tf2: MirroredStrategy over the GPUs (what the driver plans too), else CPU.
gpus = tf.config.list_physical_devices("GPU")
strategy = tf.distribute.MirroredStrategy() if gpus else tf.distribute.get_strategy()
with strategy.scope():
    model_lib_v2.train_loop(pipeline_config_path=spec["pipeline_config"], model_dir=sys.argv[2],
        train_steps=spec["num_train_steps"], use_tpu=False,
        checkpoint_every_n=spec["checkpoint_every_n"], record_summaries=True,
        num_steps_per_iteration=spec["num_steps_per_iteration"])
"""


def step_events(model_dir: str) -> dict[int, tuple[float, float]]:
    """{step: (steps_per_sec, wall time)} from the run's TensorBoard events."""
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.util import tensor_util

    values = {}
    for path in glob.glob(os.path.join(model_dir, "train", "events.out.tfevents.*")):
        for event in event_file_loader.EventFileLoader(path).Load():
            for value in event.summary.value:
                if value.tag == "steps_per_sec":
                    rate = float(tensor_util.make_ndarray(value.tensor))
                    values[event.step] = (rate, event.wall_time)
    return values


def steady_steps_per_sec(values: dict[int, tuple[float, float]]) -> float:
    """Median steps_per_sec over the second half of the logged steps."""
    steps = sorted(values)
    return statistics.median(values[s][0] for s in steps[len(steps) // 2 :])


def main() -> int:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench_out"))
    args = parser.parse_args()
    from train.demo import __main__ as demo

    out = os.path.abspath(args.out)
    assets = demo.prepare(os.path.join(out, "assets"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    results = {"driver": [], "raw": []}
    walls = {"driver": [], "raw": []}
    first_step = {"driver": [], "raw": []}  # process start -> first step logged
    after_last = {"driver": [], "raw": []}  # last step logged -> process exit
    for pair in range(args.pairs):
        # driver first in pair 0: the raw runs reuse its resolved config and loop arguments.
        order = ("driver", "raw") if pair % 2 == 0 else ("raw", "driver")
        for kind in order:
            model_dir = os.path.join(out, f"{kind}-{pair}")
            subprocess.run(["rm", "-rf", model_dir], check=True)
            start, start_wall = time.monotonic(), time.time()
            if kind == "driver":
                argv = [
                    a
                    for a in demo.driver_argv(assets, model_dir, args.steps)
                    if not a.startswith("--export")
                ]
                subprocess.run(
                    [*argv, "--nofinal_eval"], check=True, env=env, stderr=subprocess.DEVNULL
                )
            else:
                spec = os.path.join(out, "driver-0", "train_spec.json")
                subprocess.run(
                    [sys.executable, "-c", RAW, spec, model_dir],
                    check=True,
                    env=env,
                    stderr=subprocess.DEVNULL,
                    cwd=ROOT,
                )
            walls[kind].append(time.monotonic() - start)
            end_wall = time.time()
            events = step_events(model_dir)
            results[kind].append(steady_steps_per_sec(events))
            first_step[kind].append(events[min(events)][1] - start_wall)
            after_last[kind].append(end_wall - events[max(events)][1])
            print(
                f"{kind:6s} run {pair}: {results[kind][-1]:.3f} steps/s steady, "
                f"{walls[kind][-1]:.1f} s wall, first step at {first_step[kind][-1]:.1f} s, "
                f"exit {after_last[kind][-1]:.1f} s after the last step",
                flush=True,
            )
    driver, raw = statistics.median(results["driver"]), statistics.median(results["raw"])
    pairs = [d / r for d, r in zip(results["driver"], results["raw"], strict=True)]
    print(
        f"steady-state steps/s (median of runs): driver {driver:.3f}, raw train_loop "
        f"{raw:.3f}, ratio {driver / raw:.3f} (target >= 0.98)"
    )
    print(
        f"ratio per interleaved pair: {', '.join(f'{p:.3f}' for p in pairs)} (the spread is "
        "this machine's run-to-run noise)"
    )

    wall_driver, wall_raw = statistics.median(walls["driver"]), statistics.median(walls["raw"])
    print(
        f"process wall (incl. preflight, startup, tracing): driver {wall_driver:.1f} s, "
        f"raw {wall_raw:.1f} s, difference {wall_driver - wall_raw:+.1f} s"
    )
    for name, values in (("start -> first step", first_step), ("last step -> exit", after_last)):
        d, r = statistics.median(values["driver"]), statistics.median(values["raw"])
        print(f"{name}: driver {d:.1f} s, raw {r:.1f} s, difference {d - r:+.1f} s")
    _end_of_run(os.path.join(out, "driver-0"), args.steps, env)
    return 0


def _end_of_run(model_dir: str, steps: int, env: dict) -> None:
    """The final evaluation: the driver's finish child vs the OD API's eval_continuously."""
    start = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "train.evaluate", f"--model_dir={model_dir}"],
        check=True,
        env=env,
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        cwd=ROOT,
    )
    driver = time.monotonic() - start
    start = time.monotonic()
    raw_dir = os.path.join(model_dir, "raw_eval")
    config = os.path.join(model_dir, "pipeline.config")
    subprocess.run(
        [sys.executable, "-c", RAW_EVAL, config, raw_dir, model_dir, str(steps)],
        check=True,
        env=env,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    raw = time.monotonic() - start
    print(
        f"final evaluation of the last checkpoint (whole processes): driver (train.evaluate) "
        f"{driver:.1f} s, OD API eval_continuously {raw:.1f} s, ratio {driver / raw:.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
