"""--tensorboard (a real server, queried over loopback) and the run's summaries.

`--eval` beside training is tested with the run in tests/test_finish.py.
"""

from __future__ import annotations

import glob
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from tests.helpers import demo_driver_args

STEPS = 4


def _get(base: str, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base + path, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _poll(fetch, ready, timeout_s=180):
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if ready(value):
            return value
        assert time.monotonic() < deadline, f"TensorBoard never served it: {value}"
        time.sleep(1)


def _event_values(directory: str) -> dict[str, list]:
    """{tag: [(step, value proto)]} from every events file in `directory`."""
    import tensorflow as tf

    found: dict[str, list] = {}
    for path in glob.glob(f"{directory}/events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value))
    return found


@pytest.mark.slow
def test_tensorboard_serves_the_run_and_its_summaries(demo_assets, tmp_path):
    import tensorflow as tf

    model_dir = tmp_path / "m"
    argv = [
        sys.executable,
        *demo_driver_args(
            demo_assets,
            model_dir,
            f"--num_train_steps={STEPS}",
            "--batch_size=1",
            "--checkpoint_every_n=2",
            "--tensorboard",
        ),
    ]
    driver = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, bufsize=1
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(driver.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while not any("tensorboard: http" in line for line in lines):
        assert driver.poll() is None, "".join(lines)[-3000:]
        assert time.monotonic() < deadline, "no TensorBoard URL printed"
        time.sleep(0.2)
    address = [line for line in lines if "tensorboard: http" in line][0]
    port = int(re.search(r"http://localhost:(\d+)/", address).group(1))
    base = f"http://127.0.0.1:{port}"

    tags = _poll(
        lambda: _get(base, "/data/plugin/text/tags"),
        lambda v: "tfod_finetune/resolved_config" in v.get("train", []),
    )
    assert "tfod_finetune/preflight" in tags["train"]
    config_text = _get(base, "/data/plugin/text/text?run=train&tag=tfod_finetune/resolved_config")
    assert "num_classes: 3" in config_text[0]["text"]
    experiment = _poll(
        lambda: _get(base, "/data/plugin/hparams/experiment", {"experimentName": ""}),
        lambda v: v.get("hparamInfos"),
    )
    hparams = {info["name"] for info in experiment["hparamInfos"]}
    assert {"batch_size", "num_classes", "learning_rate_base", "replicas"} <= hparams

    driver.wait(timeout=900)
    reader.join(timeout=10)
    out = "".join(lines)
    assert driver.returncode == 0, out[-3000:]
    with pytest.raises(OSError):  # the server stopped with the run
        socket.create_connection(("127.0.0.1", port), timeout=2).close()

    train = _event_values(str(model_dir / "train"))
    restore = train["tfod_finetune/restore"][0][1]
    assert b"backbone" in tf.make_ndarray(restore.tensor).item()
