"""What the training child adds to a failing step: the NaN guard, and the line a failure ends with.

The guard checks each loss and the gradients' norm inside the traced step, so a non-finite
step is never applied or saved (TRAIN.nan); an allocation failure is told as TRAIN.oom; a data
error names the training record it came from (INPUT_DATA.bad_record).
"""

from __future__ import annotations

import contextlib

NAN_TAG = "TRAIN.nan"  # in the check's message: how a non-finite value is told from other errors


class NonFiniteState(Exception):
    """A variable about to be saved holds NaN or Inf although the losses and gradients did not.

    Batch-norm moving statistics are assigned in the forward pass, outside the gradients, and a
    variance overflows to Inf while the normalised output (and so the loss) stays finite.
    """

    def __init__(self, names: list[str], kind: str, step: int):
        self.names, self.kind, self.step = names, kind, step
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        super().__init__(
            f"{NAN_TAG} {len(names)} variable(s) became {kind} at step {step}: {shown}"
        )


def _saved_variables(tf, checkpoint) -> list:
    """Every variable the checkpoint holds: model, step, optimizer and its slots.

    Walked through the object graph rather than `model.variables`: Keras raises for a
    sub-model not built yet, as at train_loop's step-0 save of a run without a fine-tune
    checkpoint. A legacy Keras optimizer's slots are no children in that graph: asked for.
    """
    descendants = tf.train.TrackableView(checkpoint).descendants()
    found = [v for v in descendants if isinstance(v, tf.Variable)]
    optimizer = getattr(checkpoint, "optimizer", None)
    if optimizer is not None and hasattr(optimizer, "get_slot_names"):
        for name in optimizer.get_slot_names():
            for variable in list(found):
                try:
                    found.append(optimizer.get_slot(variable, name))
                except (KeyError, ValueError):
                    continue
    return list({id(v): v for v in found}.values())


def check_finite_state(tf, checkpoint) -> None:
    """Raises NonFiniteState when any floating-point variable to be saved is not finite.

    Called before every save: no checkpoint ever holds NaN or Inf, so "the newest checkpoint"
    is always the last good one and --nan_retries never resumes from a poisoned state.
    """
    floats = [v for v in _saved_variables(tf, checkpoint) if v.dtype.is_floating]
    if not floats:
        return
    finite = tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in floats]).numpy()
    if finite.all():
        return
    bad = [v for v, ok in zip(floats, finite, strict=True) if not ok]
    kind = "NaN" if any(bool(tf.reduce_any(tf.math.is_nan(v))) for v in bad) else "Inf"
    step = int(checkpoint.step.numpy()) if getattr(checkpoint, "step", None) is not None else -1
    raise NonFiniteState([v.name for v in bad], kind, step)


@contextlib.contextmanager
def nan_guard(tf, model_lib_v2, enabled: bool):
    """Fails a training step whose losses or gradients are not finite, before it applies them.

    Each loss of the step and the gradients' global norm pass through check_numerics inside
    the traced step, so the update that would write NaN into the weights never runs, and the
    loop stops at its next read of the step (it reads the step every iteration already: no
    extra device sync). The error names the loss. train_loop's `global_step.assign_add(1)`
    depends on nothing in the step, so it could run before a check fails; a no-op assign to
    the same variable after the checks and the update orders it behind them (TensorFlow runs
    a function's ops on one variable in program order): a failed step does not count.
    """
    if not enabled:
        yield
        return
    original_losses = model_lib_v2._compute_losses_and_predictions_dicts  # noqa: SLF001
    original_build = model_lib_v2.optimizer_builder.build
    original_step = model_lib_v2.eager_train_step

    def train_step(model, features, labels, unpad, optimizer, training_step, *args, **kwargs):
        losses = original_step(
            model, features, labels, unpad, optimizer, training_step, *args, **kwargs
        )
        with tf.control_dependencies([*losses.values(), optimizer.iterations.read_value()]):
            training_step.assign_add(0)
        return losses

    def losses(*args, **kwargs):
        losses_dict, predictions = original_losses(*args, **kwargs)
        checked = {
            name: tf.debugging.check_numerics(value, f"{NAN_TAG} {name}")
            for name, value in losses_dict.items()
        }
        return checked, predictions

    def build(*args, **kwargs):
        optimizer, extra = original_build(*args, **kwargs)
        apply = optimizer.apply_gradients

        def apply_gradients(grads_and_vars, *a, **kw):
            pairs = list(grads_and_vars)
            norm = tf.linalg.global_norm([g for g, _ in pairs if g is not None])
            check = tf.debugging.check_numerics(norm, f"{NAN_TAG} gradients")
            with tf.control_dependencies([check]):
                pairs = [(tf.identity(g) if g is not None else g, v) for g, v in pairs]
            return apply(pairs, *a, **kw)

        optimizer.apply_gradients = apply_gradients
        return optimizer, extra

    model_lib_v2._compute_losses_and_predictions_dicts = losses  # noqa: SLF001
    model_lib_v2.optimizer_builder.build = build
    model_lib_v2.eager_train_step = train_step
    try:
        yield
    finally:
        model_lib_v2._compute_losses_and_predictions_dicts = original_losses  # noqa: SLF001
        model_lib_v2.optimizer_builder.build = original_build
        model_lib_v2.eager_train_step = original_step


