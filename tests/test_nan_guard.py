"""The NaN guard: an absurd learning rate stops the run at the first non-finite loss, with
TRAIN.nan, exit 4, and the newest checkpoint holding the last good (finite) weights."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest

from tests.conftest import DEMO_CONFIG, run_python
from tests.helpers import demo_driver_args
from train import errors

pytestmark = [pytest.mark.slow]


def _absurd_rate_config(tmp_path) -> str:
    text = open(DEMO_CONFIG).read()
    for field in ("learning_rate_base", "warmup_learning_rate"):
        start = text.index(f"{field}: ")
        end = text.index("\n", start)
        text = text[:start] + f"{field}: 5000000.0" + text[end:]
    path = tmp_path / "absurd.config"
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def nan_run(demo_assets, tmp_path_factory):
    root = tmp_path_factory.mktemp("nan")
    model_dir = root / "model"
    report = root / "report.json"
    result = run_python(
        demo_driver_args(
            demo_assets,
            model_dir,
            "--num_train_steps=20",
            "--checkpoint_every_n=1",
            "--batch_size=2",
            f"--report_json={report}",
            config=_absurd_rate_config(root),
        )
    )
    return {"dir": str(model_dir), "result": result, "report": str(report)}


def test_the_run_stops_with_train_nan_and_exit_4(nan_run):
    result = nan_run["result"]
    assert result.returncode == errors.EXIT_TRAINING, result.stderr[-3000:]
    assert "error: TRAIN.nan: training stopped: Loss/" in result.stderr
    assert "the last good weights" in result.stderr
    assert "likely causes, most likely first: a learning rate too high for batch 2" in result.stderr
    assert "--scan_records all" in result.stderr and "Traceback" not in result.stderr
    with open(nan_run["report"]) as f:
        document = json.load(f)
    assert document["outcome"]["exit_code"] == errors.EXIT_TRAINING
    assert "TRAIN.nan" in [f["code"] for f in document["findings"]]
    assert "step 20/20" not in result.stderr  # it stopped early


def test_the_newest_checkpoint_holds_only_finite_values(nan_run):
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(nan_run["dir"])
    assert latest and latest in nan_run["result"].stderr  # the one the message names
    reader = tf.train.load_checkpoint(latest)
    values = [reader.get_tensor(k) for k in reader.get_variable_to_shape_map()]
    floats = [v for v in values if isinstance(v, np.ndarray) and v.dtype.kind == "f"]
    assert floats and all(np.isfinite(v).all() for v in floats)
    step = int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
    assert 0 < step < 20
    # nothing was saved after the poisoned step: the checkpoints are steps 0..step, one each
    assert len(glob.glob(os.path.join(nan_run["dir"], "ckpt-*.index"))) <= step + 1
