"""What `train.predict` will do, decided before TensorFlow is imported: pure, TF-free.

`plan(options)` turns the command line into a Plan: which model (a run's folder, a SavedModel,
a .tflite, an .onnx), where its class names come from, which inputs (images and videos, in
order, each with the name its outputs get) and which files were given but are not inputs.
Every usage error is a PlanError with one line naming the path and the fix (exit 2), raised
before any model is loaded; nothing is written until the plan is whole.
"""

from __future__ import annotations

import dataclasses
import glob
import os

from train import files

DEFAULT_THRESHOLD = 0.5  # the score a detection needs to be drawn and counted (--threshold)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
MARKER = ".tfod-finetune-predictions"  # in every --out this command wrote

CHECKPOINT, SAVED_MODEL, TFLITE, ONNX = "checkpoint", "saved_model", "tflite", "onnx"


class PlanError(Exception):
    """A usage error: one line, exit 2."""


@dataclasses.dataclass(frozen=True)
class PredictOptions:
    """The command line of train.predict, once (nothing else reads the flags)."""

    model: str
    inputs: tuple[str, ...]
    out: str
    label_map: str | None = None
    threshold: float | None = None  # None: the run's recommended one, else DEFAULT_THRESHOLD
    progress: bool = True


@dataclasses.dataclass(frozen=True)
class Model:
    """The model to run: its kind, what to load, and the run's config when there is one."""

    kind: str
    path: str  # checkpoint prefix, SavedModel folder (with saved_model.pb), or the file
    pipeline_config: str | None  # a run's / an export layout's pipeline.config


@dataclasses.dataclass(frozen=True)
class Item:
    """One input and the name of its annotated output (relative to --out/annotated)."""

    path: str
    output: str
    video: bool = False


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything train.predict needs, checked."""

    options: PredictOptions
    model: Model
    label_map: str | None  # a label map file, or None (labels.txt / metadata / class ids)
    labels_txt: str | None  # labels.txt beside the model, one name per class id from 1
    items: tuple[Item, ...]
    skipped: tuple[tuple[str, str], ...]  # (path, why): given, but not an image or a video
    threshold_from: str = "--threshold"  # where options.threshold came from, to print


RUN_LEVELS = 4  # model_dir/export/saved_model/saved_model: the deepest a run's model sits


def run_threshold(model_path: str) -> tuple[float, str] | None:
    """The recommended score threshold of the run a model comes from, and its file.

    The end of a run with an evaluation writes it to model_dir/plots/curves.json (the score
    that maximises F1 on the eval set); a model inside that run's folder (its checkpoints,
    export/saved_model, export/model.tflite) takes it as its default.
    """
    import json

    from train import evalcurves

    folder = os.path.abspath(model_path)
    for _ in range(RUN_LEVELS):
        path = os.path.join(folder, evalcurves.PLOTS_DIR, evalcurves.CURVES_FILE)
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as f:
                    threshold = float(json.load(f)["threshold"])
            except (OSError, ValueError, KeyError, TypeError):
                return None  # unreadable: the documented default, not a guess
            return (threshold, path) if 0.0 <= threshold <= 1.0 else None
        folder = os.path.dirname(folder)
    return None


def find_model(path: str) -> Model:
    """The model at `path` (PlanError naming what it is when it is none)."""
    from train import finishcmd
    from train.checkpoint import resolve

    if not os.path.exists(path):
        raise PlanError(f"--model {path}: no such file or folder")
    if os.path.isfile(path):
        lower = path.lower()
        if lower.endswith(".tflite"):
            return Model(TFLITE, path, _config_near(os.path.dirname(path)))
        if lower.endswith(".onnx"):
            return Model(ONNX, path, _config_near(os.path.dirname(path)))
        raise PlanError(
            f"--model {path} is a file but not a .tflite or .onnx: give a run's folder, "
            "a SavedModel folder, a .tflite or an .onnx"
        )
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return Model(SAVED_MODEL, path, _config_near(os.path.dirname(os.path.abspath(path))))
    if os.path.isfile(os.path.join(path, "saved_model", "saved_model.pb")):  # the OD API layout
        return Model(SAVED_MODEL, os.path.join(path, "saved_model"), _config_near(path))
    prefix = finishcmd.best_checkpoint(path) or resolve.latest_in_dir(path)
    if prefix is None:
        raise PlanError(
            f"--model {path} is a folder with no checkpoint and no saved_model.pb: give a "
            "run's folder (model_dir), a SavedModel folder, a .tflite or an .onnx"
        )
    config = os.path.join(path, "pipeline.config")
    if not os.path.isfile(config):
        raise PlanError(
            f"--model {path} has checkpoints but no pipeline.config beside them: predict from "
            "the run's model_dir (the driver writes it there), or export the model first"
        )
    return Model(CHECKPOINT, prefix, config)


def _near(folder: str, name: str) -> str | None:
    """File `name` in `folder` or its parent (model_dir/export/model.onnx -> model_dir)."""
    for candidate in (folder, os.path.dirname(os.path.abspath(folder))):
        path = os.path.join(candidate, name)
        if os.path.isfile(path):
            return path
    return None


def _config_near(folder: str) -> str | None:
    return _near(folder, "pipeline.config")


def _labels_txt(model: Model) -> str | None:
    folder = model.path if os.path.isdir(model.path) else os.path.dirname(model.path)
    return _near(folder, "labels.txt")


def _label_map(given: str | None, model: Model) -> str | None:
    """--label_map (checked), else the one the run's config names when it is still there."""
    from train.pipeline import configfile, labelmap

    if given:
        try:
            labelmap.load(given)
        except labelmap.LabelMapError as e:
            raise PlanError(f"--label_map {given}: {e}") from None
        return given
    if model.pipeline_config:
        try:
            config = configfile.load(model.pipeline_config).proto
        except (configfile.ConfigFileError, configfile.ConfigParseError):
            return None
        path = config.train_input_reader.label_map_path
        if path and os.path.isfile(path):
            return path
    return None