def nan_line(error: Exception, step: int | None, latest: str | None) -> str | None:
    """The TRAIN.nan line for a failed check_numerics or an unsaved non-finite state, else None."""
    import re

    if isinstance(error, NonFiniteState):
        shown = ", ".join(error.names[:3]) + (" ..." if len(error.names) > 3 else "")
        happened = (
            f"{len(error.names)} variable(s) became {error.kind} by step {error.step} while "
            f"the losses and gradients stayed finite ({shown}); that state was not saved"
        )
    else:
        found = re.search(rf"{re.escape(NAN_TAG)} (\S+) : Tensor had (NaN|Inf) values", str(error))
        if not found:
            return None
        what, kind = found.groups()
        subject = "the gradients' norm" if what == "gradients" else what
        happened = (
            f"{subject} became {kind} in the step after step {step}; that step was not applied "
            "and nothing after it saved"
        )
    return f"{happened}: the newest checkpoint is {last_good(latest)}"


def last_good(latest: str | None) -> str:
    """How the checkpoint a TRAIN.nan leaves is named, after reading every value of it back."""
    if not latest:
        return "none (no checkpoint yet)"
    import numpy as np
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(latest)
        saved = int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
        bad = [
            name
            for name in reader.get_variable_to_shape_map()
            if isinstance(value := reader.get_tensor(name), np.ndarray)
            and value.dtype.kind == "f"
            and not np.isfinite(value).all()
        ]
    except (tf.errors.OpError, ValueError):
        return f"{latest} (unreadable)"
    if bad:  # saved by a run without this guard
        return f"{latest} (step {saved}), which is NOT finite either ({bad[0]})"
    return f"{latest} (step {saved}, the last good weights, every value finite)"


_DISK_FULL = {"No space left on device": "no space left", "Disk quota exceeded": "disk quota"}


def disk_full(error: Exception) -> str | None:
    """Says "no space left" or "disk quota" when the error is a full disk, else None."""
    import errno

    text = str(error)
    for marker, why in _DISK_FULL.items():
        if marker in text:
            return why
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk quota" if error.errno == errno.EDQUOT else "no space left"
    return None


def disk_line(error: Exception, model_dir: str, latest: str | None) -> str | None:
    """The TRAIN.disk_full line for a write that found the disk full (None for other errors).

    TensorFlow reports a full disk during a checkpoint save as a ResourceExhaustedError, the
    class it uses for out-of-memory: told apart by the operating system's message.
    """
    from train import files
    from train.checkpoint import bundle

    full = disk_full(error)
    if not full:
        return None
    free = files.free_bytes(model_dir)
    line = f"{full} writing to {model_dir}"
    line += f" ({files.human_size(free)} free now)" if free is not None else ""
    if latest:
        try:
            size = files.human_size(bundle.data_bytes(latest))
            line += f"; a checkpoint takes {size}; every earlier checkpoint is intact, the "
            line += f"newest is {latest}"
        except (bundle.UnsupportedIndex, OSError):
            line += f"; the newest checkpoint is {latest}"
    return line


def memory_line(tf, error: Exception) -> str | None:
    """The TRAIN.oom line for an allocation failure (None for any other error)."""
    import re

    if isinstance(error, MemoryError):
        return "the training process ran out of host memory (MemoryError)"
    if not isinstance(error, tf.errors.ResourceExhaustedError):
        return None
    text = str(error)
    device = re.search(r"device:([A-Z]+:\d+)", text)
    shape = re.search(r"tensor with shape\s*\[[^\]]*\]", text)
    where = f"on {device.group(1)}" if device else "on a device"
    what = f" allocating a {shape.group(0).split('with ')[1]}" if shape else ""
    return f"out of memory {where}{what} (ResourceExhaustedError)"


def _locate_bad_record(tf, paths: list[str]) -> str | None:
    """'FILE record N: why' for the first training record TensorFlow cannot read, or None.

    The OD API's input pipeline reports a corrupted record as "corrupted record at 12" (a byte
    offset, no file name) and an undecodable image with no record at all. After such a failure
    the files are read again, one at a time, with TensorFlow's own reader.
    """
    from train import errors, records

    example = tf.train.Example()
    for path in paths:
        index = 0
        try:
            for payload in tf.compat.v1.io.tf_record_iterator(path):
                example.ParseFromString(payload)
                image = records.image_problem(example)
                if image and image[0] == "no_image":
                    return f"{path} record {index}: no image/encoded"
                if image:
                    return f"{path} record {index}: image/encoded is not a JPEG, PNG or BMP image"
                index += 1
        except Exception as e:  # noqa: BLE001 - DataLossError, DecodeError: the record is bad
            return f"{path} record {index}: {errors.one_line(e)}"
    return None


_DATA_ERRORS = ("corrupted record", "Unknown image file format", "image/encoded", "DataLoss")


def failure_line(tf, error: Exception, config) -> tuple[str, str]:
    """(the one line the driver prints for a failed training, its finding code or "").

    Data errors name the file and record (code BAD_RECORD) when the record can be found.
    """
    from train import errors, records
    from train.contracts import BAD_RECORD
    from train.pipeline import fields

    line = errors.one_line(error)
    if any(marker in f"{type(error).__name__}: {error}" for marker in _DATA_ERRORS):
        paths = [
            path
            for pattern in fields.input_paths(config.train_input_reader)
            for path in records.expand(pattern)
        ]
        where = _locate_bad_record(tf, paths)
        if where:
            return f"bad training record: {where} ({line})", BAD_RECORD
    return line, ""
