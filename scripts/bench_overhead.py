"""Benchmark: the driver vs calling the OD API's train_loop directly, same config and steps.

    python scripts/bench_overhead.py [--steps 40] [--pairs 2] [--out bench_out]

Runs are interleaved (each round runs every kind, in a rotating order) so machine drift hits all
of them. Besides raw and the driver, the training child runs alone, with the NaN guard off and
on, so the difference is itemised: the child's hooks, the guard, the driver process. Each run
trains the demo fine-tune (SSD MobileNetV2 FPNLite 320, batch 2, 3 classes) from the stand-in
checkpoint in a fresh model_dir. Steady-state speed is the median `steps_per_sec` TensorBoard
scalar over the second half of the steps (the first steps include tf.function tracing). The raw
run uses the same resolved config and the same train_loop arguments the driver chose, so the
ratio measures only what the driver adds (child process, event tailing, final save).

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
import json
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


ARMS = ("raw", "child", "guarded", "driver")


def _run_arm(kind: str, model_dir: str, out: str, assets: dict, steps: int, env: dict) -> None:
    """One run of `kind` in a fresh `model_dir`.

    raw: train_loop as model_main_tf2 calls it; child: the training child alone (harness,
    phase tracking, restore measurement, checkpoint hooks) with the NaN guard off; guarded:
    the same with the guard on (what the driver runs); driver: the whole driver.
    """
    import dataclasses

    from train.contracts import TrainSpec
    from train.demo import __main__ as demo
    from train.launch import paths

    quiet = {"check": True, "env": env, "stderr": subprocess.DEVNULL, "cwd": ROOT}
    planned = os.path.join(out, "driver-0", "train_spec.json")  # the first driver run's spec
    if kind == "driver":
        argv = [a for a in demo.driver_argv(assets, model_dir, steps) if "--export" not in a]
        subprocess.run([*argv, "--nofinal_eval"], **quiet)
    elif kind == "raw":
        subprocess.run([sys.executable, "-c", RAW, planned, model_dir], **quiet)
    else:
        with open(planned, encoding="utf-8") as f:
            spec = TrainSpec.from_json(f.read())
        files = paths.RunPaths(model_dir)
        spec = dataclasses.replace(
            spec,
            model_dir=model_dir,
            restore_report=files.report("restore"),
            outcome=files.outcome(paths.TRAIN),
            freeze_report=files.report("freeze"),
            nan_guard=kind == "guarded",
        )
        spec.write(files.spec(paths.TRAIN))
        subprocess.run([sys.executable, "-m", "train.tf.child", files.spec(paths.TRAIN)], **quiet)


def main() -> int:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--pairs", type=int, default=2, help="rounds of all four kinds")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench_out"))
    args = parser.parse_args()
    from train.demo import __main__ as demo

    out = os.path.abspath(args.out)
    assets = demo.prepare(os.path.join(out, "assets"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    results: dict[str, list[float]] = {k: [] for k in ARMS}
    walls: dict[str, list[float]] = {k: [] for k in ARMS}
    first_step: dict[str, list[float]] = {k: [] for k in ARMS}  # start -> first step logged
    after_last: dict[str, list[float]] = {k: [] for k in ARMS}  # last step logged -> exit
    for pair in range(args.pairs):
        # The driver first in round 0 (the others reuse its spec), then the order rotates so
        # machine drift hits every kind.
        order = ARMS[-1:] + ARMS[:-1] if pair == 0 else ARMS[pair % 4 :] + ARMS[: pair % 4]
        for kind in order:
            model_dir = os.path.join(out, f"{kind}-{pair}")
            subprocess.run(["rm", "-rf", model_dir], check=True)
            start, start_wall = time.monotonic(), time.time()
            _run_arm(kind, model_dir, out, assets, args.steps, env)
            walls[kind].append(time.monotonic() - start)
            end_wall = time.time()
            events = step_events(model_dir)
            results[kind].append(steady_steps_per_sec(events))
            first_step[kind].append(events[min(events)][1] - start_wall)
            after_last[kind].append(end_wall - events[max(events)][1])
            print(
                f"{kind:7s} run {pair}: {results[kind][-1]:.3f} steps/s steady, "
                f"{walls[kind][-1]:.1f} s wall, first step at {first_step[kind][-1]:.1f} s, "
                f"exit {after_last[kind][-1]:.1f} s after the last step",
                flush=True,
            )
    summary = _print_summary(results, walls, first_step, after_last)
    summary["final_eval_s"] = _end_of_run(os.path.join(out, "driver-0"), args.steps, env)
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, sort_keys=True)  # what scripts/gpu_smoke.py reads
    return 0


def _print_summary(results, walls, first_step, after_last) -> dict:
    """Prints the overall ratio, then each part's (what each layer the driver adds costs).

    Returns the same figures for results.json.
    """
    median = {k: statistics.median(v) for k, v in results.items()}
    pairs = [d / r for d, r in zip(results["driver"], results["raw"], strict=True)]
    print(
        f"steady-state steps/s (medians): raw train_loop {median['raw']:.3f}, child "
        f"{median['child']:.3f}, child + NaN guard {median['guarded']:.3f}, driver "
        f"{median['driver']:.3f}; driver / raw {median['driver'] / median['raw']:.3f} "
        f"(per round: {', '.join(f'{p:.3f}' for p in pairs)})"
    )
    print(
        "by part: the child's hooks (harness, phases, restore measurement, checkpoint hooks) "
        f"{median['child'] / median['raw']:.3f}, the NaN guard "
        f"{median['guarded'] / median['child']:.3f}, the driver process beside it (event "
        f"tailing, supervision) {median['driver'] / median['guarded']:.3f}"
    )
    for name, values in (("process wall", walls), ("start -> first step", first_step)):
        line = ", ".join(f"{k} {statistics.median(values[k]):.1f} s" for k in ARMS)
        print(f"{name}: {line}")
    line = ", ".join(f"{k} {statistics.median(after_last[k]):.1f} s" for k in ARMS)
    print(f"last step -> exit: {line}")
    return {
        "steps_per_s": median,
        "ratio": median["driver"] / median["raw"],
        "per_round": pairs,
        "first_step_s": {k: statistics.median(v) for k, v in first_step.items()},
        "wall_s": {k: statistics.median(v) for k, v in walls.items()},
    }


def _end_of_run(model_dir: str, steps: int, env: dict) -> dict:
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
    return {"driver": driver, "raw": raw}


if __name__ == "__main__":
    sys.exit(main())
