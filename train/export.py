"""Export any run's checkpoint as a SavedModel and/or TFLite, verified against the checkpoint.

    python -m train.export --model_dir DIR --export saved_model,tflite [--checkpoint PREFIX]
        [--input_type image_tensor|float_image_tensor|encoded_image_string_tensor]
        [--tflite_quantize none|float16|int8] [--out DIR] [--verify_images N]

Writes DIR/export/saved_model (the OD API's layout), DIR/export/model.tflite + labels.txt.
Exit codes: 0 ok, 2 usage error, 6 the export failed or detects differently from the
checkpoint (README "Exit codes").
"""

from __future__ import annotations

import sys

from absl import app, flags

from train import finishcmd, results

MODEL_DIR = flags.DEFINE_string("model_dir", None, "The run's folder (checkpoints).")
FORMATS = flags.DEFINE_list(
    "export", ["saved_model"], f"Formats, as the driver's --export: {', '.join(results.FORMATS)}."
)
flags.DEFINE_alias("formats", "export")  # its name before it matched the driver's
CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Checkpoint prefix (default: model_dir/best, else the newest)."
)
PIPELINE_CONFIG = flags.DEFINE_string(
    "pipeline_config", None, "The run's config (default: model_dir/pipeline.config)."
)
INPUT_TYPE = flags.DEFINE_enum(
    "input_type", "image_tensor", results.INPUT_TYPES, "SavedModel input."
)
TFLITE_QUANTIZE = flags.DEFINE_enum("tflite_quantize", "none", results.QUANTIZE, "TFLite weights.")
OUT = flags.DEFINE_string("out", None, "Export folder (default: model_dir/export).")
VERIFY_IMAGES = flags.DEFINE_integer(
    "verify_images", 8, "Eval images each export is compared on.", lower_bound=1
)
REPORT_JSON = flags.DEFINE_string("report_json", None, "Also write the report as JSON here.")


def main(argv: list[str]) -> int:  # noqa: D103
    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    try:
        formats = results.parse_formats(FORMATS.value)
    except results.UsageError as e:
        print(f"error: --export: {e}", file=sys.stderr)
        return 2
    return finishcmd.run(
        finishcmd.Request(
            model_dir=MODEL_DIR.value,
            checkpoint=CHECKPOINT.value or finishcmd.best_checkpoint(MODEL_DIR.value),
            pipeline_config=PIPELINE_CONFIG.value,
            report_json=REPORT_JSON.value,
            formats=formats,
            input_type=INPUT_TYPE.value,
            tflite_quantize=TFLITE_QUANTIZE.value,
            verify_images=VERIFY_IMAGES.value,
            out=OUT.value,
        )
    )


if __name__ == "__main__":
    flags.mark_flag_as_required("model_dir")
    app.run(main, flags_parser=finishcmd.parse_flags)
