"""The end of a run, TF-free: which checkpoint, what to evaluate and export, how to say it.

Pure functions build the contracts.FinishSpec (run by train/tf/finish.py) for the driver and
for `python -m train.evaluate` / `python -m train.export`, decide what "better" means for the
best checkpoint, and render the child's FinishReport as the lines a user reads.
"""

from __future__ import annotations

import os

from train import evalcurves, exportformats, files, records
from train.contracts import FinishSpec
from train.launch import paths
from train.launch.paths import RunPaths
from train.pipeline import fields

FORMATS = exportformats.NAMES
INPUT_TYPES = ("image_tensor", "float_image_tensor", "encoded_image_string_tensor")
QUANTIZE = ("none", "float16", "int8")
DEFAULT_BEST_METRIC = "DetectionBoxes_Precision/mAP"
DEFAULT_VERIFY_IMAGES = 8

_HEADLINE = (
    ("mAP@[.5:.95]", "DetectionBoxes_Precision/mAP"),
    ("mAP@.5", "DetectionBoxes_Precision/mAP@.50IOU"),
    ("mAP@.75", "DetectionBoxes_Precision/mAP@.75IOU"),
    ("AR@100", "DetectionBoxes_Recall/AR@100"),
)


class UsageError(ValueError):
    """A flag value the commands refuse (exit 2)."""


