"""EXPORT.*: what would make the export after training fail, found before training starts.

A ten-hour run must not end in a model that cannot be exported: the OD API converts only SSD
and CenterNet to TFLite, and only with a `fixed_shape_resizer` (a TFLite model has one static
input shape). A resizer change alters the trained model, so it is never applied silently: the
finding gives the exact edit, for the user to decide and retrain with.
"""

from __future__ import annotations

from train import results
from train.preflight.findings import ERROR, WARNING
from train.results import TFLITE_ARCHS


def _formats(ctx) -> tuple[str, ...]:
    try:
        return results.parse_formats(ctx.options.export)
    except results.UsageError:
        return ()  # a usage error, reported before the preflight


def check_export(ctx):
    """EXPORT.tflite_arch / tflite_resizer / int8_calibration / quantize_unused."""
    options, config = ctx.options, ctx.config
    formats = _formats(ctx)
    arch = config.model.WhichOneof("model")
    if options.tflite_quantize != "none" and "tflite" not in formats:
        yield ctx.finding_at(
            "model",
            "EXPORT.quantize_unused",
            WARNING,
            f"--tflite_quantize {options.tflite_quantize} is given but --export has no tflite",
            "add tflite to --export, or drop --tflite_quantize",
        )
    if "tflite" not in formats:
        return
    if arch not in TFLITE_ARCHS:
        yield ctx.finding_at(
            arch or "model",
            "EXPORT.tflite_arch",
            ERROR,
            f"--export tflite: the OD API converts only SSD and CenterNet models to TFLite; this "
            f"is {arch}",
            "export saved_model only (--export saved_model), or train an SSD or CenterNet model "
            "for a device",
        )
        return
    resizer = getattr(config.model, arch).image_resizer
    kind = resizer.WhichOneof("image_resizer_oneof")
    if kind != "fixed_shape_resizer":
        size = (
            resizer.keep_aspect_ratio_resizer.max_dimension
            if kind == "keep_aspect_ratio_resizer"
            else 512
        )
        yield ctx.finding_at(
            "image_resizer",
            "EXPORT.tflite_resizer",
            ERROR,
            f"--export tflite: model.{arch}.image_resizer is {kind}; a TFLite model has one "
            "fixed input shape, and the OD API converts only a fixed_shape_resizer",
            f"replace the resizer with image_resizer {{ fixed_shape_resizer {{ height: {size} "
            f"width: {size} }} }} in the config and train with it (it changes what the model "
            "sees, so it is not applied for you), or export saved_model only",
        )
    if options.tflite_quantize == "int8" and not results.train_paths(config):
        yield ctx.finding_at(
            "train_input_reader",
            "EXPORT.int8_calibration",
            ERROR,
            "--tflite_quantize int8 calibrates on training images, and no training records "
            "were found",
            "pass --train_input_path with the training TFRecords, or use --tflite_quantize float16",
        )
