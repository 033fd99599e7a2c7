"""What a fine-tune restore fills, measured on the real model; and the transplant restore.

TensorFlow is needed here, so only the child processes (train/tf/child.py,
train/tf/prepare.py) import this module.

Coverage is measured, not predicted: every float variable of the built model is set to NaN,
the OD API's own restore runs, and a variable counts as restored when it no longer is all NaN.
Variables the restore did not fill get their fresh initial values back, so training proceeds
exactly as it would have. (A checkpoint tensor that is itself entirely NaN would be counted as
not restored and re-initialised; such a checkpoint cannot be trained from anyway.)
"""

from __future__ import annotations

import collections
import os
import shutil

import numpy as np

from train import compat, errors

compat.apply()  # before TensorFlow: legacy Keras on TF >= 2.16, and the OD API's shims

import tensorflow as tf  # noqa: E402

from train.checkpoint import components  # noqa: E402

_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"


def _escape(name: str) -> str:
    # The escaping tf.train.Checkpoint applies to each element of an object path.
    return name.replace(".", "..").replace("/", ".S")


def object_variables(root) -> dict[str, tf.Variable]:
    """Checkpoint key -> variable, for every variable a checkpoint of `root` would hold.

    Walks the object graph breadth first, as the checkpoint writer does, so each variable gets
    the key of its shortest path (tests compare this with a written checkpoint).
    """
    found: dict[str, tf.Variable] = {}
    seen = {id(root)}
    queue = collections.deque([(root, ())])
    while queue:
        obj, path = queue.popleft()
        for name, child in tf.train.TrackableView.children(obj).items():
            if id(child) in seen:
                continue
            seen.add(id(child))
            child_path = (*path, _escape(name))
            if isinstance(child, tf.Variable):
                found["/".join(child_path) + _VALUE] = child
            else:
                queue.append((child, child_path))
    return found


def model_variables(model) -> dict[str, tf.Variable]:
    """The model's float variables keyed as in the OD API's checkpoints (`model/...`)."""
    keyed = object_variables(tf.train.Checkpoint(model=model))
    return {k: v for k, v in keyed.items() if v.dtype.is_floating}


def input_size(config) -> tuple[int, int]:
    """The image size the model's resizer produces (the dummy input's size)."""
    from train.pipeline import fields

    resizer = fields.model_message(config).image_resizer
    which = resizer.WhichOneof("image_resizer_oneof")
    if which == "fixed_shape_resizer":
        return resizer.fixed_shape_resizer.height, resizer.fixed_shape_resizer.width
    if which == "keep_aspect_ratio_resizer":
        side = resizer.keep_aspect_ratio_resizer.max_dimension
        return side, side
    return 320, 320


def build_model(config, is_training: bool = True, seed: int = 0):
    """Builds the detection model and runs it once on a random image so every variable exists.

    Like the OD API's own dummy computation before a fine-tune restore, the forward pass runs
    with `_is_training` off (Faster R-CNN would otherwise need groundtruth to sample proposals).
    """
    from object_detection.builders import model_builder

    model = model_builder.build(model_config=config.model, is_training=is_training)
    height, width = input_size(config)
    image = tf.random.uniform([1, height, width, 3], 0, 255, seed=seed)
    was_training = model._is_training  # noqa: SLF001 - the OD API's own switch
    model._is_training = False  # noqa: SLF001
    try:
        preprocessed, shapes = model.preprocess(image)
        model.postprocess(model.predict(preprocessed, shapes), shapes)
    finally:
        model._is_training = was_training  # noqa: SLF001
    return model


def build_on_batch(model, dataset, unpad_groundtruth_tensors: bool) -> None:
    """Creates every variable as train_loop's dummy computation does, but eagerly, on one image.

    model_lib_v2._ensure_model_is_built runs the losses of the first training batch (training
    off) inside a tf.function: a graph traced, optimised and run once, then thrown away. The
    same Python run eagerly under the same strategy creates the same variables (names, shapes,
    mirrored per replica, the same initial values under one seed; tests/test_tracing.py
    compares them) in less than half the time: 3.0 s instead of 6.6-7.9 s for the demo model
    at 128 px on 2 CPU cores, 5.1 s instead of 12.4 s with two replicas
    (scripts/bench_model_build.py). Every training process pays it once before its restore.

    Each replica runs the first image of its batch only: variables do not depend on the batch,
    and a full batch run eagerly would hold its memory before the first step, so a batch too
    large would fail in Python's allocations instead of the step's (TRAIN.oom, its fix line).
    """
    from object_detection import model_lib, model_lib_v2

    features, labels = next(iter(dataset))

    def first_image(value):
        return value[:1] if value.shape.rank else value

    def losses(features, labels):
        model._is_training = False  # noqa: SLF001 - as the OD API's dummy computation sets it
        tf.keras.backend.set_learning_phase(False)
        features, labels = tf.nest.map_structure(first_image, (features, labels))
        unstacked = model_lib.unstack_batch(
            labels, unpad_groundtruth_tensors=unpad_groundtruth_tensors
        )
        return model_lib_v2._compute_losses_and_predictions_dicts(  # noqa: SLF001
            model, features, unstacked, training_step=0
        )

    tf.distribute.get_strategy().run(losses, args=(features, labels))