def parse_formats(values) -> tuple[str, ...]:
    """--export: known names, comma-separated or repeated, in the table's order."""
    names = [v.strip() for value in values for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise UsageError(
            f"unknown export format(s) {', '.join(unknown)}; use {' and/or '.join(FORMATS)}"
        )
    return tuple(f for f in FORMATS if f in names)


# What the OD API's COCO detection evaluation reports (metrics/coco_tools.py), and its losses.
COCO_METRICS = tuple(
    f"DetectionBoxes_{name}"
    for name in (
        "Precision/mAP",
        "Precision/mAP@.50IOU",
        "Precision/mAP@.75IOU",
        "Precision/mAP (small)",
        "Precision/mAP (medium)",
        "Precision/mAP (large)",
        "Recall/AR@1",
        "Recall/AR@10",
        "Recall/AR@100",
        "Recall/AR@100 (small)",
        "Recall/AR@100 (medium)",
        "Recall/AR@100 (large)",
    )
)
_METRIC_PREFIXES = ("Loss/", "DetectionBoxes_PerformanceByCategory/", "PascalBoxes_")


def unknown_metric(metric: str) -> str | None:
    """Why --best_metric names nothing the evaluation reports (None when it does)."""
    import difflib

    if metric in COCO_METRICS or metric.startswith(_METRIC_PREFIXES):
        return None
    near = difflib.get_close_matches(metric, COCO_METRICS, n=1, cutoff=0.5)
    hint = f"did you mean {near[0]}? " if near else ""
    return (
        f"--best_metric {metric!r} is not a metric the evaluation reports ({hint}the COCO ones "
        f"are {', '.join(COCO_METRICS[:3])}, ...; losses are Loss/...): no best checkpoint "
        "would ever be kept"
    )


def lower_is_better(metric: str) -> bool:
    """Losses fall as a model improves; precision and recall rise."""
    return "loss" in metric.lower()


def improved(metric: str, value: float, best: float | None, min_delta: float) -> bool:
    """Whether `value` beats `best` by at least `min_delta` in the metric's direction."""
    if best is None:
        return True
    if lower_is_better(metric):
        return value < best - min_delta
    return value > best + min_delta


BEST_RECORD = "best.json"


def best_dir(model_dir: str) -> str:  # noqa: D103
    return os.path.join(model_dir, "best")


def read_best(model_dir: str) -> dict | None:
    """{checkpoint, step, metric, value} of model_dir/best, or None."""
    import json

    try:
        with open(os.path.join(best_dir(model_dir), BEST_RECORD), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def eval_paths(config) -> tuple[str, ...]:
    """The records of the first eval reader (expanded globs; the final eval reads these)."""
    readers = list(config.eval_input_reader)
    if not readers:
        return ()
    found = []
    for pattern in fields.input_paths(readers[0]):
        if fields.PLACEHOLDER not in pattern:
            found += records.expand(pattern)
    return tuple(found)


def train_paths(config) -> tuple[str, ...]:
    """The training records (int8 calibration, and images when there is no eval set)."""
    found = []
    for pattern in fields.input_paths(config.train_input_reader):
        if fields.PLACEHOLDER not in pattern:
            found += records.expand(pattern)
    return tuple(found)


def finish_spec(
    model_dir: str,
    pipeline_config: str,
    config,
    checkpoint: str,
    step: int,
    *,
    evaluate: bool,
    formats: tuple[str, ...] = (),
    input_type: str = "image_tensor",
    tflite_quantize: str = "none",
    verify_images: int = DEFAULT_VERIFY_IMAGES,
    export_dir: str | None = None,
    contact_sheet: bool = True,
    label_map: str | None = None,
) -> FinishSpec:
    """The FinishSpec for one pinned checkpoint of a run in `model_dir`."""
    evaluation = eval_paths(config)
    training = train_paths(config)
    run_files = RunPaths(os.path.abspath(model_dir))
    reader_map = config.eval_input_reader[0].label_map_path if config.eval_input_reader else ""
    return FinishSpec(
        pipeline_config=os.path.abspath(pipeline_config),
        checkpoint=os.path.abspath(checkpoint),
        step=step,
        evaluate=evaluate and bool(evaluation),
        summary_dir=os.path.join(os.path.abspath(model_dir), "final", "eval"),
        formats=formats,
        input_type=input_type,
        tflite_quantize=tflite_quantize,
        export_dir=os.path.abspath(export_dir or os.path.join(model_dir, "export")),
        images=evaluation or training,
        verify_images=verify_images,
        calibration_records=training,
        contact_sheet=(
            os.path.join(os.path.abspath(model_dir), "eval", "detections.png")
            if contact_sheet and (evaluation or training)
            else None
        ),
        label_map=label_map or reader_map or config.train_input_reader.label_map_path or None,
        report=run_files.report(paths.FINISH),
        outcome=run_files.outcome(paths.FINISH),
        plots_dir=(
            os.path.join(os.path.abspath(model_dir), evalcurves.PLOTS_DIR) if evaluation else None
        ),
    )


def render_eval(evaluation: dict) -> str:
    """The compact block: headline metrics, then AP per class (worst first)."""
    metrics = evaluation["metrics"]
    head = "  ".join(
        f"{label} {metrics[key]:.4f}" for label, key in _HEADLINE if key in metrics
    ) or "  ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()) if "Loss" not in k)
    lines = [f"final eval (step {evaluation['step']}, {evaluation['checkpoint']}): {head}"]
    per_class = evaluation.get("per_class") or {}
    if per_class:
        width = max(len(name) for name in per_class)
        lines.append("  AP per class:")
        for name, value in sorted(per_class.items(), key=lambda item: item[1]):
            shown = f"{value:.4f}" if value >= 0 else "  -   (no eval boxes)"
            lines.append(f"    {name:<{width}}  {shown}")
    return "\n".join(lines)


def render_curves(curves: dict) -> str:
    """The recommended score threshold and where the plots are."""
    folder = os.path.dirname(next(iter(curves["plots"].values())))
    return (
        f"recommended score threshold: {curves['threshold']:.2f} (F1 {curves['f1']:.2f} at "
        f"IoU {curves['iou']}; train.predict's default for this run's models)\n"
        f"plots: {folder}/ ({', '.join(sorted(curves['plots']))})"
    )


def _verdict(c: dict, conclusive: bool, problem: str | None, whose="the checkpoint") -> str:
    """The comparison in words; `whose`: what the export was compared with."""
    if not conclusive and not c["at_cut"]:
        return f"INCONCLUSIVE: neither {whose} nor the export detects anything"
    if not conclusive:
        return (
            f"INCONCLUSIVE: all {c['at_cut']} top detections are within the score "
            "tolerance of the cut-off (the model barely separates them)"
        )
    if problem:
        return f"DISAGREES with {whose}: {problem}"
    return (
        f"verified: {c['matched']}/{c['compared']} detections match those of {whose}, "
        f"max |Δbox| {c['max_box_delta']:.2g}, max |Δscore| {c['max_score_delta']:.2g}"
    )


def render_export(export: dict) -> list[str]:
    """The export's lines: one per format, one per other runtime of the same file.

    A format's line: file, size, comparison with the checkpoint, CPU latency; a runtime's
    (MediaPipe for a TFLite): its own comparison.
    """
    lines = []
    for entry in export.values():
        c = entry["comparison"]
        own = entry.get("format_problem", entry["problem"])  # without the other runtimes'
        lines.append(
            f"export {entry['format']}: {entry['path']} ({files.human_size(entry['size_bytes'])}); "
            f"{_verdict(c, entry['conclusive'], own)} on {entry['images']} images; "
            f"{entry['latency_ms']} ms/image on CPU (checkpoint {entry['reference_latency_ms']})"
        )
        for runtime, found in entry.get("runtimes", {}).items():
            rc = found["comparison"]
            if rc is None:  # it did not run to the end: nothing proven either way
                lines.append(
                    f"  the same file in {runtime}: NOT VERIFIED: {found['failed']} (the file "
                    "is kept on its own verification)"
                )
                continue
            conclusive = rc["compared"] > 0 or rc["extra"] > 0
            whose = found.get("against") or "the checkpoint"
            verdict = _verdict(rc, conclusive, found["problem"], whose)
            if not found.get("gates", True):
                verdict = verdict.replace("DISAGREES with", "differs from") + " (measured only)"
            lines.append(f"  the same file in {runtime}: {verdict}; {found['latency_ms']} ms/image")
    return lines


def rejected(export: dict | None) -> list[str]:
    """The formats whose verification failed."""
    return [k for k, e in (export or {}).items() if e["problem"]]
