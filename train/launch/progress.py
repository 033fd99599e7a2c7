"""Training progress read back from the TensorBoard event files the OD loop writes.

`train_loop` logs losses only every 100 steps (a 20-step run prints none), but it writes
`Loss/*`, `learning_rate` and `steps_per_sec` scalars at every iteration to model_dir/train.
The runner tails those files, so progress lines cost the training process nothing.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import struct
import time

_TAGS = (
    "Loss/total_loss",
    "Loss/classification_loss",
    "Loss/localization_loss",
    "Loss/regularization_loss",
    "learning_rate",
    "steps_per_sec",
)
_COMPLETE = ("Loss/total_loss", "learning_rate", "steps_per_sec")  # written last, per step


@dataclasses.dataclass
class StepRecord:
    """Scalars of one logged step."""

    step: int
    values: dict[str, float]


def _scalar(tensor) -> float | None:
    """The value of a scalar TensorProto (as tf.summary.scalar writes it)."""
    if tensor.float_val:
        return float(tensor.float_val[0])
    if tensor.double_val:
        return float(tensor.double_val[0])
    if tensor.int64_val:
        return float(tensor.int64_val[0])
    fmt = {1: "<f", 2: "<d", 9: "<q", 3: "<i"}.get(tensor.dtype)
    if fmt and len(tensor.tensor_content) == struct.calcsize(fmt):
        return float(struct.unpack(fmt, tensor.tensor_content)[0])
    return None


class EventTail:
    """Incrementally reads new scalar events from every events file under a directory.

    Reads the files with train.records and TensorBoard's protos, so the driver process never
    imports TensorFlow (3 s of CPU and ~0.5 GB it would take from the training process).
    """

    def __init__(self, directory: str):
        self._directory = directory
        self._offsets: dict[str, int] = {}
        self._pending: dict[int, dict[str, float]] = {}

    def poll(self, final: bool = False) -> list[StepRecord]:
        """Returns the steps whose scalars arrived since the last poll, in step order.

        A step is returned once all its scalars are in, or once a later step has started
        (its writes are then over); `final=True` returns everything left.
        """
        from tensorboard.compat.proto import event_pb2

        from train import records

        for path in sorted(glob.glob(os.path.join(self._directory, "events.out.tfevents.*"))):
            try:
                payloads, self._offsets[path] = records.read_new_records(
                    path, self._offsets.get(path, 0)
                )
            except (OSError, records.RecordError):
                continue
            for payload in payloads:
                event = event_pb2.Event.FromString(payload)
                for value in event.summary.value:
                    if value.tag not in _TAGS:
                        continue
                    number = (
                        _scalar(value.tensor)
                        if value.HasField("tensor")
                        else float(value.simple_value)
                    )
                    if number is not None:
                        self._pending.setdefault(int(event.step), {})[value.tag] = number
        newest = max(self._pending, default=None)
        done = [
            s
            for s, v in self._pending.items()
            if "Loss/total_loss" in v
            and "steps_per_sec" in v
            and (final or s != newest or all(tag in v for tag in _COMPLETE))
        ]
        return [StepRecord(s, self._pending.pop(s)) for s in sorted(done)]


def format_step(record: StepRecord, total: int, eta_s: float | None) -> str:
    """One progress line: step, losses, learning rate, speed and ETA."""
    v = record.values
    parts = [f"step {record.step}/{total}", f"loss {v['Loss/total_loss']:.4f}"]
    detail = [
        f"{name} {v[tag]:.4f}"
        for name, tag in (
            ("cls", "Loss/classification_loss"),
            ("loc", "Loss/localization_loss"),
            ("reg", "Loss/regularization_loss"),
        )
        if tag in v
    ]
    if detail:
        parts[-1] += f" ({', '.join(detail)})"
    if "learning_rate" in v:
        parts.append(f"lr {v['learning_rate']:.3g}")
    parts.append(f"{v['steps_per_sec']:.2f} steps/s")
    if eta_s is not None:
        parts.append(f"eta {time.strftime('%H:%M:%S', time.gmtime(max(0.0, eta_s)))}")
    return "  ".join(parts)


class ProgressPrinter:
    """Decides which steps to print: first, last, every ~10% and at least every `every_s`."""

    def __init__(self, total: int, start: int, every_s: float, emit):
        self._total, self._emit, self._every_s = total, emit, every_s
        self._interval = max(1, (total - start) // 10)
        self._last_step = None
        self._last_time = 0.0
        self._recent_rate: float | None = None

    def feed(self, records: list[StepRecord], now: float | None = None) -> None:
        """Prints the records that are due."""
        now = time.monotonic() if now is None else now
        for index, record in enumerate(records):
            self._recent_rate = record.values.get("steps_per_sec", self._recent_rate)
            is_last_of_batch = index == len(records) - 1
            due = (
                self._last_step is None
                or record.step >= self._total
                or record.step // self._interval > self._last_step // self._interval
                or (is_last_of_batch and now - self._last_time >= self._every_s)
            )
            if due:
                eta = (self._total - record.step) / self._recent_rate if self._recent_rate else None
                self._emit(format_step(record, self._total, eta))
                self._last_step, self._last_time = record.step, now

    @property
    def last_step(self) -> int | None:  # noqa: D102
        return self._last_step
