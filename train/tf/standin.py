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


# The class logits a model predicts, by prediction key: True for those of Faster R-CNN's
# first stage (the RPN's objectness), whose layer is under "FirstStageBoxPredictor/". Every
# class head's output layer is named "ClassPredictor*". Scaling that layer's kernel scales
# the logits' kernel part exactly: nothing it computes feeds back into its input.
_CLASS_HEADS = {
    "rpn_objectness_predictions_with_background": True,
    "class_predictions_with_background": False,
}
LOGIT_SPREAD = 1.5  # the standard deviation of the calibrated class logits' kernel part
CALIBRATION_IMAGES = 8


def _calibrate(tf, model, config, records: tuple[str, ...]) -> None:
    """Makes the random model score boxes apart, image by image, as a pretrained one does.

    A random model's batch-norm statistics (0 and 1, or shifted) match nothing its layers
    produce, so activations saturate and every box scores alike whatever the image; its class
    heads' logits are either all near their prior bias (SSD: every anchor ~0.0102) or hundreds
    apart (Faster R-CNN: background 1.0 everywhere). Calibrated on the records' first images:
    on noise it does not carry over, a random network's activations depend on the kind of
    image far more than a trained one's.
    """
    from train.tf import exporting, restore

    height, width = restore.input_size(config)
    images = [  # each passes alone (see _calibrate_batch_norm)
        tf.image.resize(image, [height, width])
        for image in exporting.record_images(records, CALIBRATION_IMAGES)
    ]
    was_training = model._is_training  # noqa: SLF001 - no groundtruth: proposals as at inference
    model._is_training = False  # noqa: SLF001
    try:
        _calibrate_batch_norm(tf, model, images)
        _scale_class_heads(tf, model, images)
    finally:
        model._is_training = was_training  # noqa: SLF001


def _calibrate_batch_norm(tf, model, images) -> None:
    """Sets every batch norm's moving statistics to the mean of `images`' batch statistics.

    One image at a time in training mode (a Faster R-CNN pass over 8 images at once peaked
    at 19.5 GB), the k-th with a momentum of k/(k+1): each moving statistic becomes the mean
    of the images' statistics, each layer normalised by the (already normalised) layers
    before it.
    """
    layers = [layer for layer in model._flatten_layers() if hasattr(layer, "moving_variance")]  # noqa: SLF001
    saved = [(layer, layer.momentum, getattr(layer, "_training", None)) for layer in layers]
    for layer in layers:
        if getattr(layer, "_training", None) is False:  # the OD API's FreezableBatchNorm
            layer._training = None  # noqa: SLF001
    tf.keras.backend.set_learning_phase(1)
    try:
        for k, image in enumerate(images):
            for layer in layers:
                layer.momentum = k / (k + 1)
            model.predict(*model.preprocess(image[tf.newaxis]))
    finally:
        tf.keras.backend.set_learning_phase(0)
        for layer, momentum, training in saved:
            layer.momentum = momentum
            if training is not None:
                layer._training = training  # noqa: SLF001


