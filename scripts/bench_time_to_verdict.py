"""Benchmark: how long until the user learns a run is broken, driver vs raw OD API.

    python scripts/bench_time_to_verdict.py [--cap 180] [--out bench_out/verdict]

For each common fine-tuning mistake that can be reproduced here, the same broken setup is
given to the driver (`--fix=never`, so it must stop with a verdict instead of fixing it) and to
the OD API's own `model_lib_v2.train_loop` (after the compat shims, as model_main_tf2 would run
it). Raw runs are timed until they crash, finish (silently wrong) or hit the cap (a hang).
Prints a table with the ratio driver / raw; target <= 0.1.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

RAW = """
import sys
from train import compat; compat.apply()
from object_detection import model_lib_v2
model_lib_v2.train_loop(pipeline_config_path=sys.argv[1], model_dir=sys.argv[2], train_steps=5,
    use_tpu=False, checkpoint_every_n=5, num_steps_per_iteration=1)
"""

TF1_CHECKPOINT = """
import sys
import tensorflow.compat.v1 as tf
tf.disable_eager_execution()
with tf.Graph().as_default():
    tf.get_variable("FeatureExtractor/MobilenetV2/Conv/weights", [3, 3, 3, 32])
    tf.get_variable("BoxPredictor_0/ClassPredictor/weights", [1, 1, 576, 273])
    tf.train.get_or_create_global_step()
    with tf.Session() as session:
        session.run(tf.global_variables_initializer())
        tf.train.Saver().save(session, sys.argv[1])
"""


def _run(argv, cap, env):
    start = time.monotonic()
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=cap, env=env, cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        return time.monotonic() - start, "hang (killed at the cap)"
    elapsed = time.monotonic() - start
    if result.returncode == 0:
        return elapsed, "exit 0 (silent)"
    codes = sorted({m[1] for m in re.finditer(r"^\s+error\s+(\S+):", result.stderr, re.M)})
    if codes:
        return elapsed, f"exit {result.returncode}: {', '.join(codes)}"
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln.split(":", 1)[0] or ln.startswith("error:")]
    last = (errors or lines or ["?"])[-1].strip()
    return elapsed, f"rc {result.returncode}: {last[:90]}"


def main() -> int:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=float, default=180.0)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench_out", "verdict"))
    args = parser.parse_args()
    from train import compat

    compat.apply(with_tensorflow=False)
    from train.demo import __main__ as demo
    from train.pipeline import configfile

    out = os.path.abspath(args.out)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    assets = demo.prepare(os.path.join(os.path.dirname(out), "assets"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    prefix = os.path.join(assets["zoo"], "checkpoint", "ckpt-0")

    # A correct run (resolved by the driver itself) is the base every case breaks one way.
    finished = os.path.join(out, "finished_run")
    argv = demo.driver_argv(assets, finished, 5)
    subprocess.run(argv, check=True, env=env, capture_output=True)
    good = configfile.load(os.path.join(finished, "pipeline.config")).text
    five = os.path.join(out, "five.pbtxt")
    with open(five, "w") as f:
        f.write("".join(f"item {{ id: {i} name: 'c{i}' }}\n" for i in range(1, 6)))
    empty = os.path.join(out, "empty.record")
    open(empty, "wb").close()
    tf1 = os.path.join(out, "tf1", "model.ckpt")
    os.makedirs(os.path.dirname(tf1))
    subprocess.run(
        [sys.executable, "-c", TF1_CHECKPOINT, tf1], check=True, env=env, capture_output=True
    )

    def edit(old, new):
        assert old in good, old
        return good.replace(old, new)

    ckpt_line = f'fine_tune_checkpoint: "{prefix}"'
    cases = {
        "wrong type (zoo 'classification')": (
            edit(
                'fine_tune_checkpoint_type: "detection"',
                'fine_tune_checkpoint_type: "classification"',
            ),
            None,
        ),
        "checkpoint path is the .index": (edit(ckpt_line, ckpt_line[:-1] + '.index"'), None),
        "checkpoint path is the directory": (
            edit(ckpt_line, f'fine_tune_checkpoint: "{os.path.dirname(prefix)}"'),
            None,
        ),
        "TF1 checkpoint": (edit(ckpt_line, f'fine_tune_checkpoint: "{tf1}"'), None),
        "'full' with 3 vs 90 classes": (
            edit('fine_tune_checkpoint_type: "detection"', 'fine_tune_checkpoint_type: "full"'),
            None,
        ),
        "model_dir holds a finished run": (good, finished),
        "model_dir holds a 3-class run, config 5": (
            good.replace(assets["label_map"], five).replace("num_classes: 3", "num_classes: 5"),
            finished,
        ),
        "fine_tune_checkpoint_version unset": (
            edit("fine_tune_checkpoint_version: V2\n", ""),
            None,
        ),
        "empty TFRecords": (good.replace(assets["train"], empty), None),
    }
    rows = []
    for index, (name, (text, model_dir_template)) in enumerate(cases.items()):
        config = os.path.join(out, f"case{index}.config")
        with open(config, "w") as f:
            f.write(text)
        times = {}
        for kind in ("driver", "raw"):
            model_dir = os.path.join(out, f"case{index}-{kind}")
            if model_dir_template:
                shutil.copytree(model_dir_template, model_dir)
            if kind == "driver":
                argv = [
                    sys.executable,
                    "-m",
                    "train.finetune",
                    f"--pipeline_config={config}",
                    f"--model_dir={model_dir}",
                    "--fix=never",
                    "--num_train_steps=5",
                ]
            else:
                argv = [sys.executable, "-c", RAW, config, model_dir]
            times[kind] = _run(argv, args.cap, env)
        rows.append((name, times["driver"], times["raw"]))
        (d, dv), (r, rv) = times["driver"], times["raw"]
        print(
            f"{name}: driver {d:.1f} s [{dv}] | raw {r:.1f} s [{rv}] | ratio {d / r:.3f}",
            flush=True,
        )
    print("\n| case | driver verdict | raw train_loop | ratio |\n|---|---|---|---|")
    for name, (d, dv), (r, rv) in rows:
        print(f"| {name} | {d:.1f} s: {dv} | {r:.1f} s: {rv} | {d / r:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