def inputs(paths: tuple[str, ...]) -> tuple[list[Item], list[tuple[str, str]]]:
    """The images and videos `paths` name, in order, and the paths that are neither.

    A folder gives the images and videos under it (sorted, recursively), a glob its matches.
    Each output name keeps the path below the folder it came from; names that would collide
    get "-2", "-3" before the extension.
    """
    found: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    for given in paths:
        if os.path.isdir(given):
            others = 0
            for root, dirs, names in os.walk(given):
                dirs.sort()
                for name in sorted(names):
                    path = os.path.join(root, name)
                    if _kind(path):
                        found.append((path, os.path.relpath(path, given)))
                    else:
                        others += 1
            if others:
                skipped.append((given, f"{others} file(s) in it are not images or videos"))
        elif os.path.exists(given):
            if _kind(given):
                found.append((given, os.path.basename(given)))
            else:
                skipped.append((given, "not an image or video file (by its extension)"))
        elif glob.has_magic(given):
            matches = sorted(glob.glob(given, recursive=True))
            if not matches:
                skipped.append((given, "matches no file"))
            for path in matches:
                if os.path.isfile(path) and _kind(path):
                    found.append((path, os.path.basename(path)))
        else:
            skipped.append((given, "no such file or folder"))
    return _named(found), skipped


def _kind(path: str) -> str | None:
    lower = path.lower()
    if lower.endswith(IMAGE_EXTENSIONS):
        return "image"
    if lower.endswith(VIDEO_EXTENSIONS):
        return "video"
    return None


def _named(found: list[tuple[str, str]]) -> list[Item]:
    """Items with unique output names (a video's output is an .mp4, an image's keeps its type)."""
    taken: set[str] = set()
    items, seen = [], set()
    for path, name in found:
        real = os.path.realpath(path)
        if real in seen:
            continue  # the same file named twice (a folder and a glob): once
        seen.add(real)
        video = _kind(path) == "video"
        stem, ext = os.path.splitext(name)
        ext = ".mp4" if video else (ext.lower() if ext.lower() in (".jpg", ".jpeg") else ".png")
        output, n = stem + ext, 1
        while output.lower() in taken:
            n += 1
            output = f"{stem}-{n}{ext}"
        taken.add(output.lower())
        items.append(Item(path, output, video))
    return items


def out_problem(out: str, given: tuple[str, ...], items: list[Item]) -> str | None:
    """Why predictions may not go into `out` (None when they may).

    Never over an input: --out may not be an input folder nor hold an input (a second run
    would read the first run's pictures, or write over the ones it reads), nor be a folder of
    someone else's files.
    """
    if os.path.exists(out) and not os.path.isdir(out):
        return f"--out {out} is a file: name a folder for the predictions"
    real_out = os.path.realpath(out)
    for path in [*given, *(item.path for item in items)]:
        if not os.path.exists(path):
            continue
        real = os.path.realpath(path)
        if real == real_out or real.startswith(real_out + os.sep):
            return f"--out {out} holds the input {path}: name a folder outside the inputs"
        if os.path.isdir(real) and real_out.startswith(real + os.sep):
            return (
                f"--out {out} is inside the input folder {path}: the annotated pictures would "
                "be read as inputs next time; name a folder outside it"
            )
    if os.path.isdir(out) and os.listdir(out) and not os.path.exists(os.path.join(out, MARKER)):
        return (
            f"--out {out} holds files that train.predict did not write: name a new or empty "
            "folder (an earlier --out of train.predict is replaced)"
        )
    problem = files.writable_dir_problem(out)
    return f"--out {out} {problem}" if problem else None


def plan(options: PredictOptions) -> Plan:
    """Checks the command line and returns the Plan (PlanError: exit 2, nothing written)."""
    if options.threshold is not None and not 0.0 <= options.threshold <= 1.0:
        raise PlanError(f"--threshold {options.threshold} is not a score: give 0 to 1")
    if not options.inputs:
        raise PlanError("no inputs: give images, folders, globs or a video after the flags")
    model = find_model(options.model)
    source = "--threshold"
    if options.threshold is None:
        found = run_threshold(model.path)
        threshold, source = found if found else (DEFAULT_THRESHOLD, "the default")
        options = dataclasses.replace(options, threshold=threshold)
    label_map = _label_map(options.label_map, model)
    items, skipped = inputs(options.inputs)
    if not items:
        listed = "; ".join(f"{path}: {why}" for path, why in skipped) or "the folders are empty"
        raise PlanError(f"no image or video among the inputs ({listed})")
    problem = out_problem(options.out, options.inputs, items)
    if problem:
        raise PlanError(problem)
    return Plan(options, model, label_map, _labels_txt(model), tuple(items), tuple(skipped), source)