def _scale_class_heads(tf, model, images) -> None:
    """Scales each class head's kernel to logits that spread by LOGIT_SPREAD on `images`.

    The kernel part of the logits (measured with the biases at 0) gets a standard deviation
    of LOGIT_SPREAD and a mean of 0: the biases keep the config's prior.
    """
    heads = {}  # prediction key: (kernels, biases)
    for key, first_stage in _CLASS_HEADS.items():
        head = [
            v
            for v in model.variables
            if "ClassPredictor" in v.name and ("FirstStageBoxPredictor/" in v.name) == first_stage
        ]
        kernels = [v for v in head if _leaf(v) in ("kernel", "pointwise_kernel")]
        biases = [v for v in head if _leaf(v) == "bias"]
        if kernels and biases:
            heads[key] = (kernels, biases)
    values = {id(b): b.numpy() for _, biases in heads.values() for b in biases}
    for _, biases in heads.values():  # the kernels' part alone: a pass with the biases at 0
        for bias in biases:
            bias.assign(tf.zeros_like(bias))
    parts = {key: [] for key in heads}
    try:
        for image in images:
            predicted = model.predict(*model.preprocess(image[tf.newaxis]))
            for key, found in parts.items():
                if key in predicted:
                    found.append(tf.reshape(predicted[key], [-1]))
    finally:
        for _, biases in heads.values():
            for bias in biases:
                bias.assign(values[id(bias)])
    for key, (kernels, biases) in heads.items():
        if not parts[key]:
            continue
        part = tf.concat(parts[key], 0)
        spread = float(tf.math.reduce_std(part))
        if not spread > 0:
            continue
        scale = LOGIT_SPREAD / spread
        for kernel in kernels:
            kernel.assign(kernel * scale)
        for bias in biases:
            bias.assign_sub(tf.fill(bias.shape, scale * float(tf.reduce_mean(part))))


def set_batch_norm_decay(message, decay: float) -> int:
    """Sets the decay of every BatchNorm message under `message`; returns how many.

    A zoo config's 0.997 suits a pretrained checkpoint, whose moving statistics already fit
    its weights: a few hundred steps move them little. Weights trained from scratch change
    fast, and at 0.997 the statistics still hold decay**steps of the stand-in's (41 % after
    300 steps): training goes well and evaluation, which uses them, finds nothing (the demo:
    mAP@.5 0.005 on its own training images at 0.997, 0.79 at 0.9).
    """
    from train.pipeline import fields

    batch_norms = [m for _, m in fields.messages(message) if m.DESCRIPTOR.name == "BatchNorm"]
    for batch_norm in batch_norms:
        batch_norm.decay = decay
    return len(batch_norms)


def _leaf(variable) -> str:
    return variable.name.split("/")[-1].split(":")[0]


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
    calibrate_on: tuple[str, ...] = (),
    batch_norm_decay: float | None = None,
) -> str:
    """Builds, perturbs and saves the model; returns the checkpoint prefix.

    `image_size` builds at a smaller input (variables do not depend on it; EfficientDet needs
    a multiple of 128) to make big zoo models affordable on a CPU. `shift` is the uniform
    range added to every float variable: the default (all positive) makes any restore
    visible but drives deep ResNets to inf activations and kept the demo's model from learning
    (every channel then responds to the mean of its inputs); a centred range such as
    (-0.01, 0.01) keeps a model that detects (the export tests compare detections).
    `calibrate_on` (TFRecord files; after the shift) makes it score boxes apart, image by
    image, on images like those, as a model pretrained on them does (see _calibrate): what
    comparing two detectors needs. `batch_norm_decay` goes into the folder's pipeline.config
    only (see set_batch_norm_decay). The same arguments build the same weights.
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
    tf.keras.utils.set_random_seed(seed)  # Keras initializers without a seed use Python's
    with offline_build.no_downloads(skip_imagenet=True):  # its weights are random anyway
        model = restore.build_model(config, is_training=False, seed=seed)
    generator = tf.random.Generator.from_seed(seed)
    for variable in model.variables:
        if variable.dtype.is_floating:
            variable.assign_add(generator.uniform(variable.shape, *shift, dtype=variable.dtype))
    if calibrate_on:
        _calibrate(tf, model, config, tuple(calibrate_on))
    checkpoint_dir = os.path.join(out_dir, "checkpoint")
    if os.path.isdir(checkpoint_dir):
        shutil.rmtree(checkpoint_dir)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), checkpoint_dir, max_to_keep=1
    )
    prefix = manager.save(checkpoint_number=0)
    if batch_norm_decay is not None:
        set_batch_norm_decay(config, batch_norm_decay)
    files.write_atomic(os.path.join(out_dir, "pipeline.config"), configfile.to_text(config))
    return prefix
