"""How the OD API's code is traced: without AutoGraph's source rewriting, except its loops.

Every TensorFlow child traces the OD API's Python into graphs: the training step, the input
pipeline's map functions, the evaluation and export functions. AutoGraph first rewrites each
function it meets (parses its source, transforms it, compiles it again); on the demo that is
half of a training child's start (one step: 29 s with it, 15 s without, on 2 CPU cores;
docs/measurements.md), paid again by every process: the rehearsal, each --batch_size auto
point, the evaluator, the finish.

The OD API was written for TF1 graph mode: its control flow is tf.cond, tf.while_loop and
tf.map_fn, so its functions trace to the same ops unconverted. The exception is model_lib_v2's
own loop bodies (`for _ in tf.range(...)` in the training loop), which stay converted. A
function that did rely on AutoGraph could not trace silently wrong: using a tensor as a Python
bool or iterating over one fails at tracing (OperatorNotAllowedInGraphError). TFOD_AUTOGRAPH=all
gives AutoGraph everything back. tests/test_tracing.py computes the same input batch and the
same losses both ways for the main meta-architectures.
"""

from __future__ import annotations

import os

ENV = "TFOD_AUTOGRAPH"  # "all": AutoGraph converts the OD API's functions too (its default)
CONVERTED = ("object_detection.model_lib_v2",)  # loops over tensors: they need AutoGraph
_applied = False


def limit_autograph() -> bool:
    """Makes AutoGraph call the OD API's functions as written (model_lib_v2's converted).

    Returns whether the rule is in force. Idempotent; a no-op under TFOD_AUTOGRAPH=all or on
    a TensorFlow whose AutoGraph has no conversion rules to extend (the default then holds).
    """
    global _applied
    if os.environ.get(ENV, "").strip().lower() == "all":
        return False
    if _applied:
        return True
    try:
        from tensorflow.python.autograph.core import config
    except ImportError:
        return False
    rules = getattr(config, "CONVERSION_RULES", None)
    if rules is None or not hasattr(config, "DoNotConvert") or not hasattr(config, "Convert"):
        return False
    # The first rule whose module prefix matches decides: model_lib_v2 before the package.
    ours = (*(config.Convert(m) for m in CONVERTED), config.DoNotConvert("object_detection"))
    config.CONVERSION_RULES = (*ours, *rules)
    _applied = True
    return True


def create_slots(optimizer, variables) -> bool:
    """Creates the optimizer's variables (iterations, slots) for `variables` now.

    A tf.function whose first call creates variables is traced twice: once creating them
    (their initialisation lifted out of the graph), then again without (TensorFlow's
    Function._initialize). train_loop's step creates the optimizer's slots in its first
    apply_gradients, so every training child traced its step twice: ~2 s of the demo child's
    ~16 s on 2 CPU cores, paid by every run. Created before the first call, as apply_gradients
    creates them (zeros, the same names, under the same strategy), the step is traced once and
    computes the same (tests/test_tracing.py: the same weights after a step, bit for bit). When
    the child calls it: train/tf/child.py (_recording_checkpoint_managers).

    For a variable that gets no gradient apply_gradients creates no slot; created here, its
    slot stays zero, is saved, and is never read. Only Keras 2's own optimizers (what the OD
    API's optimizer_builder builds; `_create_all_weights` is what their apply_gradients calls);
    for any other (the moving-average wrapper) the step creates them, as before.

    Returns whether the variables were created here.
    """
    create = getattr(optimizer, "_create_all_weights", None)
    own = type(optimizer).__module__.startswith(("keras.", "tf_keras."))
    if not variables or create is None or not own:
        return False
    create(list(variables))
    return True
