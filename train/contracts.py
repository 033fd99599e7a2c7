"""What the driver and its child processes tell each other: one frozen dataclass per boundary.

The driver writes a spec file and starts a child with its path; the child writes what it
produced (an Outcome, a restore measurement, a prepare report) as files the driver reads.
Both sides use the same classes, so a field renamed on one side cannot silently go missing
on the other: `from_json` refuses unknown and missing fields. TF-free.

    driver --TrainSpec-->   train/tf/child.py      --Outcome, TrainingRestore-->  driver
    driver --EvalSpec-->    train/tf/evaluator.py  --Outcome-->                   driver
    driver --PrepareSpec--> train/tf/prepare.py    --Outcome, PrepareReport-->    driver
    driver --FinishSpec-->  train/tf/finish.py     --Outcome, FinishReport-->     driver
    (--batch_size auto runs the training child a few steps per batch size: its Outcome's memory)
    (train.evaluate and train.export send the same FinishSpec)
    train/tf/prepare.py --TransplantSource--> the next driver run (is the transplant current?)
"""

from __future__ import annotations

import dataclasses
import errno
import importlib
import json
import typing
from typing import ClassVar, TypeVar

from train import files

T = TypeVar("T", bound="Contract")


class ContractError(ValueError):
    """A contract file does not hold what its class says (a bug, or a file from another version).

    Attributes:
      path: the file, when the contract was read from one.
    """

    def __init__(self, message: str, path: str | None = None):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class Contract:
    """JSON round trip for the frozen dataclasses below (nested contracts included)."""

    _nested: ClassVar[dict[str, type | str]] = {}

    def to_dict(self) -> dict:  # noqa: D102
        return dataclasses.asdict(self)

    def to_json(self) -> str:  # noqa: D102
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls: type[T], data: dict) -> T:
        """Builds the contract from its dict form; ContractError on unknown or missing fields."""
        if not isinstance(data, dict):
            raise ContractError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = required - set(data)
        if unknown or missing:
            raise ContractError(
                f"{cls.__name__}: unknown fields {sorted(unknown)}, missing {sorted(missing)}"
            )
        values = dict(data)
        for name, nested in cls._nested.items():
            if isinstance(nested, str):  # "module.Class"
                module, _, attr = nested.rpartition(".")
                nested = getattr(importlib.import_module(module), attr)
            if values.get(name) is not None:
                values[name] = nested.from_dict(values[name])
        for field in dataclasses.fields(cls):
            if typing.get_origin(_hint(cls, field.name)) is tuple and field.name in values:
                values[field.name] = tuple(values[field.name])
        return cls(**values)

    @classmethod
    def from_json(cls: type[T], text: str) -> T:  # noqa: D102
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise ContractError(f"{cls.__name__}: not JSON ({e})") from None

    def write(self, path: str) -> None:
        """Writes the contract atomically (readers never see half a file)."""
        files.write_atomic(path, self.to_json())

    @classmethod
    def read(cls: type[T], path: str) -> T | None:
        """The contract at `path`, or None when there is no such file (not written yet).

        Raises:
          ContractError: the file is there but does not hold this contract (malformed JSON,
            a field renamed or missing on one side): a bug, never a "not there yet". It names
            the file and the fields; the driver reports it as an INTERNAL finding.
        """
        try:
            with files.open_input(path, "r") as f:
                text = f.read()
        except OSError as e:
            if e.errno == errno.ENOENT:
                return None
            raise ContractError(f"{cls.__name__}: cannot be read ({e})", path) from None
        except UnicodeDecodeError as e:
            raise ContractError(f"{cls.__name__}: not UTF-8 text ({e})", path) from None
        try:
            return cls.from_json(text)
        except (ContractError, TypeError, ValueError) as e:
            raise ContractError(str(e), path) from None


def _hint(cls, name: str):
    return typing.get_type_hints(cls).get(name)


@dataclasses.dataclass(frozen=True)
class StrategySpec(Contract):
    """The tf.distribute strategy a child builds (see train.launch.cluster.Topology)."""

    kind: str = "cpu"  # "cpu" | "mirrored" | "multi_worker"
    gpus: tuple[int, ...] = ()
    rank: int = 0
    num_workers: int = 1
    replicas: int = 1
    communication_timeout_s: int | None = None


