"""Checks on the installed stack and the devices (package metadata only; no TF import)."""

from __future__ import annotations

import importlib.util
import os

from train import compat, envinfo
from train.preflight.findings import ERROR, WARNING, Finding

_TESTED_TF = ("2.15", "2.20", "2.21")


def _tf_version() -> tuple[str | None, str | None]:
    for dist in ("tensorflow", "tensorflow-cpu", "tf-nightly"):
        version = compat.dist_version(dist)
        if version:
            return dist, version
    return None, None


def check_environment(ctx):
    """ENV: TensorFlow, Keras, the OD API and its runtime deps, GPU vs TF build."""
    dist, tf_version = _tf_version()
    fix_stack = (
        "install a tested stack: bash scripts/setup_env.sh tf215-cpu .venv "
        "(docs/development.md#stacks)"
    )
    if tf_version is None:
        yield Finding("ENV.tensorflow", ERROR, "TensorFlow is not installed", fix_stack)
        return
    minor = ".".join(tf_version.split(".")[:2])
    if minor not in _TESTED_TF:
        yield Finding(
            "ENV.tensorflow_version",
            WARNING,
            f"TensorFlow {tf_version} is not a tested stack (tested: {', '.join(_TESTED_TF)})",
            fix_stack,
        )
    keras = compat.dist_version("keras")
    tf_keras = compat.dist_version("tf-keras") or compat.dist_version("tf_keras")
    if keras and int(keras.split(".")[0]) >= 3:
        if tf_keras is None:
            yield Finding(
                "ENV.keras",
                ERROR,
                f"Keras {keras} (Keras 3) is installed without tf-keras; the OD API needs Keras 2",
                f"pip install tf-keras=={minor}.*",
            )
        elif ".".join(tf_keras.split(".")[:2]) != minor:
            yield Finding(
                "ENV.keras",
                ERROR,
                f"tf-keras {tf_keras} does not match TensorFlow {tf_version}",
                f"pip install tf-keras=={minor}.*",
            )
    od = compat.dist_version("tf-models-research-object-detection")
    if od is None and importlib.util.find_spec("object_detection") is None:
        yield Finding(
            "ENV.object_detection",
            ERROR,
            "the OD API (object_detection) is not installed",
            fix_stack,
        )
    for module, package in (
        ("tf_slim", "tf-slim"),
        ("official", "tf-models-official"),
        ("pycocotools", "pycocotools"),
        ("lvis", "lvis"),
        ("gin", "gin-config"),
    ):
        if importlib.util.find_spec(module) is None:
            yield Finding(
                "ENV.missing_module",
                ERROR,
                f"module {module!r} (package {package}) is missing; the OD API imports it",
                f"pip install {package} (or use a tested stack: docs/development.md#stacks)",
            )
    numpy = compat.dist_version("numpy")
    if numpy and minor == "2.15" and int(numpy.split(".")[0]) >= 2:
        yield Finding(
            "ENV.numpy",
            ERROR,
            f"numpy {numpy} with TensorFlow {tf_version} (needs < 2)",
            "pip install 'numpy<2'",
        )
    gpus = envinfo.physical_gpus()
    if gpus and dist == "tensorflow-cpu":
        yield Finding(
            "ENV.gpu_unused",
            WARNING,
            f"{gpus} GPU(s) present but the CPU-only build {dist} {tf_version} is installed",
            "install the GPU stack: bash scripts/setup_env.sh tf215-gpu .venv",
        )
    if gpus and envinfo.visible_gpus() == 0:
        yield Finding(
            "ENV.gpu_hidden",
            WARNING,
            f"{gpus} GPU(s) present but CUDA_VISIBLE_DEVICES hides them all: training runs on CPU",
            "unset CUDA_VISIBLE_DEVICES (or list the GPUs to use)",
        )


def check_native_imports(ctx):  # noqa: ARG001 - the stack, not the run, decides
    """ENV.import: a compiled module the training child imports that cannot load here.

    Imported in a fresh interpreter with the children's environment (train/nativeimports.py),
    so a wheel missing a system library (opencv-python without libGL in a container) stops
    the run here instead of at the child's first import.
    """
    from train import nativeimports

    for failure in nativeimports.probe_once(child_imports_env()).result():
        yield nativeimports.finding(failure)


def child_imports_env() -> dict[str, str]:
    """The environment the training child imports its modules in."""
    return {**os.environ, **compat.child_environment()}


def check_offline_weights(ctx):
    """ENV.imagenet_weights: a model build that would download ImageNet weights.

    With a fine-tune checkpoint the children build those backbones without the download (the
    checkpoint replaces the weights); without one the file must already be in Keras's cache.
    """
    from train import offline

    needed = offline.imagenet_download(ctx.config)
    if not needed or ctx.config.train_config.fine_tune_checkpoint:
        return
    folder = offline.keras_cache_dir()
    if os.path.isfile(os.path.join(folder, needed)):
        return
    yield ctx.finding_at(
        "feature_extractor",
        "ENV.imagenet_weights",
        ERROR,
        f"the {ctx.config.model.center_net.feature_extractor.type} extractor starts from "
        f"ImageNet weights ({needed}) that Keras would download while building the model, and "
        f"it is not in Keras's cache {folder}; runs never reach the internet (offline nodes "
        'fail with "URL fetch failure")',
        f"pass --checkpoint (a fine-tune checkpoint replaces those weights), or copy {needed} "
        f"into {folder} on the training nodes",
    )


ROOM_FOR = 3  # checkpoints model_dir's free space should hold (a save, the one before, slack)


def _checkpoint_bytes(ctx) -> tuple[int, str] | None:
    """(bytes one training checkpoint takes, how that is known), None when unknown.

    The newest checkpoint in model_dir says it exactly; else the fine-tune checkpoint's model
    variables times the optimizer's slots (momentum keeps one copy per variable, Adam two),
    from its index alone.
    """
    from train.checkpoint import bundle
    from train.pipeline import arch

    run = ctx.previous_run
    try:
        if run is not None and run.info is not None:
            return bundle.data_bytes(run.prefix), f"as {os.path.basename(run.prefix)} there"
        resolution = ctx.checkpoint
        if resolution is None or not resolution.prefix:
            return None
        model = bundle.data_bytes(resolution.prefix, only="model/")
    except (bundle.UnsupportedIndex, OSError):
        return None
    slots = len(arch.optimizer_slots(ctx.config) or ())
    if not model:
        return None
    return model * (1 + slots), f"the fine-tune checkpoint's model and {slots} optimizer slot(s)"


def check_disk_space(ctx):
    """MODEL_DIR.disk_space: room for a few checkpoints where model_dir is (TRAIN.disk_full)."""
    from train import files

    measured = _checkpoint_bytes(ctx)
    free = files.free_bytes(ctx.options.model_dir)
    if measured is None or free is None or free >= ROOM_FOR * measured[0]:
        return
    size, how = measured
    none_fits = free < size
    room = "less than one checkpoint" if none_fits else f"less than {ROOM_FOR} checkpoints"
    yield Finding(
        "MODEL_DIR.disk_space",
        ERROR if none_fits else WARNING,
        f"--model_dir {ctx.options.model_dir}: {files.human_size(free)} free on its file "
        f"system, {room} ({files.human_size(size)} each, {how}): training would stop with "
        "TRAIN.disk_full",
        "free space there or pass a --model_dir on a larger disk (--checkpoint_max_to_keep "
        "bounds how many checkpoints are kept; the default keeps 7)",
    )
