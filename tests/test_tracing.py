"""The OD API traced without AutoGraph (train/tf/tracing.py) computes what it computes with it.

For each meta-architecture, two fresh processes, one with AutoGraph's default (TFOD_AUTOGRAPH=
all) and one as the children run: the same stand-in weights, the same first batch of the
training input pipeline (batch 2, no augmentation, no shuffling: deterministic), then the losses
and the weights after one training step (model_lib_v2.eager_train_step in a tf.function, as
train_loop runs it). Both must agree exactly; and the rule must actually be in force (a run
would still pass if limit_autograph() silently did nothing, and be twice as slow to start).
"""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import DEMO_CONFIG, run_python

pytestmark = [pytest.mark.slow, pytest.mark.stack]

_STEP = """
import json, sys
from train import compat; compat.apply()
import tensorflow as tf
from train.tf import tracing
limited = tracing.limit_autograph()
tf.keras.utils.set_random_seed(0)
from object_detection import inputs, model_lib_v2
from object_detection.builders import model_builder
from train.pipeline import configfile
config = configfile.load(sys.argv[1]).proto
reader = config.train_input_reader
reader.shuffle = False
reader.num_readers = 1
config.train_config.batch_size = 2
del config.train_config.data_augmentation_options[:]
model = model_builder.build(config.model, is_training=True)
tf.train.Checkpoint(model=model).restore(sys.argv[2]).expect_partial()
dataset = inputs.train_input(config.train_config, reader, config.model, model=model)
features, labels = next(iter(dataset))

training_step = tf.Variable(0, dtype=tf.int64)
optimizer, _ = model_lib_v2.optimizer_builder.build(
    config.train_config.optimizer, global_step=training_step)


@tf.function
def step(features, labels):  # as train_loop's step: the OD API's own eager_train_step
    losses = model_lib_v2.eager_train_step(
        model, features, labels, config.train_config.unpad_groundtruth_tensors, optimizer,
        training_step)
    return losses

losses = step(features, labels)
import hashlib
digest = hashlib.sha256()
for variable in model.trainable_variables:
    digest.update(variable.numpy().tobytes())
from tensorflow.python.autograph.impl import conversion
print("RESULT " + json.dumps({
    "limited": limited,
    "od_api_converted": not conversion.is_allowlisted(inputs.train_input),
    "image_sum": float(tf.reduce_sum(tf.cast(features["image"], tf.float64))),
    "losses": {k: float(v) for k, v in losses.items()},
    "weights": digest.hexdigest(),
}))
"""

ARCHS = {
    # name: (zoo config under the fixtures, or None for the demo's; input size)
    "ssd_fpnlite": (None, 128),
    "faster_rcnn": ("faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config", 128),
    "centernet": ("centernet_resnet50_v1_fpn_512x512_kpts_coco17_tpu-8.config", 128),
}


def _step(config: str, prefix: str, autograph: str | None) -> dict:
    done = run_python(["-c", _STEP, config, prefix], env_extra={"TFOD_AUTOGRAPH": autograph})
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    return json.loads(line[len("RESULT ") :])


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    from train.tf import synthetic

    folder = tmp_path_factory.mktemp("tracing_records")
    return synthetic.make_dataset(str(folder), num_train=4, num_eval=2, size=160)


@pytest.mark.parametrize("name", list(ARCHS))
def test_without_autograph_the_od_api_computes_the_same_step(name, records, tmp_path, request):
    zoo_name, size = ARCHS[name]
    if zoo_name is None:
        source = DEMO_CONFIG
    else:
        source = os.path.join(request.getfixturevalue("shared_fixtures"), "zoo_tf2", zoo_name)
    from train.tf import standin

    config = standin.zoo_config_on_records(source, size, records, str(tmp_path))
    built = run_python(
        "from train.tf import standin\n"
        f"standin.build_standin({config!r}, {str(tmp_path / 'zoo')!r}, shift=(-0.01, 0.01))\n"
    )
    assert built.returncode == 0, built.stderr[-3000:]
    prefix = str(tmp_path / "zoo" / "checkpoint" / "ckpt-0")
    default = _step(config, prefix, "all")
    limited = _step(config, prefix, None)
    assert not default["limited"] and default["od_api_converted"]
    assert limited["limited"] and not limited["od_api_converted"]
    assert limited["image_sum"] == default["image_sum"]
    assert limited["losses"] == default["losses"], (limited["losses"], default["losses"])
    assert limited["weights"] == default["weights"]  # every updated weight, bit for bit
    assert limited["losses"]["Loss/total_loss"] > 0
