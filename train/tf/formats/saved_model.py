"""--export saved_model: the OD API's exporter_lib_v2 layout, run through its serving function."""

from __future__ import annotations

import os

from train.tf import exporting
from train.tf.formats import Exported, Job


def export(job: Job) -> Exported:
    """Exports the pinned checkpoint as a SavedModel (the spec's input type)."""
    staged = os.path.join(job.staging, "saved_model")
    exporting.export_saved_model(job.pipeline, job.pinned, staged, job.spec.input_type)
    run = exporting.saved_model_fn(os.path.join(staged, "saved_model"), job.spec.input_type)
    final = os.path.join(job.spec.export_dir, "saved_model")
    return Exported(staged, run, final, "saved_model")  # the SavedModel preprocesses itself
