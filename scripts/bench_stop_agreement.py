"""Benchmark: the per-iteration cost of the multi-worker stop agreement.

    python scripts/bench_stop_agreement.py [--calls 200]

Starts two MultiWorkerMirroredStrategy workers on localhost and times the child's
`_signalled_anywhere` (one small all-reduce, eager), which every worker runs after each
training iteration so that a preemption signal stops all workers at the same step. Prints
milliseconds per agreement and the share of the demo's CPU iteration (one step ~0.4 s at
2.5 steps/s) it would add.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_ITERATION_S = 1 / 2.5  # README: the demo trains ~2.5 steps/s on 2 CPU cores

WORKER = """
import sys, time
from train import compat; compat.apply()
import tensorflow as tf
from train.tf import child
strategy = tf.distribute.MultiWorkerMirroredStrategy()
signalled = child._signalled_anywhere(tf, strategy)
with strategy.scope():
    for _ in range(10):
        signalled(False)
    start = time.perf_counter()
    for _ in range(int(sys.argv[1])):
        signalled(False)
    print((time.perf_counter() - start) / int(sys.argv[1]))
"""


def main() -> None:
    """Runs the two workers and prints the cost per agreement."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    base = 24000 + os.getpid() % 1000
    workers = [f"localhost:{base}", f"localhost:{base + 1}"]
    procs = []
    for rank in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": rank}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config), "TF_CPP_MIN_LOG_LEVEL": "2"}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, str(args.calls)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        )
    start = time.monotonic()
    seconds = [float(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
    per_call = max(seconds)
    print(f"stop agreement: {per_call * 1000:.2f} ms per iteration (2 workers, localhost)")
    print(
        f"ratio to one demo CPU step ({DEMO_ITERATION_S:.2f} s): {per_call / DEMO_ITERATION_S:.4f}"
    )
    print(f"(wall {time.monotonic() - start:.1f} s)")


if __name__ == "__main__":
    main()
