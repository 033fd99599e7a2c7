"""What a failure of the OD API while building, reading or computing means, as a finding.

The rehearsal (`--rehearse`) and a training run that dies before its first step report the
OD API's own error; this module turns it into the finding a user can act on: a stable code,
the OD API's message in one line, the config field it points at, and the fix. Known messages
map to the same codes the preflight uses for the rules it mirrors (so a rule the preflight
does not know yet still gets a precise answer); the rest are named by the phase that failed,
never blamed on the checkpoint. TF-free: the driver uses it on a child's Outcome.
"""

from __future__ import annotations

import dataclasses

from train import errors
from train.pipeline import fields


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """A failure as a finding: code, message, fix, and the config field to point at."""

    code: str
    message: str
    fix: str
    field: str | None = None


# (substring of the OD API's error, code, field, what it means, fix)
_KNOWN = (
    (
        "Number of feature maps is expected to equal",
        "MODEL.anchor_layers",
        "anchor_generator",
        "the anchor generator's layers differ from the feature extractor's feature maps",
        "make ssd_anchor_generator.num_layers (or the multiscale levels) match the extractor's "
        "feature maps: 6 for ssd_mobilenet_v1/v2_keras, max_level - min_level + 1 for FPNs",
    ),
    (
        "second_stage_batch_size should be no greater",
        "MODEL.proposals",
        "first_stage_max_proposals",
        "second_stage_batch_size is greater than first_stage_max_proposals",
        "set second_stage_batch_size no greater than first_stage_max_proposals",
    ),
    (
        "num predictions per location must be same",
        "MODEL.anchors_per_location",
        "anchor_generator",
        "the weight-shared box predictor needs the same anchors per location on every layer",
        "set reduce_boxes_in_lowest_layer: false in ssd_anchor_generator",
    ),
    (
        "image size must be >=",
        "MODEL.image_size",
        "image_resizer",
        "the images are smaller than the feature extractor accepts",
        "raise the image_resizer's height and width to the size the message names",
    ),
    (
        "Feature list 'image/encoded' is required",
        "INPUT_DATA.record_kind",
        "input_type",
        "input_type is TF_SEQUENCE_EXAMPLE but the records are tf.train.Example",
        "remove input_type from the input readers (TF_EXAMPLE is the default)",
    ),
    (
        "DownloadRefused",
        "ENV.imagenet_weights",
        "feature_extractor",
        "the model build wanted to download pretrained weights",
        "pass --checkpoint (it replaces those weights), or copy the file named above into "
        "Keras's cache on the training nodes",
    ),
    (
        "URL fetch failure",
        "ENV.imagenet_weights",
        "feature_extractor",
        "the model build tried to download pretrained weights and could not",
        "pass --checkpoint, or put the weights file into Keras's cache (~/.keras/models)",
    ),
)

# What failed, by phase, when the message is not a known one.
_PHASES = {
    "model": (
        "MODEL.build",
        "model",
        "the OD API could not build the model from the config",
        "check the model section of the config (the OD API's message says which part)",
    ),
    "restore": (
        "RESTORE",
        "fine_tune_checkpoint",
        "the fine-tune restore failed",
        "check the CKPT_* findings, or pass --checkpoint with a checkpoint of this architecture",
    ),
    "input": (
        "INPUT.pipeline",
        "train_input_reader",
        "the OD API's training input pipeline (reader, decoder, data augmentations) could not "
        "produce a batch",
        "check train_input_reader, data_augmentation_options and the records (--preflight_only "
        "scans them)",
    ),
    "loss": (
        "MODEL.loss",
        "model",
        "the model could not compute its training losses on a batch of the records",
        "check the model's loss and target settings against the records (classes, boxes)",
    ),
    "first_step": (
        "TRAIN.first_step",
        "model",
        "training failed before its first step completed (model, input pipeline or losses)",
        "run the same command with --rehearse on a CPU node to see which part fails",
    ),
}


def _gather_failure(config) -> tuple[str, str, str, str]:
    """The cryptic gather error of a reader told to load masks or keypoints the records lack."""
    reader = config.train_input_reader
    if reader.load_instance_masks:
        return (
            "INPUT_DATA.masks",
            "load_instance_masks",
            "the reader loads instance masks but the records hold none for their boxes",
            "write one image/object/mask per box, or set load_instance_masks: false",
        )
    if reader.num_keypoints:
        return (
            "INPUT_DATA.keypoints",
            "num_keypoints",
            f"the reader expects {reader.num_keypoints} keypoints per box but the records hold "
            "fewer",
            "write image/object/keypoint/x and /y into the records, or remove num_keypoints",
        )
    return (
        "INPUT.pipeline",
        "train_input_reader",
        "the input pipeline indexed a feature the records do not hold",
        "check which features the reader is told to load against the records",
    )


def diagnose(phase: str, error: str, config) -> Diagnosis:
    """The finding for a child's failure in `phase` with the one-line `error`."""
    error = errors.clip(error)
    for marker, code, field, meaning, fix in _KNOWN:
        if marker in error:
            return Diagnosis(code, f"{meaning} (the OD API: {error})", fix, field)
    if "is not in [0, 0)" in error and phase in ("input", "first_step"):
        code, field, meaning, fix = _gather_failure(config)
        return Diagnosis(code, f"{meaning} (the OD API: {error})", fix, field)
    if phase == "loss" and "non-finite" in error:
        return Diagnosis(
            "MODEL.loss_non_finite",
            f"the losses of one batch are not finite before any training ({error})",
            "check the fine-tune checkpoint for NaN or Inf weights (a diverged run), the boxes "
            "in the records (--preflight_only scans them) and the loss settings",
            "loss",
        )
    code, field, meaning, fix = _PHASES.get(phase, _PHASES["first_step"])
    named = named_fields(error, config)
    if named:  # the OD API's message names the config field: point at it
        field = named[0]
    elif phase == "model" and fields.meta_arch(config) is None:
        field = None
    return Diagnosis(code, f"{meaning} (the OD API: {error})", fix, field)


def named_fields(error: str, config) -> list[str]:
    """Config field names (snake_case words) the error message mentions that the config sets."""
    import re

    from train.pipeline import configfile

    text = configfile.to_text(config)
    return [
        word
        for word in dict.fromkeys(re.findall(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b", error))
        if configfile.find_line(text, word) is not None
    ]
