"""Checks on the fine-tune checkpoint (index only) and on model_dir."""

from __future__ import annotations

import os

from train.checkpoint import inspect as ckpt_inspect
from train.pipeline import fields
from train.preflight.findings import ERROR, INFO, Edit, Finding
from train.preflight.registry import register

_TYPES = ("classification", "detection", "full", "fine_tune")


@register("checkpoint_path")
def check_checkpoint_path(ctx):
    """CKPT_PATH / CKPT_UNREADABLE: the path resolves to a readable checkpoint prefix."""
    resolution = ctx.checkpoint
    if resolution is None or resolution.problem in ("placeholder", "empty"):
        return  # no fine-tune checkpoint, or PLACEHOLDER reports it
    where = ctx.where("fine_tune_checkpoint")
    line = ctx.line("fine_tune_checkpoint")
    if resolution.problem is not None:
        if resolution.prefix:
            yield Finding(
                f"CKPT_PATH.{resolution.problem}",
                ERROR,
                f"{where}: train_config.fine_tune_checkpoint {resolution.message}: "
                f"{resolution.given!r} resolves to {resolution.prefix!r}",
                f"set fine_tune_checkpoint: {resolution.prefix!r}",
                edits=(
                    Edit(
                        "train_config.fine_tune_checkpoint",
                        resolution.prefix,
                        f"{resolution.problem.replace('_', ' ')} -> checkpoint prefix",
                    ),
                ),
                file=ctx.source.path,
                line=line,
            )
        else:
            yield Finding(
                f"CKPT_PATH.{resolution.problem}",
                ERROR,
                f"{where}: train_config.fine_tune_checkpoint: {resolution.message}",
                "point --checkpoint at the checkpoint prefix, e.g. MODEL/checkpoint/ckpt-0 "
                "(the part before .index)",
                file=ctx.source.path,
                line=line,
            )
        if not resolution.prefix:
            return
    for detail, message, fix in _shard_problems(resolution.prefix):
        yield Finding(
            f"CKPT_UNREADABLE.{detail}",
            ERROR,
            f"{where}: {message}",
            fix,
            file=ctx.source.path,
            line=line,
        )
    _, error = ctx.checkpoint_info
    if error:
        yield Finding(
            "CKPT_UNREADABLE",
            ERROR,
            f"{where}: checkpoint {resolution.prefix} cannot be read: {error}",
            "re-download or re-extract the checkpoint",
            file=ctx.source.path,
            line=line,
        )


def _shard_problems(prefix: str):
    """(detail, message, fix) for data shards that are absent or Git LFS pointers.

    `tf.train.list_variables` reads only the .index, so these pass every early check and fail
    at restore time.
    """
    directory = os.path.dirname(prefix) or "."
    base = os.path.basename(prefix) + ".data-"
    shards = sorted(f for f in os.listdir(directory) if f.startswith(base))
    if not shards:
        yield (
            "missing_shard",
            f"{prefix}.index has no data shard beside it ({base}*)",
            "copy or re-extract the whole checkpoint (index and data files)",
        )
    for name in shards:
        with open(os.path.join(directory, name), "rb") as f:
            head = f.read(64)
        if head.startswith(b"version https://git-lfs"):
            yield (
                "lfs_pointer",
                f"{os.path.join(directory, name)} is a Git LFS pointer, not the checkpoint data",
                "run `git lfs pull` in that repository",
            )


@register("checkpoint_kind")
def check_checkpoint_kind(ctx):
    """CKPT_TF1 / CKPT_TYPE: the checkpoint's kind agrees with fine_tune_checkpoint_type."""
    info, _ = ctx.checkpoint_info
    if info is None:
        return
    tc = ctx.train_config
    where = ctx.where("fine_tune_checkpoint_type")
    line = ctx.line("fine_tune_checkpoint_type")
    path = "train_config.fine_tune_checkpoint_type"
    if info.kind == "tf1":
        yield Finding(
            "CKPT_TF1",
            ERROR,
            f"{ctx.where('fine_tune_checkpoint')}: {info.prefix} is a TF1 (name-based Saver) "
            "checkpoint; the TF2 loop needs an object-based checkpoint",
            "download the TF2 version of this model from the TF2 detection zoo "
            "(tf2_detection_zoo.md) and use its checkpoint/ckpt-0",
            file=ctx.source.path,
            line=ctx.line("fine_tune_checkpoint"),
        )
        return
    if info.kind in ("empty", "unknown"):
        yield Finding(
            "CKPT_UNREADABLE.not_detection",
            ERROR,
            f"{ctx.where('fine_tune_checkpoint')}: {info.prefix} holds no OD API model "
            f"({'no variables' if info.kind == 'empty' else 'no model/ or feature_extractor/'} "
            "root)",
            "use a checkpoint from the TF2 detection zoo or from an OD API model_dir",
            file=ctx.source.path,
            line=ctx.line("fine_tune_checkpoint"),
        )
        return
    arch = fields.meta_arch(ctx.config)
    current = tc.fine_tune_checkpoint_type
    shown = repr(current) if current else "unset (the OD API then assumes 'classification')"
    if info.kind == "classification":
        wanted = "classification"
    elif arch == "center_net" or current != "full":
        wanted = "detection"
    else:
        wanted = "full"
    if current == "full" and wanted == "full":
        head = _head_classes(ctx, info)
        target = fields.get(ctx.config, fields.num_classes_path(ctx.config) or "") if arch else None
        if head is not None and target is not None and head != target:
            wanted = "detection"
            yield Finding(
                "CKPT_TYPE.full_head_mismatch",
                ERROR,
                f"{where}: fine_tune_checkpoint_type 'full' restores the class head, but the "
                f"checkpoint's head has {head} classes and the config {target}",
                'set fine_tune_checkpoint_type: "detection" (restores everything but the heads)',
                edits=(
                    Edit(path, "detection", f"checkpoint head has {head} classes, model {target}"),
                ),
                file=ctx.source.path,
                line=line,
            )
            return
    if current == wanted:
        return
    if current and current not in _TYPES:
        reason = f"{current!r} is not a type the OD API knows"
    elif current == "fine_tune" and arch == "center_net":
        reason = "'fine_tune' is no longer supported for CenterNet"
    elif info.kind == "classification":
        reason = "the checkpoint is a backbone-only (classification) checkpoint"
    else:
        reason = f"the checkpoint is a {info.kind} checkpoint (root object 'model')"
    yield Finding(
        "CKPT_TYPE",
        ERROR,
        f"{where}: train_config.fine_tune_checkpoint_type is {shown} but {reason}; "
        "the OD API would fail after building the model, or restore nothing",
        f'set fine_tune_checkpoint_type: "{wanted}"',
        edits=(Edit(path, wanted, reason),),
        file=ctx.source.path,
        line=line,
    )


