"""The compatibility shims that need TensorFlow (the rest are in train/compat.py).

`compat.apply()` runs these after the TF-free shims (protos, legacy Keras), which must come
before TensorFlow is imported; see train/compat.py for why each one exists.
"""

from __future__ import annotations

import sys
import types

import tensorflow as tf
from tensorflow.python.ops import control_flow_ops


def tf_slim_ops() -> bool:
    """tf-slim 1.1.0 calls control_flow_ops.case/cond/Assert/while_loop, which TF moved."""
    patched = False
    for name, fn in (
        ("case", tf.compat.v1.case),
        ("cond", tf.compat.v1.cond),
        ("Assert", tf.debugging.Assert),
        ("while_loop", tf.compat.v1.while_loop),
    ):
        if not hasattr(control_flow_ops, name):
            setattr(control_flow_ops, name, fn)
            patched = True
    return patched


class _ModeKeys:
    TRAIN = "train"
    EVAL = "eval"
    PREDICT = "infer"


def _unavailable(*args, **kwargs):
    raise NotImplementedError("tf.estimator export is not available on TF >= 2.16")


def estimator() -> bool:
    """From TF 2.16 tf.compat.v1.estimator is gone; the OD API's TF2 path only needs ModeKeys."""
    try:
        from tensorflow.compat.v1 import estimator as _present  # noqa: F401

        return False
    except ImportError:
        pass
    module = types.ModuleType("tensorflow.compat.v1.estimator")
    module.ModeKeys = _ModeKeys
    export = types.ModuleType("tensorflow.compat.v1.estimator.export")
    export.ServingInputReceiver = _unavailable
    export.PredictOutput = _unavailable
    module.export = export
    sys.modules["tensorflow.compat.v1.estimator"] = module
    sys.modules["tensorflow.compat.v1.estimator.export"] = export
    tf.compat.v1.estimator = module
    return True
