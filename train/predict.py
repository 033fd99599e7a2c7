"""Run a trained or exported model on pictures and videos.

    python -m train.predict --model PATH [--label_map MAP] [--threshold T] --out DIR INPUT...

PATH: a run's model_dir (its best checkpoint, else the newest), a SavedModel, a .tflite (with
the metadata train.export writes) or an .onnx. INPUT: images, folders, globs, videos. Writes
DIR/annotated/, detections.json (COCO results), images.json, detections.csv, summary.json
(docs/predict.md). Exit codes: 0 ok, 2 usage error (a missing model or label map, --out over
an input, no image among the inputs); unreadable pictures are skipped and listed.
"""

from __future__ import annotations

import sys

from absl import app, flags

from train import compat, errors
from train.predicting.plan import DEFAULT_THRESHOLD

MODEL = flags.DEFINE_string("model", None, "model_dir, SavedModel folder, .tflite or .onnx.")
LABEL_MAP = flags.DEFINE_string("label_map", None, "Class names (default: the model's own).")
THRESHOLD = flags.DEFINE_float(
    "threshold",
    None,
    "Score a detection needs to be kept (default: the recommended one of the run the model "
    f"comes from, model_dir/plots/curves.json, else {DEFAULT_THRESHOLD}).",
)
OUT = flags.DEFINE_string("out", None, "Folder for the predictions (new, or an earlier --out).")
PROGRESS = flags.DEFINE_boolean("progress", True, "A progress line on long inputs.")


def main(argv: list[str]) -> int:  # noqa: D103
    from train.predicting import plan as plans

    options = plans.PredictOptions(
        model=MODEL.value,
        inputs=tuple(argv[1:]),
        out=OUT.value,
        label_map=LABEL_MAP.value,
        threshold=THRESHOLD.value,
        progress=PROGRESS.value,
    )
    try:
        plan = plans.plan(options)
    except plans.PlanError as e:
        print(f"error: {e}", file=sys.stderr)
        return errors.EXIT_USAGE
    compat.quiet_tensorflow()
    compat.apply()
    from train.predicting import outputs, pipeline
    from train.tf import predictors

    try:
        predictor = predictors.load(plan)
    except predictors.ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return errors.EXIT_USAGE
    print(
        f"predict: {predictor.describe}, {len(plan.items)} input(s), score threshold "
        f"{plan.options.threshold:g} ({plan.threshold_from})",
        flush=True,
    )
    summary = pipeline.run(plan, predictor)
    print("\n".join(outputs.lines(summary)), flush=True)
    return errors.EXIT_OK


def run() -> None:
    """The console entry point."""
    from train import cli

    flags.mark_flag_as_required("model")
    flags.mark_flag_as_required("out")
    app.run(main, flags_parser=cli.parse)


if __name__ == "__main__":
    run()