@dataclasses.dataclass(frozen=True)
class TrainSpec(Contract):
    """What the training child runs: the OD API's train_loop with these arguments.

    The fields are what the driver decided (steps, cadence, files); `options` is what the
    user asked for, whole (train.options.RunOptions): the child reads its flags there.
    """

    _nested: ClassVar[dict[str, type | str]] = {
        "strategy": StrategySpec,
        "options": "train.options.RunOptions",  # imports this module: named, imported late
    }

    pipeline_config: str
    model_dir: str
    num_train_steps: int
    checkpoint_every_n: int
    checkpoint_max_to_keep: int
    num_steps_per_iteration: int
    restore_report: str  # where the child writes its TrainingRestore
    outcome: str  # where the child writes its Outcome
    strategy: StrategySpec = StrategySpec()
    options: object = None  # a train.options.RunOptions (None: every flag at its default)
    freeze_report: str = ""  # where the child writes its TrainingFreeze
    nan_guard: bool = True  # stop at the first non-finite loss or gradient (benchmarks: off)
    gpu_limits: bool = False  # also report each GPU allocator's limit (--batch_size auto)
    # The input-image summary every N steps only (1: whenever train_loop records summaries).
    input_images_every: int = 1


@dataclasses.dataclass(frozen=True)
class EvalSpec(Contract):
    """The evaluation beside training (the OD API's eval_continuously).

    After each evaluation the checkpoint is kept in model_dir/best when `best_metric`
    improved by more than `min_delta`; after `patience` evaluations without (0: never) the
    evaluator writes `early_stop` (an EarlyStop) and the runner stops the training.
    """

    pipeline_config: str
    model_dir: str
    num_train_steps: int
    poll_s: float
    training_done: str  # the runner creates this file when training is over
    on_gpu: bool
    log_path: str
    outcome: str
    best_metric: str = "DetectionBoxes_Precision/mAP"
    patience: int = 0
    min_delta: float = 0.0
    early_stop: str = ""


@dataclasses.dataclass(frozen=True)
class EarlyStop(Contract):
    """Why the evaluator asked the training to stop."""

    step: int  # the step of the evaluation that used up the patience
    metric: str
    best_value: float
    best_step: int
    evaluations: int  # evaluations without improvement


@dataclasses.dataclass(frozen=True)
class PrepareSpec(Contract):
    """The CPU rehearsal / restore dry run, and the transplant when asked (train/tf/prepare.py).

    Attributes:
      checkpoint: the fine-tune checkpoint; None: a rehearsal of a run from scratch.
      rehearse: also pull one batch through the training input pipeline and compute the losses.
      rehearse_batch: that batch's size (the config's, capped for a CPU).
    """

    pipeline_config: str
    pipeline_config_text_sha256: str
    checkpoint: str | None
    checkpoint_type: str
    num_classes: int | None
    transplant_to: str | None
    report: str  # where prepare writes its PrepareReport
    outcome: str  # where prepare writes its Outcome (FAILED: the model did not build, ...)
    rehearse: bool = False
    rehearse_batch: int = 0


@dataclasses.dataclass(frozen=True)
class PrepareReport(Contract):
    """What the dry run measured (train.tf.restore.measure), the transplant, the rehearsal.

    `rehearsal`: batch (images), losses ({name: value}), non_finite (names), wall_s.
    """

    checkpoint: str | None
    dry_run: dict | None
    transplant: dict | None = None
    rehearsal: dict | None = None


