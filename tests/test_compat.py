"""Each compat shim is needed (the OD API fails without it) and works (it runs with it)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from importlib import metadata

import pytest

from tests.conftest import run_python

pytestmark = pytest.mark.stack


def _keras3() -> bool:
    try:
        return int(metadata.version("keras").split(".")[0]) >= 3
    except metadata.PackageNotFoundError:
        return False


def _od_dir() -> str:
    return os.path.dirname(importlib.util.find_spec("object_detection").origin)


PROTO_IMPORT = """
from train import compat; compat.apply(with_tensorflow=False)
from google.protobuf.internal import api_implementation
from object_detection.protos import pipeline_pb2, train_pb2
c = pipeline_pb2.TrainEvalPipelineConfig()
c.train_config.fine_tune_checkpoint_version = train_pb2.V2
version = c.train_config.fine_tune_checkpoint_version
print(api_implementation.Type(), train_pb2.CheckpointVersion.Name(version))
"""


def _needed_and_sufficient(code, shim, failure, env=None):
    """Runs `code` with `shim` skipped (must fail with `failure`) and applied (must work).

    Returns the stdout of the run with the shim.
    """
    without = run_python(code, {"TFOD_COMPAT_SKIP": shim, **(env or {})})
    assert without.returncode != 0
    assert failure in without.stderr
    with_shim = run_python(code)
    assert with_shim.returncode == 0, with_shim.stderr
    return with_shim.stdout


def test_protos_shim_needed_and_sufficient():
    stdout = _needed_and_sufficient(
        PROTO_IMPORT, "protos", "Descriptors cannot be created directly"
    )
    assert stdout.split() == ["upb", "V2"]  # the fast backend, no env var needed


def test_protos_shim_survives_user_setting_pure_python_backend():
    result = run_python(PROTO_IMPORT, {"PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["python", "V2"]


DECODE = """
from train import compat; compat.apply()
import tensorflow as tf
from train.tf import synthetic
import numpy as np
image, boxes, labels = synthetic.make_image(np.random.default_rng(1), 64)
serialized = synthetic.to_example(image, boxes, labels, "a.jpg").SerializeToString()
from object_detection.data_decoders import tf_example_decoder
decoded = tf_example_decoder.TfExampleDecoder().decode(tf.constant(serialized))
print(decoded["groundtruth_classes"].numpy().tolist() == labels)
"""


def test_tf_slim_ops_shim_needed_and_sufficient():
    stdout = _needed_and_sufficient(DECODE, "tf_slim_ops", "has no attribute 'case'")
    assert stdout.strip().endswith("True")


BUILDER = """
from train import compat; compat.apply()
from object_detection.builders import model_builder
"""


@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow_io") is not None,
    reason="tensorflow-io is installed, so no stub is needed",
)
def test_tensorflow_io_stub_needed_and_sufficient():
    _needed_and_sufficient(BUILDER, "tensorflow_io", "No module named 'tensorflow_io'")


AVERAGE_PRECISION = """
from train import compat; compat.apply()
import numpy as np
from object_detection.utils import metrics
p = np.array([1.0, 0.5], dtype=float); r = np.array([0.5, 1.0], dtype=float)
print(round(float(metrics.compute_average_precision(p, r)), 4))
"""


def test_numpy_aliases_needed_and_sufficient():
    stdout = _needed_and_sufficient(AVERAGE_PRECISION, "numpy_aliases", "has no attribute 'float'")
    assert stdout.strip() == "0.75"


DRAW_BOX = """
from train import compat; compat.apply()
import numpy as np
from object_detection.utils import visualization_utils as vis
image = np.zeros((64, 64, 3), dtype=np.uint8)
vis.draw_bounding_box_on_image_array(image, 0.1, 0.1, 0.9, 0.9, display_str_list=["cat: 90%"])
print(int(image.sum() > 0))
"""


def test_pillow_getsize_shim_needed_and_sufficient():
    # The eval loop draws labelled boxes into its image summaries with Pillow < 10's API.
    stdout = _needed_and_sufficient(DRAW_BOX, "pillow_getsize", "has no attribute 'getsize'")
    assert stdout.strip() == "1"


MODEL_LIB = """
from train import compat; compat.apply()
from object_detection import model_lib_v2
"""


@pytest.mark.skipif(not _keras3(), reason="Keras 2 stack (TF <= 2.15): no Keras 3 to avoid")
def test_legacy_keras_shim_needed_and_sufficient():
    _needed_and_sufficient(
        MODEL_LIB, "legacy_keras", "experimental", env={"TF_USE_LEGACY_KERAS": None}
    )


@pytest.mark.skipif(not _keras3(), reason="TF <= 2.15 still ships tf.estimator")
def test_estimator_stub_needed_and_sufficient():
    _needed_and_sufficient(MODEL_LIB, "estimator", "estimator")


@pytest.mark.skipif(not _keras3(), reason="only Keras-3 stacks depend on import order")
def test_tensorflow_imported_first_is_a_clear_error_on_keras3():
    result = run_python(
        "import tensorflow\nfrom train import compat\ncompat.apply()", {"TF_USE_LEGACY_KERAS": None}
    )
    assert result.returncode != 0
    assert "CompatError" in result.stderr and "TF_USE_LEGACY_KERAS" in result.stderr


@pytest.mark.skipif(_keras3(), reason="on Keras-3 stacks TF must come after compat")
def test_library_use_works_after_user_imported_tensorflow():
    result = run_python("import tensorflow as tf\ntf.keras.layers.Dense(1)\n" + MODEL_LIB)
    assert result.returncode == 0, result.stderr


def _tree_digest(path: str) -> str:
    digest = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(path)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".pyc"):
                continue
            with open(os.path.join(root, name), "rb") as f:
                digest.update(name.encode() + f.read())
    return digest.hexdigest()


def test_compat_edits_no_installed_file():
    before = _tree_digest(_od_dir())
    result = run_python(MODEL_LIB)
    assert result.returncode == 0, result.stderr
    assert _tree_digest(_od_dir()) == before


LAYER_TRACES = """
import os, sys
from train import compat; compat.apply()
import tensorflow as tf
from train.tf import exporting

