"""The export formats, one row each: the one table the driver, the preflight and the export read.

Adding a format touches this table (its name, module, tolerances and preflight rule) and its
own module under train/tf/formats/ (how it exports, how its output runs on an image for the
verification) and nothing else: `--export` / `train.export --export` accept it, the
preflight applies its rule, the finish child exports and verifies it. TF-free.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

TFLITE_ARCHS = ("ssd", "center_net")  # what export_tflite_graph_lib_tf2 converts
# Written into every export folder: a verified export replaces the one of the same name there,
# so a folder with files but no marker (a zoo download's saved_model/) is not ours to write.
MARKER = ".tfod-finetune-export"


def out_problem(out: str) -> str | None:
    """Why exports may not go into `out` (None when they may: new, empty, or ours)."""
    import os

    if not os.path.exists(out):
        return None
    if not os.path.isdir(out):
        return "is a file: name a folder for the exports (new, or an earlier export folder)"
    if os.listdir(out) and not os.path.exists(os.path.join(out, MARKER)):
        return (
            "holds files that no export of this tool wrote (a verified export replaces "
            "saved_model/ and model*.tflite there): name a new or empty folder"
        )
    return None


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How far an exported model may drift from its checkpoint and still pass (train/verify.py)."""

    max_box_delta: float  # normalized coordinates
    max_score_delta: float
    min_matched: float  # share of the checkpoint's detections found again


@dataclasses.dataclass(frozen=True)
class ExportFormat:
    """One export format.

    Attributes:
      name: the value of --export.
      module: the train.tf.formats module with `export(job) -> Exported`.
      tolerances: {variant: Tolerance}; the variant is the Exported's `key` (the name in the
        report: "tflite_int8" for an int8 TFLite).
      problem: the preflight's rule: `problem(config, host_memory)` is (code, field, message,
        fix) when this model cannot be exported so on a machine with `host_memory` bytes
        (None: unknown), else None.
    """

    name: str
    module: str
    tolerances: dict[str, Tolerance]
    problem: Callable | None = None


def tflite_problem(config, host_memory: int | None = None) -> tuple[str, str, str, str] | None:
    """(code, field, message, fix) when the OD API cannot convert this model to TFLite.

    Only SSD and CenterNet convert, and only with a `fixed_shape_resizer` (one static input
    shape). A resizer change alters the trained model, so the fix is an edit for the user.
    Memory was never the limit (measured up to CenterNet ResNet50 FPN).
    """
    arch = config.model.WhichOneof("model")
    if arch not in TFLITE_ARCHS:
        return (
            "EXPORT.tflite_arch",
            arch or "model",
            f"the OD API converts only SSD and CenterNet models to TFLite; this is {arch}",
            "export saved_model only, or train an SSD or CenterNet model for a device",
        )
    resizer = getattr(config.model, arch).image_resizer
    kind = resizer.WhichOneof("image_resizer_oneof")
    if kind == "fixed_shape_resizer":
        return None
    size = (
        resizer.keep_aspect_ratio_resizer.max_dimension
        if kind == "keep_aspect_ratio_resizer"
        else 512
    )
    return (
        "EXPORT.tflite_resizer",
        "image_resizer",
        f"model.{arch}.image_resizer is {kind}; a TFLite model has one fixed input shape, and "
        "the OD API converts only a fixed_shape_resizer",
        f"replace the resizer with image_resizer {{ fixed_shape_resizer {{ height: {size} "
        f"width: {size} }} }} in the config and train with it (it changes what the model sees, "
        "so it is not applied for you), or export saved_model only",
    )


# tf2onnx's optimizer on a CenterNet Hourglass-104 (the backbone of 8 of the 40 TF2 zoo configs,
# DeepMAC's included) was killed by the kernel at 19.7 GB resident on a 23.5 GB machine, beside
# the finish child's 3.5 GB (scripts/sweep_onnx.py); every other family converted there. 32 GB
# is the next common machine size, not a measured bound.
ONNX_HOURGLASS_BYTES = 32 * 1024**3


def onnx_problem(config, host_memory: int | None) -> tuple[str, str, str, str] | None:
    """(code, field, message, fix) when converting this model to ONNX would run out of memory."""
    arch = config.model.WhichOneof("model")
    if arch != "center_net" or host_memory is None or host_memory >= ONNX_HOURGLASS_BYTES:
        return None
    if config.model.center_net.feature_extractor.type != "hourglass_104":
        return None
    return (
        "EXPORT.onnx_memory",
        "feature_extractor",
        f"converting a CenterNet Hourglass-104 to ONNX needs more than this machine's "
        f"{host_memory / 1024**3:.1f} GB of host memory (tf2onnx was killed at 19.7 GB on a "
        "23.5 GB machine, measured)",
        "export saved_model here and convert on a machine with 32 GB or more: "
        "python -m train.export --model_dir MODEL_DIR --export onnx",
    )


TABLE = (
    ExportFormat(
        "saved_model", "train.tf.formats.saved_model", {"saved_model": Tolerance(1e-3, 1e-3, 0.95)}
    ),
    ExportFormat(
        "tflite",
        "train.tf.formats.tflite",
        {
            "tflite": Tolerance(0.01, 0.01, 0.9),  # float32: other kernels, other NMS
            "tflite_float16": Tolerance(0.05, 0.05, 0.8),
            "tflite_int8": Tolerance(0.1, 0.15, 0.6),
        },
        tflite_problem,
    ),
    ExportFormat(
        # tf2onnx from a float32-input SavedModel, run in ONNX Runtime: the same graph, other
        # kernels (measured on the demo: scores within 2e-5, boxes within 2e-7)
        "onnx",
        "train.tf.formats.onnx",
        {"onnx": Tolerance(1e-3, 1e-3, 0.95)},
        onnx_problem,
    ),
)
BY_NAME = {f.name: f for f in TABLE}
TOLERANCES = {key: t for f in TABLE for key, t in f.tolerances.items()}
NAMES = tuple(f.name for f in TABLE)


def problems(
    config, names, host_memory: int | None = None
) -> list[tuple[str, tuple[str, str, str, str]]]:
    """(format, (code, field, message, fix)) for each of `names` that `config` cannot export.

    `host_memory`: the bytes the exporting machine may use (envinfo.host_memory_bytes());
    None skips the rules that depend on it.
    """
    return [(name, found) for name in names if (found := _problem(config, name, host_memory))]


def _problem(config, name: str, host_memory: int | None):
    rule = BY_NAME[name].problem
    return rule(config, host_memory) if rule else None
