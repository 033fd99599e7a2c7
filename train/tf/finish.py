"""The end of a run, in a child process: final evaluation, export, verification, contact sheet.

    python -m train.tf.finish SPEC.json      (a contracts.FinishSpec)

Run by the driver after training, and by `python -m train.evaluate` / `python -m train.export`.
Everything works on the one checkpoint the spec pins:

- the final evaluation is the OD API's own `eval_continuously`, given exactly that checkpoint
  once (no waiting loop) and per-category metrics switched on, so its numbers are the ones the
  OD API's evaluator computes; summaries go to the spec's summary_dir;
- the export uses the OD API's exporters on a folder whose state file names that checkpoint
  (train/tf/exporting.py), in a staging folder promoted into export_dir only once verified;
- the verification runs the checkpoint in-process and every exported model on the same eval
  images and compares their detections (train/verify.py); an export outside its tolerance is
  moved to export_dir/rejected/ and the report says why.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time

from train.tf import harness

CONTACT_MIN_SCORE = 0.3  # boxes drawn on a contact sheet without an evaluation to choose by
PER_CLASS_PREFIX = "DetectionBoxes_PerformanceByCategory/mAP/"


def _evaluate(tf, spec) -> tuple[dict, list]:
    """eval_continuously on the pinned checkpoint only, and what it scored.

    Returns the metrics eager_eval_loop returned, and every image's ground truth and
    detections as its COCO evaluator received them (train/tf/evalcapture.py).
    """
    from object_detection import model_lib_v2

    from train.tf import evalcapture

    del tf
    captured: dict = {}
    # model_lib_v2's `tf` is tensorflow.compat.v1: its `train` module is the one to patch.
    train_module = model_lib_v2.tf.train
    original_loop, original_iterator = (
        model_lib_v2.eager_eval_loop,
        train_module.checkpoints_iterator,
    )

    def loop(*args, **kwargs):
        metrics = original_loop(*args, **kwargs)
        captured.update({k: float(v) for k, v in metrics.items()})
        return metrics

    from object_detection.metrics import coco_tools

    model_lib_v2.eager_eval_loop = loop
    train_module.checkpoints_iterator = lambda *args, **kwargs: iter([spec.checkpoint])
    original_summarize = _with_category_stats(coco_tools)
    try:
        with evalcapture.capture() as images:
            model_lib_v2.eval_continuously(
                pipeline_config_path=spec.pipeline_config,
                config_override=_per_category_override(),
                model_dir=os.path.dirname(spec.summary_dir),
                checkpoint_dir=os.path.dirname(spec.checkpoint),
                wait_interval=0,
            )
    finally:
        model_lib_v2.eager_eval_loop = original_loop
        train_module.checkpoints_iterator = original_iterator
        coco_tools.COCOEvalWrapper.summarize = original_summarize
    if not captured:
        raise RuntimeError("the evaluation produced no metrics (is the eval input empty?)")
    per_class = {
        name[len(PER_CLASS_PREFIX) :]: value
        for name, value in captured.items()
        if name.startswith(PER_CLASS_PREFIX)
    }
    metrics = {k: v for k, v in captured.items() if not k.startswith(PER_CLASS_PREFIX)}
    evaluation = {
        "checkpoint": spec.checkpoint,
        "step": spec.step,
        "metrics": metrics,
        "per_class": per_class,
    }
    return evaluation, images


def _with_category_stats(coco_tools):
    """Gives the OD API's COCO wrapper the per-category AP it expects from Google's pycocotools.

    `COCOEvalWrapper.ComputeMetrics(include_metrics_per_category=True)` reads
    `category_stats`, which only Google's internal pycocotools fills; the PyPI one raises
    "Category stats do not exist". After `summarize`, fill row 0 (AP@[.5:.95], all areas,
    100 detections) per category from the accumulated precision array, as pycocotools'
    summarize computes the overall AP.
    """
    import numpy as np

    original = coco_tools.COCOEvalWrapper.summarize

    def summarize(self):
        original(self)
        precision = self.eval["precision"][:, :, :, 0, -1]  # [IoU, recall, category]
        per_category = []
        for k in range(precision.shape[2]):
            values = precision[:, :, k]
            values = values[values > -1]
            per_category.append(float(np.mean(values)) if values.size else -1.0)
        self.category_stats = np.array([per_category])

    coco_tools.COCOEvalWrapper.summarize = summarize
    return original


def _per_category_override():
    from object_detection.protos import pipeline_pb2

    override = pipeline_pb2.TrainEvalPipelineConfig()
    override.eval_config.include_metrics_per_category = True
    from google.protobuf import text_format

    return text_format.MessageToString(override)


def _timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, (time.perf_counter() - start) * 1000.0


def _median_ms(samples: list[float]) -> float | None:
    # The first call traces or allocates; a user's steady state is the rest.
    steady = samples[1:] or samples
    return round(statistics.median(steady), 2) if steady else None


def _folder_size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def _promote(staged: str, final: str) -> None:
    """Moves a verified artifact into place; the export it replaces was derived output."""
    if os.path.isdir(final):
        shutil.rmtree(final)
    elif os.path.exists(final):
        os.remove(final)
    os.replace(staged, final)


def _export_and_verify(spec, pipeline, reference, images, references, reference_ms, phase) -> dict:
    """Exports each format into a staging folder, runs it on the images, compares, promotes.

    Every format is its module's `export` (train/exportformats.py lists them); what follows
    is the same for all: the comparison with the checkpoint, promotion or rejection.
    """
    import importlib

    from train import exportformats
    from train.tf import exporting
    from train.tf.formats import Job

    arch = pipeline.model.WhichOneof("model")
    staging = os.path.join(spec.export_dir, f".staging-{os.getpid()}")
    os.makedirs(staging, exist_ok=True)
    with open(os.path.join(spec.export_dir, exportformats.MARKER), "w") as marker:
        marker.write("exports of tfod-finetune: each verified one replaces its namesake here\n")
    pinned = exporting.pinned_folder(spec.checkpoint, os.path.join(staging, "pinned"))
    job = Job(spec, pipeline, arch, pinned, staging, reference)
    results = {}
    try:
        for fmt in spec.formats:
            phase.name = f"export_{fmt}"
            start = time.monotonic()
            module = importlib.import_module(exportformats.BY_NAME[fmt].module)
            exported = module.export(job)
            export_s = time.monotonic() - start
            phase.name = f"verify_{fmt}"
            results[fmt] = _verified(spec, exported, images, references, reference_ms, export_s)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return results


def _compared(detect, tolerance, images, references):
    """One runtime's detections on the images against the references': (Comparison, ms)."""
    from train import verify

    comparison = verify.Comparison(tolerance)
    latencies = []
    for image, expected in zip(images, references, strict=True):
        detections, ms = _timed(detect, image)
        latencies.append(ms)
        comparison.add(expected, detections)
    return comparison, _median_ms(latencies)


def _in_runtime(detect, tolerance, images, references) -> dict:
    """Another runtime of the same file, compared like the format's own.

    A disagreement is its `problem` and rejects the file (an app on that runtime would get
    other detections: wrong metadata, say). A runtime that crashes or hangs (`failed`) proves
    nothing about the file either way: it is reported, and the file is kept on the strength
    of its own verification.
    """
    try:
        other, ms = _compared(detect, tolerance, images, references)
    except Exception as e:  # noqa: BLE001 - the runtime's failure is reported, not raised
        return {
            "comparison": None,
            "latency_ms": None,
            "verified": False,
            "problem": None,
            "failed": str(e),
        }
    finally:
        getattr(detect, "close", lambda: None)()  # the last runtime of a process closes it
    found = other.problem()
    return {
        "comparison": other.as_dict(),
        "latency_ms": ms,
        "verified": other.conclusive and found is None,
        "problem": found,
        "failed": None,
    }


def _verified(spec, exported, images, references, reference_ms, export_s: float) -> dict:
    """Runs one staged export on the images, compares with the checkpoint, promotes or rejects.

    Every other runtime of the file (`exported.also`: MediaPipe for a TFLite) is compared the
    same way under the same tolerance; the export is kept only when all that gate pass.
    """
    from train import verify

    key = exported.key
    tolerance = verify.TOLERANCES[key]
    comparison, latency = _compared(exported.detect, tolerance, images, references)
    problem = own = comparison.problem()
    runtimes = {}
    for runtime, detect, gates, reference in exported.also:
        against = references if reference is None else [reference(i) for i in images]
        runtimes[runtime] = found = _in_runtime(detect, tolerance, images, against)
        found["gates"] = gates
        found["against"] = getattr(reference, "whose", "the checkpoint")
        if found["problem"] and gates:
            problem = "; ".join(filter(None, (problem, f"in {runtime}: {found['problem']}")))
    entry = {
        "format": key,
        "checkpoint": spec.checkpoint,
        "size_bytes": _folder_size(exported.staged),
        "export_s": round(export_s, 1),
        "latency_ms": latency,
        "reference_latency_ms": reference_ms,
        "images": len(images),
        "comparison": comparison.as_dict(),
        "tolerance": vars(tolerance),
        "verified": comparison.conclusive and problem is None,
        "conclusive": comparison.conclusive,
        "problem": problem,
        "format_problem": own,
        "runtimes": runtimes,
    }
    if problem:
        rejected = os.path.join(spec.export_dir, "rejected", os.path.basename(exported.final))
        os.makedirs(os.path.dirname(rejected), exist_ok=True)
        _promote(exported.staged, rejected)
        entry["path"] = rejected
    else:
        _promote(exported.staged, exported.final)
        entry["path"] = exported.final
    if exported.sidecars:
        entry.update(exported.sidecars(None if problem else exported.final))
    return entry


def _finish(spec, phase):
    """Evaluates, draws and exports the pinned checkpoint; writes the FinishReport."""
    import tensorflow as tf
    from google.protobuf import text_format
    from object_detection.protos import pipeline_pb2

    from train.contracts import OK, FinishReport, Outcome
    from train.tf import exporting, runviews

    tf.config.set_visible_devices([], "GPU")  # the export runs on CPU, as it is verified
    pipeline = pipeline_pb2.TrainEvalPipelineConfig()
    with open(spec.pipeline_config, encoding="utf-8") as f:
        text_format.Merge(f.read(), pipeline)
    arch = pipeline.model.WhichOneof("model")
    names = exporting.class_names(spec.label_map, getattr(pipeline.model, arch).num_classes)
    evaluation, curves, sheet = None, None, None
    data = runviews.training_data(spec, pipeline, names)
    if spec.evaluate:
        evaluation, captured = _evaluate(tf, spec)
        if spec.plots_dir and captured:  # none: the config has no COCO box metrics
            phase.name = "plots"
            curves = runviews.after_evaluation(spec, captured, names, data)
            if spec.contact_sheet:
                sheet = runviews.sheet_from_evaluation(spec, captured, names, curves["threshold"])
    exported, reference_ms = None, None
    if spec.formats or (spec.contact_sheet and sheet is None):
        phase.name = "reference"
        images = exporting.record_images(spec.images, spec.verify_images)
        if not images:
            raise RuntimeError(f"no images to verify on in {', '.join(spec.images)}")
        reference = exporting.reference_fn(pipeline, spec.checkpoint)
        timed = [_timed(reference, image) for image in images]
        references = [detections for (detections, _), _ in timed]
        reference_ms = _median_ms([ms for _, ms in timed])
        if spec.contact_sheet and sheet is None:
            truths = runviews.record_truth(spec.images, len(images))
            sheet = runviews.sheet_from_reference(
                spec, images, truths, references, names, CONTACT_MIN_SCORE
            )
        if spec.formats:
            exported = _export_and_verify(
                spec, pipeline, reference, images, references, reference_ms, phase
            )
    FinishReport(evaluation, exported, sheet, reference_ms, curves).write(spec.report)
    return Outcome(OK, step=spec.step, checkpoint=spec.checkpoint)


def main(argv: list[str]) -> int:
    """Runs the FinishSpec at argv[1]; writes its FinishReport and Outcome."""
    from train.contracts import FinishSpec

    return harness.main(argv, FinishSpec, _finish, first_phase="eval")


if __name__ == "__main__":
    harness.run_module(main)