@dataclasses.dataclass(frozen=True)
class FinishSpec(Contract):
    """The end of a run (train/tf/finish.py): evaluate one checkpoint, export it, verify it.

    Attributes:
      checkpoint: the pinned checkpoint prefix (never "the latest").
      step: its global step (for the summaries and the report).
      evaluate: run the config's eval metrics on the whole eval set (per class too).
      summary_dir: where eval_continuously writes the final eval's summaries (DIR/eval).
      formats: names of train/exportformats.py's table, in its order; empty: no export.
      input_type: the SavedModel's input (exporter_lib_v2's input types).
      tflite_quantize: "none", "float16" or "int8".
      export_dir: the export's folder (model_dir/export).
      images: TFRecord files the verification, contact sheet and int8 calibration read.
      verify_images: how many images the verification compares on.
      calibration_records: int8: the training records to calibrate on.
      contact_sheet: where to draw the detections (None: not asked).
      label_map: class names for labels.txt, the contact sheet and per-class AP.
      plots_dir: where the evaluation's plots, detections and curves go (None: not asked).
    """

    pipeline_config: str
    checkpoint: str
    step: int
    evaluate: bool
    summary_dir: str
    formats: tuple[str, ...]
    input_type: str
    tflite_quantize: str
    export_dir: str
    images: tuple[str, ...]
    verify_images: int
    calibration_records: tuple[str, ...]
    contact_sheet: str | None
    label_map: str | None
    report: str
    outcome: str
    plots_dir: str | None = None


@dataclasses.dataclass(frozen=True)
class FinishReport(Contract):
    """What the end of a run produced.

    `eval`: {checkpoint, step, metrics: {name: value}, per_class: {class name: AP}}.
    `export`: {format: {path, size_bytes, verified, comparison, latency_ms, problem, ...}}.
    `curves`: train.evalcurves.summary of the evaluation (AP@.5 per class, the recommended
    score threshold and its F1) with the confusion matrix and the plots' paths.
    """

    eval: dict | None = None
    export: dict | None = None
    contact_sheet: str | None = None
    reference_latency_ms: float | None = None
    curves: dict | None = None


@dataclasses.dataclass(frozen=True)
class TransplantSource(Contract):
    """What a transplanted checkpoint was made from, to know when it can be reused."""

    checkpoint: str
    config: str  # sha256 of the resolved config text


@dataclasses.dataclass(frozen=True)
class TrainingRestore(Contract):
    """The fine-tune restore train_loop did, measured by the training child."""

    checkpoint: str
    measurement: dict  # train.tf.restore.measure's report (summary, components, gaps, ...)

    def as_report(self) -> dict:
        """The form the JSON report and TensorBoard carry (measurement + checkpoint)."""
        return {**self.measurement, "checkpoint": self.checkpoint}


@dataclasses.dataclass(frozen=True)
class TrainingFreeze(Contract):
    """What the training child trains and freezes (train.pipeline.freezing.report)."""

    report: dict


OK, STOPPED, FAILED = "ok", "stopped", "failed"


BAD_RECORD = "INPUT_DATA.bad_record"  # Outcome.code: training failed on a record it located
DISK_FULL = "TRAIN.disk_full"  # Outcome.code: a write found the disk full (or over quota)
INTERNAL = "INTERNAL"  # Outcome.code: the child could not read its spec (the sides disagree)


@dataclasses.dataclass(frozen=True)
class Outcome(Contract):
    """How a child process ended, written by the child as its last act.

    Attributes:
      status: OK, STOPPED (a stop signal: the current step was saved) or FAILED.
      step: the global step reached (None when no step ran or it is unknown).
      checkpoint: the checkpoint the child saved last (None when it saved none).
      error: FAILED: one line, `Type: message`, naming the file and record for data errors.
      signal: STOPPED: the signal's name.
      detail: one human line about the end ("saved ... at step 12", "step 3 was already saved").
      phase: FAILED: what was running: "model" (the build), "restore", "input" (the first
        batch), "loss", "first_step" (input + losses of training's first step), "train".
      code: FAILED: the finding code when the child knows it ("TRAIN.nan").
      memory: {"peaks": {"host": peak resident bytes, "GPU:0": peak bytes allocated there},
        "limits": {"GPU:0": bytes TensorFlow may allocate there}} (train/tf/memory.py).
      failed_import: code ENV.import: the module, the error, the missing shared library and
        the package providing the module (train/nativeimports.py).
    """

    status: str
    step: int | None = None
    checkpoint: str | None = None
    error: str | None = None
    signal: str | None = None
    detail: str = ""
    phase: str = ""
    code: str = ""  # a finding code the failure is known as (e.g. TRAIN.nan)
    memory: dict | None = None
    failed_import: dict | None = None
