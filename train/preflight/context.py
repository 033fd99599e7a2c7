"""What the checks look at: the options, the effective config, and lazily read artefacts.

Expensive reads (the checkpoint index, label maps) happen once, on first use, and failures are
kept as values so that every check that needs them can report and the rest still run.
"""

from __future__ import annotations

import dataclasses
import functools
import os

from train import errors
from train.checkpoint import bundle, identify
from train.checkpoint import resolve as ckpt_resolve
from train.options import RunOptions
from train.pipeline import fields, labelmap
from train.pipeline.configfile import PipelineFile
from train.preflight.findings import Finding


@dataclasses.dataclass(frozen=True)
class PreviousRun:
    """The run found in model_dir: its latest checkpoint, what it is, or why it is unreadable."""

    prefix: str
    info: identify.CheckpointInfo | None
    error: str | None
    damaged: tuple[tuple[str, str], ...] = ()  # (prefix, why) newer than `prefix`, unusable

    @property
    def step(self) -> int:
        """The global step the run reached (0 when unknown)."""
        return (self.info.global_step or 0) if self.info else 0


@dataclasses.dataclass
class Context:
    """Inputs of one preflight pass.

    Attributes:
      options: the run options.
      source: the user's pipeline file (text + parsed proto, untouched).
      config: the effective config: `source` with the command-line overrides applied.
      topology: the run's strategy (train.launch.cluster); None: one replica per
        visible GPU, as a plain launch on this machine would use.
    """

    options: RunOptions
    source: PipelineFile
    config: object
    topology: object | None = None

    def line(self, field: str, value: str | None = None, nth: int = 0) -> int | None:
        """Line of `field` in the user's file (see pipeline.configfile.find_line)."""
        return self.source.line_of(field, value, nth)

    def finding_at(
        self,
        field: str,
        code: str,
        severity: str,
        message: str,
        fix: str,
        edits=(),
        value: str | None = None,
        nth: int = 0,
    ) -> Finding:
        """A Finding about `field` of the user's file: 'path:line: message', file and line set."""
        line = self.line(field, value, nth)
        where = f"{self.source.path}:{line}" if line else self.source.path
        return Finding(
            code,
            severity,
            f"{where}: {message}",
            fix,
            edits=tuple(edits),
            file=self.source.path,
            line=line,
        )

    @property
    def train_config(self):  # noqa: D102
        return self.config.train_config

    @property
    def num_train_steps(self) -> int:
        """Steps the run will train for (flag, else config; 0 means unset)."""
        return self.options.num_train_steps or self.config.train_config.num_steps

    @functools.cached_property
    def gpus(self) -> int:
        """GPUs this run will see (nvidia-smi, limited by CUDA_VISIBLE_DEVICES; no TF import)."""
        from train import envinfo

        return envinfo.visible_gpus()

    @property
    def training_gpus(self) -> int:
        """GPUs each worker trains on: the run's, else every visible one."""
        return len(self.topology.gpus) if self.topology is not None else self.gpus

    @property
    def replicas(self) -> int:
        """Replicas in sync of the run (all workers' GPUs), else one per visible GPU."""
        if self.topology is not None:
            return self.topology.replicas
        return max(1, self.gpus)

    @functools.cached_property
    def checkpoint(self) -> ckpt_resolve.Resolution | None:
        """Resolution of fine_tune_checkpoint (None when the field is unset)."""
        if not self.config.train_config.HasField("fine_tune_checkpoint"):
            return None
        return ckpt_resolve.resolve(self.config.train_config.fine_tune_checkpoint)

    @functools.cached_property
    def checkpoint_info(self):
        """(CheckpointInfo | None, error text | None) for the resolved checkpoint."""
        resolution = self.checkpoint
        if resolution is None or resolution.prefix is None:
            return None, None
        try:
            return identify.inspect(resolution.prefix), None
        except Exception as e:  # noqa: BLE001 - any reader error is a finding, not a crash
            return None, errors.one_line(e)

    @functools.cached_property
    def previous_run(self) -> PreviousRun | None:
        """The run model_dir already holds (its latest checkpoint), or None.

        Read once: the MODEL_DIR check and the Launch's start step both need it.
        """
        model_dir = os.path.abspath(self.options.model_dir)
        if not os.path.isfile(os.path.join(model_dir, "checkpoint")):
            return None
        latest = ckpt_resolve.latest_in_dir(model_dir)
        if latest is None:
            return None
        damaged = []  # newest first: the run resumes from the newest intact checkpoint
        for prefix in [latest] + [
            p for p in ckpt_resolve.checkpoints_in_dir(model_dir) if p != latest
        ]:
            why = bundle.damage(prefix)
            if why is None:
                latest = prefix
                break
            damaged.append((prefix, why))
        else:
            return PreviousRun(latest, None, damaged[0][1], tuple(damaged))
        try:
            return PreviousRun(latest, identify.inspect(latest), None, tuple(damaged))
        except Exception as e:  # noqa: BLE001 - an unreadable run is a finding, not a crash
            return PreviousRun(latest, None, errors.one_line(e), tuple(damaged))

    @functools.cached_property
    def label_maps(self) -> dict[str, labelmap.LabelMap | str]:
        """{label_map_path: LabelMap or error text} for every reader that names one."""
        result: dict[str, labelmap.LabelMap | str] = {}
        for _, reader in fields.input_readers(self.config):
            path = reader.label_map_path
            if not path or path in result or fields.PLACEHOLDER in path:
                continue
            if not os.path.exists(path):
                result[path] = "does not exist"
                continue
            try:
                result[path] = labelmap.load(path)
            except labelmap.LabelMapError as e:
                result[path] = str(e)
        return result

    @property
    def train_label_map(self) -> labelmap.LabelMap | None:
        """The train label map, if it parsed and its ids are usable (see LabelMap.usable)."""
        value = self.label_maps.get(self.config.train_input_reader.label_map_path)
        return value if isinstance(value, labelmap.LabelMap) and value.usable else None
