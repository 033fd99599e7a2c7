"""The driver's `--data PATH`: a converted folder, or an annotation folder converted once.

`resolve` decides (reads only); `prepare` converts when that says so. A raw annotation
folder is converted into model_dir/data and reused while its files (names, sizes, mtimes) and
the conversion options are unchanged (summary.json's fingerprint).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os

from train.data import convert


class DataError(Exception):
    """--data cannot be used; `code` is the driver's exit code for it."""

    def __init__(self, message: str, code: int | None = None):
        from train import errors

        super().__init__(message)
        self.code = errors.EXIT_USAGE if code is None else code


@dataclasses.dataclass(frozen=True)
class DataInputs:
    """Where the run's records and label map come from."""

    folder: str  # the converted folder
    conversion: convert.ConvertOptions | None  # set: convert (again) before the run is planned
    train: str  # glob of the training records
    eval: str | None  # glob of the eval records (None: the split is empty)
    label_map: str
    source: str = ""  # the annotation folder model_dir/data was converted from


def _summary(folder: str) -> dict | None:
    try:
        with open(os.path.join(folder, convert.SUMMARY), encoding="utf-8") as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and "splits" in summary else None


def _globs(folder: str, summary: dict | None) -> tuple[str, str | None]:
    def has(split):
        if summary is not None:
            return bool(summary["splits"][split]["records"])
        return bool(glob.glob(os.path.join(folder, f"{split}-*.record")))

    train = os.path.join(folder, "train-*.record")
    return train, (os.path.join(folder, "eval-*.record") if has("eval") else None)


def resolve(data: str, model_dir: str) -> DataInputs:
    """How --data is used (raises DataError)."""
    from train.launch import rundir

    data = os.path.abspath(data)
    if not os.path.exists(data):
        raise DataError(f"--data {data}: no such file or folder")
    summary = _summary(data) if os.path.isdir(data) else None
    if summary is not None:  # a folder train.data convert wrote
        label_map = os.path.join(data, convert.LABEL_MAP)
        return DataInputs(data, None, *_globs(data, summary), label_map)
    out = os.path.join(os.path.abspath(model_dir), rundir.DATA)
    options = convert.ConvertOptions(data, out)
    previous = _summary(out)
    current = previous is not None and previous.get("fingerprint") == convert.fingerprint(options)
    train, evaluation = _globs(out, previous if current else None)
    label_map = os.path.join(out, convert.LABEL_MAP)
    return DataInputs(out, None if current else options, train, evaluation, label_map, data)


def prepare(inputs: DataInputs, emit) -> DataInputs:
    """Converts when `inputs` say so; returns the DataInputs of the converted folder."""
    from train.data import sources

    if inputs.conversion is None:
        if inputs.source:
            emit(
                f"--data: using {inputs.folder}, converted earlier from {inputs.source} "
                "(its files are unchanged)"
            )
        else:
            emit(f"--data: using the records and label map in {inputs.folder}")
        return inputs
    emit(f"--data: converting {inputs.conversion.source} into {inputs.folder}")
    try:
        summary = convert.convert(inputs.conversion, emit)
    except (sources.SourceError, convert.ConvertError) as e:
        raise DataError(f"--data: {e}") from None
    if not summary["splits"]["train"]["records"]:
        from train import errors

        raise DataError(
            f"--data: no usable training image in {inputs.conversion.source} (see above)",
            errors.EXIT_PREFLIGHT,
        )
    train, evaluation = _globs(inputs.folder, summary)
    return dataclasses.replace(inputs, conversion=None, train=train, eval=evaluation)
