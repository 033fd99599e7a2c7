"""EXPORT.*: what would make the export after training fail, found before training starts.

A ten-hour run must not end in a model that cannot be exported: the OD API converts only SSD
and CenterNet to TFLite, and only with a `fixed_shape_resizer` (a TFLite model has one static
input shape). A resizer change alters the trained model, so it is never applied silently: the
finding gives the exact edit, for the user to decide and retrain with.
"""

from __future__ import annotations

from train import envinfo, exportformats, results
from train.preflight.findings import ERROR, WARNING


def _formats(ctx) -> tuple[str, ...]:
    try:
        return results.parse_formats(ctx.options.export)
    except results.UsageError:
        return ()  # a usage error, reported before the preflight


def check_export(ctx):
    """EXPORT.tflite_arch / tflite_resizer / onnx_memory / int8_calibration / quantize_unused.

    The memory rule reads this machine's: the export runs where the training runs.
    """
    options, config = ctx.options, ctx.config
    formats = _formats(ctx)
    memory = envinfo.host_memory_bytes() if "onnx" in formats else None
    for name, (code, field, message, fix) in exportformats.problems(config, formats, memory):
        yield ctx.finding_at(field, code, ERROR, f"--export {name}: {message}", fix)
    if options.tflite_quantize != "none" and "tflite" not in formats:
        yield ctx.finding_at(
            "model",
            "EXPORT.quantize_unused",
            WARNING,
            f"--tflite_quantize {options.tflite_quantize} is given but --export has no tflite",
            "add tflite to --export, or drop --tflite_quantize",
        )
    int8 = "tflite" in formats and options.tflite_quantize == "int8"
    if int8 and not results.train_paths(config):
        yield ctx.finding_at(
            "train_input_reader",
            "EXPORT.int8_calibration",
            ERROR,
            "--tflite_quantize int8 calibrates on training images, and no training records "
            "were found",
            "pass --train_input_path with the training TFRecords, or use --tflite_quantize float16",
        )