def _anchors_per_location(config) -> int | None:
    ssd = config.model.ssd
    which = ssd.anchor_generator.WhichOneof("anchor_generator_oneof")
    if which == "multiscale_anchor_generator":
        gen = ssd.anchor_generator.multiscale_anchor_generator
        return len(gen.aspect_ratios) * gen.scales_per_octave
    if which == "ssd_anchor_generator":
        gen = ssd.anchor_generator.ssd_anchor_generator
        if gen.reduce_boxes_in_lowest_layer:
            return 3  # the lowest layer (the one the head fingerprint reads) has 3 boxes
        return len(gen.aspect_ratios) + (1 if gen.interpolated_scale_aspect_ratio > 0 else 0)
    return None


def _head_classes(ctx, info) -> int | None:
    config = ctx.config
    if info.meta_arch == "ssd":
        return ckpt_inspect.classes_from_head(
            info, _anchors_per_location(config), config.model.ssd.add_background_class
        )
    return ckpt_inspect.classes_from_head(info, None)


@register("model_dir")
def check_model_dir(ctx):
    """MODEL_DIR: a finished run, or the checkpoint's own folder."""
    model_dir = os.path.abspath(ctx.options.model_dir)
    resolution = ctx.checkpoint
    if resolution and resolution.prefix:
        if os.path.abspath(os.path.dirname(resolution.prefix)) == model_dir:
            yield Finding(
                "MODEL_DIR.is_checkpoint_dir",
                ERROR,
                f"--model_dir {ctx.options.model_dir} is the folder of the fine-tune checkpoint; "
                "training would resume from it instead of fine-tuning",
                "use a new, empty --model_dir",
            )
    if not os.path.isfile(os.path.join(model_dir, "checkpoint")):
        return
    from train.checkpoint.resolve import _latest_in_dir

    latest = _latest_in_dir(model_dir)
    if latest is None:
        return
    try:
        info = ckpt_inspect.inspect(latest)
    except Exception as e:  # noqa: BLE001
        yield Finding(
            "MODEL_DIR.unreadable",
            ERROR,
            f"--model_dir holds an unreadable checkpoint {latest}: {e}",
            "use a new --model_dir, or move the broken run aside",
        )
        return
    step = info.global_step or 0
    steps = ctx.num_train_steps
    if steps and step >= steps:
        yield Finding(
            "MODEL_DIR.finished",
            ERROR,
            f"--model_dir {ctx.options.model_dir} already holds a run at step {step} >= "
            f"num_train_steps {steps}; the OD API would train 0 steps and exit 0",
            "use a new --model_dir, or raise --num_train_steps to continue that run",
        )
    else:
        yield Finding(
            "MODEL_DIR.resume",
            INFO,
            f"--model_dir {ctx.options.model_dir} holds a run at step {step}; training resumes "
            "from it (its weights replace the fine-tune checkpoint's)",
            "use a new --model_dir to fine-tune from scratch instead",
        )


@register("checkpoint_cadence")
def check_checkpoint_cadence(ctx):
    """CKPT_CADENCE: checkpoint_every_n vs num_train_steps (the driver always saves the end)."""
    steps = ctx.num_train_steps
    every = ctx.options.checkpoint_every_n
    if steps and every > steps:
        yield Finding(
            "CKPT_CADENCE",
            INFO,
            f"--checkpoint_every_n {every} > num_train_steps {steps}: only the start and the "
            "final step are checkpointed (the driver always saves the final step)",
            f"pass --checkpoint_every_n {max(1, steps // 4)} for intermediate checkpoints",
        )
    if steps == 0:
        yield Finding(
            "CKPT_CADENCE.no_steps",
            ERROR,
            f"{ctx.where('num_steps')}: train_config.num_steps is 0 (unset) and no "
            "--num_train_steps was given: the OD API would train forever",
            "pass --num_train_steps N",
            file=ctx.source.path,
            line=ctx.line("num_steps"),
        )
