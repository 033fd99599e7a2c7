"""A stand-in for a TF2 detection-zoo download, built from a config with random weights.

Pretrained weights cannot be downloaded here, so the demo and the tests build the model from a
zoo-equivalent config (90 COCO classes), run one forward pass so every variable exists, shift
every float variable by a small random amount (so any restore is visible: fresh initialisers
never produce these values), and save it exactly like the zoo tarballs are laid out:
`<out>/checkpoint/{checkpoint, ckpt-0.index, ckpt-0.data-00000-of-00001}` + `<out>/pipeline.config`.
"""

from __future__ import annotations

import os
import shutil


def _set_image_size(config, size: int) -> None:
    from train.pipeline import fields

    resizer = fields.model_message(config).image_resizer
    which = resizer.WhichOneof("image_resizer_oneof")
    if which == "fixed_shape_resizer":
        resizer.fixed_shape_resizer.height = resizer.fixed_shape_resizer.width = size
    elif which == "keep_aspect_ratio_resizer":
        resizer.keep_aspect_ratio_resizer.min_dimension = size
        resizer.keep_aspect_ratio_resizer.max_dimension = size


def zoo_config_on_records(source: str, size: int, records: dict, out_dir: str) -> str:
    """A zoo config for 3 classes at `size`, reading `records` (synthetic.make_dataset's).

    Detection only: a CenterNet keypoint config loses its keypoint task (and what the readers,
    eval and augmentation keep for it) and gets the fixed_shape_resizer TFLite needs (the
    EXPORT.tflite_resizer edit, made as a user would). No fine-tune checkpoint. Written to
    out_dir under the source's name; returns its path. For the export tests and benchmark.
    """
    from train import files
    from train.pipeline import configfile

    name = os.path.basename(source)
    config = configfile.load(source).proto
    model = getattr(config.model, config.model.WhichOneof("model"))
    model.num_classes = 3
    if name.startswith("centernet"):
        del model.keypoint_estimation_task[:]
        model.ClearField("keypoint_label_map_path")
        for reader in (config.train_input_reader, *config.eval_input_reader):
            reader.ClearField("num_keypoints")
        config.eval_config.ClearField("keypoint_edge")
        config.eval_config.ClearField("parameterized_metric")
        for step in config.train_config.data_augmentation_options:
            step.random_horizontal_flip.ClearField("keypoint_flip_permutation")
        model.image_resizer.fixed_shape_resizer.height = size
        model.image_resizer.fixed_shape_resizer.width = size
    _set_image_size(config, size)  # the variables do not depend on it
    for reader, path in (
        (config.train_input_reader, records["train"]),
        (config.eval_input_reader[0], records["eval"]),
    ):
        reader.label_map_path = records["label_map"]
        reader.tf_record_input_reader.ClearField("input_path")
        reader.tf_record_input_reader.input_path.append(path)
    config.train_config.fine_tune_checkpoint = ""
    target = os.path.join(str(out_dir), name)
    files.write_atomic(target, configfile.to_text(config))
    return target


def build_standin(
    config_path: str,
    out_dir: str,
    num_classes: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
    shift: tuple[float, float] = (0.0, 0.02),
) -> str:
    """Builds, perturbs and saves the model; returns the checkpoint prefix.

    `image_size` builds at a smaller input (variables do not depend on it; EfficientDet needs
    a multiple of 128) to make big zoo models affordable on a CPU. `shift` is the uniform
    range added to every float variable: the default (all positive) makes any restore
    visible but drives deep ResNets to inf activations; a centred range such as
    (-0.01, 0.01) keeps a model that detects (the export tests compare detections).
    """
    from train import compat, files

    compat.apply()
    import tensorflow as tf

    from train.pipeline import configfile, fields
    from train.tf import offline_build, restore

    source = configfile.load(config_path)
    config = source.proto
    if num_classes is not None:
        fields.set_value(config, fields.num_classes_path(config), num_classes)
    if image_size:
        _set_image_size(config, image_size)
    tf.random.set_seed(seed)
    with offline_build.no_downloads(skip_imagenet=True):  # its weights are random anyway
        model = restore.build_model(config, is_training=False, seed=seed)
    generator = tf.random.Generator.from_seed(seed)
    for variable in model.variables:
        if variable.dtype.is_floating:
            variable.assign_add(generator.uniform(variable.shape, *shift, dtype=variable.dtype))
    checkpoint_dir = os.path.join(out_dir, "checkpoint")
    if os.path.isdir(checkpoint_dir):
        shutil.rmtree(checkpoint_dir)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), checkpoint_dir, max_to_keep=1
    )
    prefix = manager.save(checkpoint_number=0)
    files.write_atomic(os.path.join(out_dir, "pipeline.config"), configfile.to_text(config))
    return prefix
