"""One module per export format (train/exportformats.py is their table).

Each has `export(job: Job) -> Exported`: write the format into the job's staging folder and
say how to run the result on one image, so that train/tf/finish.py verifies every format the
same way against the checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Job:
    """What an export needs.

    The finish spec, the parsed config, the checkpoint pinned alone in a folder, a staging
    folder, and the checkpoint's own detection function (`reference(image)`).
    """

    spec: object  # contracts.FinishSpec
    pipeline: object  # pipeline_pb2.TrainEvalPipelineConfig
    arch: str
    pinned: str
    staging: str
    reference: Callable


@dataclasses.dataclass(frozen=True)
class Exported:
    """A staged export.

    Attributes:
      staged: the file or folder written (promoted to `final` when verified).
      detect: `detect(uint8 image) -> Detections`, compared with the checkpoint's reference.
      final: where it goes when verified.
      key: its tolerance's variant in its exportformats row (and its name in the report).
      sidecars: `sidecars(kept_path_or_None) -> dict` of the report's extra entries
        (files written beside the model), or None.
      also: (runtime, detect, gates, reference) for other runtimes or feeds of the same file
        (MediaPipe for a TFLite, train.predict's resized pictures for an ONNX), each
        compared under the format's tolerance with `reference(image) -> Detections` (its
        `whose` attribute names it in the report), or with the checkpoint when it is None;
        the export is verified only when every one that `gates` passes (the others are
        measurements).
    """

    staged: str
    detect: Callable
    final: str
    key: str
    sidecars: Callable | None = None
    also: tuple[tuple[str, Callable, bool, Callable | None], ...] = ()
