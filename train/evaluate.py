"""Evaluate one checkpoint of any run once: COCO metrics and AP per class, no waiting loop.

    python -m train.evaluate --model_dir DIR [--checkpoint PREFIX] [--eval_input_path P]
        [--label_map P] [--pipeline_config P] [--report_json P]

Exit codes: 0 ok, 2 usage error, 6 the evaluation failed (README "Exit codes").
"""

from __future__ import annotations

import sys

from absl import app, flags

from train import finishcmd

MODEL_DIR = flags.DEFINE_string("model_dir", None, "The run's folder (checkpoints).")
CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint prefix (default: the newest).")
PIPELINE_CONFIG = flags.DEFINE_string(
    "pipeline_config", None, "The run's config (default: model_dir/pipeline.config)."
)
EVAL_INPUT_PATH = flags.DEFINE_multi_string(
    "eval_input_path", [], "Eval TFRecords (default: the config's eval_input_reader)."
)
LABEL_MAP = flags.DEFINE_string("label_map", None, "Label map (default: the config's).")
REPORT_JSON = flags.DEFINE_string("report_json", None, "Also write the metrics as JSON here.")
VERIFY_IMAGES = flags.DEFINE_integer(
    "verify_images", 8, "Eval images drawn on model_dir/eval/detections.png.", lower_bound=1
)


def main(argv: list[str]) -> int:  # noqa: D103
    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    return finishcmd.run(
        finishcmd.Request(
            model_dir=MODEL_DIR.value,
            checkpoint=CHECKPOINT.value,
            pipeline_config=PIPELINE_CONFIG.value,
            eval_input_path=tuple(EVAL_INPUT_PATH.value),
            label_map=LABEL_MAP.value,
            report_json=REPORT_JSON.value,
            evaluate=True,
            verify_images=VERIFY_IMAGES.value,
        )
    )


if __name__ == "__main__":
    flags.mark_flag_as_required("model_dir")
    app.run(main, flags_parser=finishcmd.parse_flags)