class Served(tf.Module):
    def __init__(self):
        super().__init__()
        self.dense = tf.keras.layers.Dense(2, kernel_initializer="ones")

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def __call__(self, x):
        return {"y": self.dense(x)}

module = Served()
module(tf.ones([1, 3]))
for name, scope in (("traces", None), ("without", exporting.without_layer_traces())):
    path = os.path.join(sys.argv[1], name)
    if scope is None:
        tf.saved_model.save(module, path, signatures=module.__call__)
    else:
        with scope:
            tf.saved_model.save(module, path, signatures=module.__call__)
    loaded = tf.saved_model.load(path)
    print(name, os.path.getsize(os.path.join(path, "saved_model.pb")),
          float(loaded.signatures["serving_default"](tf.ones([1, 3]))["y"][0, 0]))
"""


def test_exports_leave_out_the_keras_layers_traces_on_this_stack(tmp_path):
    """exporting.without_layer_traces finds Keras' own switch in the installed tf.keras (a
    private module that moved once already): without it every export silently slows down."""
    result = run_python(LAYER_TRACES.replace("sys.argv[1]", repr(str(tmp_path))))
    assert result.returncode == 0, result.stderr[-3000:]
    sizes = {}
    for line in result.stdout.split("\n"):
        if line.startswith(("traces ", "without ")):
            name, size, value = line.split()
            sizes[name] = int(size)
            assert float(value) == 3.0  # both serve the same function
    # The layer's traced call functions are what the default save adds.
    assert sizes["without"] < sizes["traces"], sizes