def measure(model, checkpoint_type: str, restore, num_classes: int | None = None) -> dict:
    """Runs `restore()` (the OD API's restore) and reports which model variables it filled.

    Returns the report dict written to model_dir/restore.json. Never raises for a failed
    restore: the failure is the report's `error`, with the variables it left unfilled.
    """
    keyed = model_variables(model)
    try:
        scope_root = tf.train.Checkpoint(**model.restore_from_objects(checkpoint_type))
        in_scope = {id(v) for v in object_variables(scope_root).values()}
    except ValueError as e:  # an unknown type for this meta-architecture
        in_scope, scope_error = set(), e
    else:
        scope_error = None
    fresh = {key: variable.numpy() for key, variable in keyed.items()}
    for variable in keyed.values():
        variable.assign(tf.fill(variable.shape, tf.constant(np.nan, variable.dtype)))
    error = scope_error
    if error is None:
        try:
            restore()
        except Exception as e:  # noqa: BLE001 - reported, with what was and was not filled
            error = e
    entries, new, gaps = [], [], []
    for key, variable in keyed.items():
        value = variable.numpy()
        restored = value.size == 0 or not np.isnan(value).all()
        if not restored:
            variable.assign(fresh[key])
            new.append(key)
            if id(variable) in in_scope:
                gaps.append(key)
        entries.append((key, variable.shape.as_list(), restored))
    return _report(entries, "restored", num_classes, new=new, gaps=gaps, error=error) | {
        "checkpoint_type": checkpoint_type
    }


def _report(entries, verb, num_classes, **extra) -> dict:
    tallies = components.tally(entries)
    error = extra.pop("error", None)
    return {
        "summary": components.summary(tallies, verb, num_classes),
        "variables": len(entries),
        verb: sum(1 for _, _, done in entries if done),
        "components": [vars(t) for t in tallies],
        "error": errors.one_line(error) if error is not None else None,
        **extra,
    }


def transplant(model, source: str, num_classes: int | None = None) -> dict:
    """Copies every checkpoint tensor whose key and shape match a model variable into it.

    The rest (class-dependent tensors: class heads, Faster R-CNN's per-class box head,
    CenterNet's class-centre head) keep their fresh initial values.
    """
    reader = tf.train.load_checkpoint(source)
    shapes = reader.get_variable_to_shape_map()
    entries, fresh, reshaped = [], [], []
    for key, variable in model_variables(model).items():
        shape = variable.shape.as_list()
        ok = key in shapes and list(shapes[key]) == shape
        if ok:
            variable.assign(tf.cast(reader.get_tensor(key), variable.dtype))
        else:
            fresh.append(key)
            if key in shapes:
                reshaped.append(key)
        entries.append((key, shape, ok))
    return _report(entries, "transferred", num_classes, new=fresh, reshaped=reshaped)


def write_model_checkpoint(model, prefix: str) -> str:
    """Saves the model alone, in the zoo layout (`model/...` keys), atomically per directory.

    Written to a sibling temporary directory first and renamed, so an interrupted write never
    leaves a checkpoint that looks complete.
    """
    directory = os.path.dirname(os.path.abspath(prefix))
    staging = directory + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    checkpoint = tf.train.Checkpoint(model=model)
    # Create save_counter, as zoo checkpoints hold it: the OD API's "full" restore asserts that
    # every object of the restoring Checkpoint, its save_counter included, is in the file.
    _ = checkpoint.save_counter
    written = checkpoint.write(os.path.join(staging, os.path.basename(prefix)))
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(staging, directory)
    return os.path.join(directory, os.path.basename(written))
