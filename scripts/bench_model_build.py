"""Benchmark: the model build before a fine-tune restore, the OD API's way vs the children's.

    python scripts/bench_model_build.py [--size 128] [--replicas 1] [--rounds 2] [--out bench_out]

train_loop's fine-tune restore first creates the model's variables by running the losses of
one training batch in a tf.function (model_lib_v2._ensure_model_is_built); the training child
runs the same losses eagerly instead (train/tf/restore.build_on_batch). Each round times both,
each in a fresh process (so neither reuses the other's traces), on the demo config at --size
px, batch 2, under a MirroredStrategy of --replicas logical CPUs. Prints the seconds of each
and the ratio eager / OD API.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

_BUILD = """
import json, sys, time
from train import compat; compat.apply()
import tensorflow as tf
how, replicas, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
from train.tf import restore, tracing
tracing.limit_autograph()
from object_detection import inputs, model_lib_v2
from object_detection.builders import model_builder
from train.pipeline import configfile
config = configfile.load(path).proto
config.train_config.batch_size = 2
strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(replicas)])
with strategy.scope():
    model = model_builder.build(config.model, is_training=True)
    dataset = strategy.distribute_datasets_from_function(
        lambda context: inputs.train_input(config.train_config, config.train_input_reader,
                                           config.model, model=model, input_context=context))
    start = time.perf_counter()
    if how == "od_api":
        model_lib_v2._ensure_model_is_built(model, dataset, True)
    else:
        restore.build_on_batch(model, dataset, True)
    seconds = time.perf_counter() - start
print("RESULT " + json.dumps({"seconds": seconds, "variables": len(model.variables)}))
"""


def _time(how: str, replicas: int, config: str) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", _BUILD, how, str(replicas), config],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"bench_model_build: the {how} build failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    """Times both builds --rounds times, alternating, and prints each round's ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default="bench_out")
    args = parser.parse_args()

    from tests.conftest import DEMO_CONFIG
    from train.tf import standin, synthetic

    work = os.path.abspath(os.path.join(args.out, "model_build"))
    records = synthetic.make_dataset(os.path.join(work, "records"), 4, 2, size=160)
    config = standin.zoo_config_on_records(DEMO_CONFIG, args.size, records, work)
    for round_ in range(1, args.rounds + 1):
        od_api = _time("od_api", args.replicas, config)
        eager = _time("eager", args.replicas, config)
        assert od_api["variables"] == eager["variables"]
        print(
            f"round {round_}: OD API (tf.function) {od_api['seconds']:.1f} s, eager "
            f"{eager['seconds']:.1f} s, ratio {eager['seconds'] / od_api['seconds']:.2f} "
            f"({eager['variables']} variables, {args.replicas} replica(s), {args.size} px)",
            flush=True,
        )


if __name__ == "__main__":
    main()
