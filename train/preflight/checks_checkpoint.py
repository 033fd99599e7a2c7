"""Checks on the fine-tune checkpoint (index only) and on model_dir."""

from __future__ import annotations

import os

from train import errors, files
from train.checkpoint import identify
from train.files import windows_hint
from train.pipeline import arch as pipeline_arch
from train.pipeline import fields
from train.preflight.findings import ERROR, INFO, WARNING, Edit, Finding

_TYPES = ("classification", "detection", "full", "fine_tune")


def check_checkpoint_path(ctx):
    """CKPT_PATH / CKPT_UNREADABLE: the path resolves to a readable checkpoint prefix."""
    resolution = ctx.checkpoint
    tc = ctx.train_config
    if resolution is None and tc.fine_tune_checkpoint_type:
        yield ctx.finding_at(
            "fine_tune_checkpoint_type",
            "CKPT_PATH.unset",
            WARNING,
            "fine_tune_checkpoint_type is "
            f"{tc.fine_tune_checkpoint_type!r} but no fine_tune_checkpoint is set (commented "
            "out?): training starts from random weights",
            "pass --checkpoint PATH/ckpt-0, or delete fine_tune_checkpoint_type to train from "
            "scratch on purpose",
        )
    if resolution is None or resolution.problem in ("placeholder", "empty"):
        return  # no fine-tune checkpoint, or PLACEHOLDER reports it
    if resolution.problem is not None:
        if resolution.prefix:
            yield ctx.finding_at(
                "fine_tune_checkpoint",
                f"CKPT_PATH.{resolution.problem}",
                ERROR,
                f"train_config.fine_tune_checkpoint {resolution.message}: "
                f"{resolution.given!r} resolves to {resolution.prefix!r}",
                f"set fine_tune_checkpoint: {resolution.prefix!r}",
                edits=(
                    Edit(
                        "train_config.fine_tune_checkpoint",
                        resolution.prefix,
                        f"{resolution.problem.replace('_', ' ')} -> checkpoint prefix",
                    ),
                ),
            )
        else:
            yield ctx.finding_at(
                "fine_tune_checkpoint",
                f"CKPT_PATH.{resolution.problem}",
                ERROR,
                f"train_config.fine_tune_checkpoint: {resolution.message}"
                f"{windows_hint(resolution.given)}",
                "point --checkpoint at the checkpoint prefix, e.g. MODEL/checkpoint/ckpt-0 "
                "(the part before .index)",
            )
        if not resolution.prefix:
            return
    shard_problems = list(_shard_problems(resolution.prefix))
    for detail, message, fix in shard_problems:
        yield ctx.finding_at(
            "fine_tune_checkpoint",
            f"CKPT_UNREADABLE.{detail}",
            ERROR,
            message,
            fix,
        )
    info, error = ctx.checkpoint_info
    truncated = _truncated(resolution.prefix) if info and not shard_problems else None
    if truncated:
        yield ctx.finding_at(
            "fine_tune_checkpoint",
            "CKPT_UNREADABLE.truncated",
            ERROR,
            truncated,
            "download or copy the checkpoint again (the data file is incomplete)",
        )
    if error:
        yield ctx.finding_at(
            "fine_tune_checkpoint",
            "CKPT_UNREADABLE",
            ERROR,
            f"checkpoint {resolution.prefix} cannot be read: {error}",
            "re-download or re-extract the checkpoint",
        )


def _type_from_config(ctx):
    """CKPT_TYPE rules that need no checkpoint: unknown types, "fine_tune" on CenterNet."""
    tc = ctx.train_config
    current = tc.fine_tune_checkpoint_type
    if not tc.HasField("fine_tune_checkpoint") or not current:
        return
    arch = fields.meta_arch(ctx.config)
    if current == "fine_tune" and arch == "center_net":
        reason, wanted = "'fine_tune' is no longer supported for CenterNet", "detection"
    elif current not in _TYPES:
        reason, wanted = f"{current!r} is not a type the OD API knows", None
    else:
        return
    yield ctx.finding_at(
        "fine_tune_checkpoint_type",
        "CKPT_TYPE",
        ERROR,
        f"train_config.fine_tune_checkpoint_type: {reason}",
        f'set fine_tune_checkpoint_type: "{wanted}"'
        if wanted
        else 'set fine_tune_checkpoint_type to "detection" (a detection checkpoint) or '
        '"classification" (a backbone checkpoint)',
        edits=(Edit("train_config.fine_tune_checkpoint_type", wanted, reason),) if wanted else (),
    )


def _truncated(prefix: str) -> str | None:
    """Says so when a data shard ends before the last tensor the index places in it."""
    from train.checkpoint import bundle

    try:
        short = bundle.truncated_shards(prefix)
    except (bundle.UnsupportedIndex, OSError):
        return None
    if not short:
        return None
    path, have, need = short[0]
    return (
        f"checkpoint {prefix} is truncated: {os.path.basename(path)} has {have} bytes, its "
        f"tensors need {need}"
    )


def _shard_problems(prefix: str):
    """(detail, message, fix) for data shards that are absent, not files, or Git LFS pointers.

    `tf.train.list_variables` reads only the .index, so these pass every early check and fail
    at restore time.
    """
    from train.checkpoint import bundle

    directory = os.path.dirname(prefix) or "."
    base = os.path.basename(prefix) + ".data-"
    try:
        shards = sorted(f for f in os.listdir(directory) if f.startswith(base))
    except OSError as e:
        yield (
            "folder",
            f"the checkpoint folder {directory} cannot be listed ({e.strerror or e})",
            "make the checkpoint folder readable for this user",
        )
        return
    if not shards:
        yield (
            "missing_shard",
            f"{prefix}.index has no data shard beside it ({base}*)",
            "copy or re-extract the whole checkpoint (index and data files)",
        )
        return
    try:
        count, _ = bundle.read_index(prefix)
    except (bundle.UnsupportedIndex, OSError):
        count = None  # the index itself is reported by the CKPT_UNREADABLE check
    if count is not None:
        wanted = [bundle.shard_path(prefix, i, count) for i in range(count)]
        absent = [os.path.basename(p) for p in wanted if os.path.basename(p) not in shards]
        if absent:
            yield (
                "shard_count",
                f"{prefix}.index expects {count} data shard(s) but {absent[0]} is missing "
                f"(found: {', '.join(shards[:3])}{' ...' if len(shards) > 3 else ''})",
                "copy the whole checkpoint again: the index and its data shards must come from "
                "the same save",
            )
    for name in shards:
        path = os.path.join(directory, name)
        try:
            with files.open_input(path) as f:
                head = f.read(64)
        except files.InputError as e:
            yield ("not_a_file", f"data shard {path} {e.reason}", "replace it with the real file")
            continue
        if head.startswith(b"version https://git-lfs"):
            yield (
                "lfs_pointer",
                f"{path} is a Git LFS pointer, not the checkpoint data",
                "run `git lfs pull` in that repository",
            )


def check_checkpoint_kind(ctx):
    """CKPT_TF1 / CKPT_TYPE: the checkpoint's kind agrees with fine_tune_checkpoint_type."""
    info, _ = ctx.checkpoint_info
    if info is None:
        yield from _type_from_config(ctx)
        return
    tc = ctx.train_config
    path = "train_config.fine_tune_checkpoint_type"
    if info.kind == "tf1":
        yield ctx.finding_at(
            "fine_tune_checkpoint",
            "CKPT_TF1",
            ERROR,
            f"{info.prefix} is a TF1 (name-based Saver) "
            "checkpoint; the TF2 loop needs an object-based checkpoint",
            "download the TF2 version of this model from the TF2 detection zoo "
            "(tf2_detection_zoo.md) and use its checkpoint/ckpt-0",
        )
        return
    if info.kind in ("empty", "unknown"):
        yield ctx.finding_at(
            "fine_tune_checkpoint",
            "CKPT_UNREADABLE.not_detection",
            ERROR,
            f"{info.prefix} holds no OD API model "
            f"({'no variables' if info.kind == 'empty' else 'no model/ or feature_extractor/'} "
            "root)",
            "use a checkpoint from the TF2 detection zoo or from an OD API model_dir",
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
        head = head_classes(ctx.config, info)
        target = _target_classes(ctx)
        if head is not None and target is not None and head != target:
            wanted = "detection"
            yield ctx.finding_at(
                "fine_tune_checkpoint_type",
                "NUM_CLASSES.full_head",
                ERROR,
                "fine_tune_checkpoint_type 'full' restores the class head, but the "
                f"checkpoint's head has {head} classes and the config {target}",
                'set fine_tune_checkpoint_type: "detection" (restores everything but the heads)',
                edits=(
                    Edit(path, "detection", f"checkpoint head has {head} classes, model {target}"),
                ),
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
    yield ctx.finding_at(
        "fine_tune_checkpoint_type",
        "CKPT_TYPE",
        ERROR,
        f"train_config.fine_tune_checkpoint_type is {shown} but {reason}; "
        "the OD API would fail after building the model, or restore nothing",
        f'set fine_tune_checkpoint_type: "{wanted}"',
        edits=(Edit(path, wanted, reason),),
    )


def head_classes(config, info) -> int | None:
    """The class count the checkpoint's head was trained for (None when unknown)."""
    if info.meta_arch == "ssd":
        return identify.classes_from_head(
            info, pipeline_arch.anchors_per_location(config), config.model.ssd.add_background_class
        )
    return identify.classes_from_head(info, None)


def check_model_dir_usable(ctx):
    """MODEL_DIR.unusable: model_dir must be a folder this user can create files in."""
    problem = files.writable_dir_problem(ctx.options.model_dir)
    if problem:
        yield Finding(
            "MODEL_DIR.unusable",
            ERROR,
            f"--model_dir {errors.clip(repr(ctx.options.model_dir))} {problem}: checkpoints, "
            "logs and the resolved config could not be written",
            "pass --model_dir naming a folder you can write to (it is created when missing)",
        )


def _resume_mismatches(ctx, where: str, info):
    """The run in model_dir against this config: architecture, class head, optimizer slots."""
    fix = "pass --fresh to move that run aside (renamed, never deleted), or use a new --model_dir"
    for _, description in _arch_mismatches(ctx.config, info):
        yield Finding(
            "MODEL_DIR.incompatible",
            ERROR,
            f"{where} holds a run of another architecture ({description}); the OD API "
            "resumes from it and fails with a shape mismatch",
            fix,
        )
    wanted_classes = _target_classes(ctx)
    slots = pipeline_arch.class_head_slots(ctx.config, wanted_classes) if wanted_classes else None
    if slots and info.head_slots and slots != info.head_slots:
        yield Finding(
            "MODEL_DIR.incompatible",
            ERROR,
            f"{where} holds a run whose class head has {info.head_slots} outputs; this "
            f"config ({wanted_classes} classes) builds {slots}: the resume would fail "
            "with a shape mismatch",
            fix,
        )
    wanted_slots = pipeline_arch.optimizer_slots(ctx.config)
    if info.optimizer_slots and wanted_slots and not wanted_slots <= info.optimizer_slots:
        yield Finding(
            "MODEL_DIR.optimizer",
            WARNING,
            f"{where} holds a run trained with another optimizer (slots "
            f"{sorted(info.optimizer_slots)}; this config's optimizer keeps "
            f"{sorted(wanted_slots)}): its state would be dropped silently",
            fix,
        )


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
    run = ctx.previous_run
    latest, info, error = (run.prefix, run.info, run.error) if run else (None, None, None)
    where = f"--model_dir {ctx.options.model_dir}"
    if latest is not None and ctx.options.fresh:
        yield from _fresh_start(ctx, where, latest)
        return
    if latest is not None and not ctx.options.resume:
        yield Finding(
            "MODEL_DIR.exists",
            ERROR,
            f"{where} holds a run ({latest}) and --noresume was given",
            "pass --fresh to move that run aside (it is renamed, not deleted), or --resume to "
            "continue it, or use a new --model_dir",
        )
        return
    if run is not None and run.damaged:
        yield _damaged_finding(ctx, where, run)
        if info is None:
            return
    if error is not None:
        yield Finding(
            "MODEL_DIR.unreadable",
            ERROR,
            f"--model_dir holds an unreadable checkpoint {latest}: {error}",
            "use a new --model_dir, or move the broken run aside",
        )
        return
    if info is None:
        return
    yield from _resume_mismatches(ctx, where, info)
    step = info.global_step or 0
    steps = ctx.num_train_steps
    if steps and step >= steps:
        yield Finding(
            "MODEL_DIR.finished",
            ERROR,
            f"{where} already holds a run at step {step} >= num_train_steps {steps}; the OD API "
            "would train 0 steps and exit 0",
            "use a new --model_dir, or raise --num_train_steps to continue that run",
        )
    else:
        yield Finding(
            "MODEL_DIR.resume",
            INFO,
            f"{where} holds a run at step {step}; training resumes from it (its weights "
            "replace the fine-tune checkpoint's)",
            "use a new --model_dir to fine-tune from scratch instead",
        )


def _damaged_finding(ctx, where: str, run) -> Finding:
    """MODEL_DIR.damaged: the newest checkpoint cannot be restored whole (a crash, a quota).

    TensorFlow would fail at the first step ("Read less bytes than requested") or, worse,
    restore part of it; the run resumes from the newest intact checkpoint instead, the damaged
    files moved to model_dir/damaged (launch/rundir.py), or stops when none is intact.
    """
    from train.launch import rundir

    newest, why = run.damaged[0]
    names = ", ".join(os.path.basename(p) for p, _ in run.damaged)
    if run.info is None:
        return Finding(
            "MODEL_DIR.damaged",
            ERROR,
            f"{where}: no checkpoint of the run there can be restored: the newest, {newest}, is "
            f"damaged: {why}",
            "restore the file from a backup, or pass --fresh to move the run aside (renamed, "
            "never deleted) and start again from the fine-tune checkpoint",
            file=newest + ".index",
        )
    return Finding(
        "MODEL_DIR.damaged",
        WARNING,
        f"{where}: the newest checkpoint {os.path.basename(newest)} is damaged ({why}); the "
        f"run resumes from {os.path.basename(run.prefix)} (step {run.step}) and {names} "
        f"move(s) to {rundir.DAMAGED}/ there",
        "nothing to do (the damaged files are kept there, not deleted)",
        file=newest + ".index",
    )


def _fresh_start(ctx, where: str, latest: str):
    from train.launch import rundir

    inside = rundir.inputs_inside(
        ctx.options.model_dir,
        [ctx.options.pipeline_config, ctx.checkpoint.prefix if ctx.checkpoint else None]
        + [reader.label_map_path for _, reader in fields.input_readers(ctx.config)],
    )
    if inside:
        yield Finding(
            "MODEL_DIR.fresh_holds_inputs",
            ERROR,
            f"--fresh would move {where} aside, but it holds this run's input {inside[0]}",
            "keep configs, checkpoints and label maps outside model_dir, or use a new --model_dir",
        )
        return
    yield Finding(
        "MODEL_DIR.fresh",
        INFO,
        f"{where} holds a run ({latest}); --fresh moves it aside to "
        f"{rundir.aside_path(ctx.options.model_dir, 'TIME')} and fine-tunes from the checkpoint",
        "nothing to do; the moved run stays readable (tensorboard --logdir on it)",
    )


def _target_classes(ctx) -> int | None:
    """The class count the run will have: --num_classes, else the label map, else the config."""
    if ctx.options.num_classes:
        return ctx.options.num_classes
    if ctx.train_label_map and ctx.train_label_map.items:
        return ctx.train_label_map.max_id
    path = fields.num_classes_path(ctx.config)
    return fields.get(ctx.config, path) if path else None


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
        yield ctx.finding_at(
            "num_steps",
            "CKPT_CADENCE.no_steps",
            ERROR,
            "train_config.num_steps is 0 (unset) and no "
            "--num_train_steps was given: the OD API would train forever",
            "pass --num_train_steps N",
        )


def _arch_mismatches(config, info) -> list[tuple[str, str]]:
    """(detail, description) for every way `info` cannot be the config's architecture."""
    want = pipeline_arch.expected(config)
    sig = info.signature
    problems = []
    if info.meta_arch and want.meta_arch and info.meta_arch != want.meta_arch:
        problems.append(
            (
                "meta_arch",
                f"the checkpoint is a {info.meta_arch} model and the config a {want.meta_arch}",
            )
        )
        return problems
    if sig is None:
        return problems
    if want.family and sig.family and want.family != sig.family:
        problems.append(
            (
                "backbone",
                f"the checkpoint's backbone is {sig.family} and the config's {want.family}",
            )
        )
        return problems
    if (
        want.meta_arch == "ssd"
        and want.fpn is not None
        and not sig.efficientnet
        and sig.family
        and want.fpn != sig.fpn
    ):
        has, lacks = ("an FPN neck", "none") if sig.fpn else ("no FPN neck", "one")
        problems.append(("neck", f"the checkpoint has {has} and the config builds {lacks}"))
    if (
        sig.family in ("mobilenet_v1", "mobilenet_v2")
        and sig.first_kernel
        and want.depth_multiplier
    ):
        full_width = sig.first_kernel[3] == 32
        if full_width != (abs(want.depth_multiplier - 1.0) < 1e-6):
            problems.append(
                (
                    "width",
                    f"the checkpoint's first convolution has {sig.first_kernel[3]} "
                    f"filters; depth_multiplier {want.depth_multiplier:g} "
                    f"builds {'32' if want.depth_multiplier == 1 else 'another'}",
                )
            )
    if (
        want.bifpn_filters
        and sig.bifpn_filters
        and (want.bifpn_filters != sig.bifpn_filters or want.bifpn_nodes != sig.bifpn_nodes)
    ):
        problems.append(
            (
                "bifpn",
                f"the checkpoint's BiFPN has {sig.bifpn_filters} filters and "
                f"{sig.bifpn_nodes} nodes, the config {want.bifpn_filters} and "
                f"{want.bifpn_nodes} (another EfficientDet size)",
            )
        )
    return problems


def check_checkpoint_architecture(ctx):
    """CKPT_ARCH: the checkpoint was trained for another architecture, backbone or width."""
    info, _ = ctx.checkpoint_info
    if info is None or info.kind not in ("detection", "training"):
        return
    extractor = fields.feature_extractor_type(ctx.config)
    for detail, description in _arch_mismatches(ctx.config, info):
        yield ctx.finding_at(
            "fine_tune_checkpoint",
            f"CKPT_ARCH.{detail}",
            ERROR,
            f"{info.prefix} does not fit "
            f"{fields.meta_arch(ctx.config)}/{extractor}: {description}; the restore would fail "
            "or leave layers random",
            "use the zoo checkpoint of the same model as the config (or the config that came "
            "with the checkpoint)",
        )


def check_restore_mode(ctx):
    """RESTORE.transplant: --restore=transplant needs a detection checkpoint to copy from."""
    if ctx.options.restore != "transplant":
        return
    info, _ = ctx.checkpoint_info
    if not ctx.train_config.fine_tune_checkpoint:
        yield Finding(
            "RESTORE.transplant",
            ERROR,
            "--restore=transplant: there is no fine_tune_checkpoint to transplant from",
            "pass --checkpoint with a detection checkpoint, or drop --restore=transplant",
        )
    elif info is not None and info.kind == "classification":
        yield ctx.finding_at(
            "fine_tune_checkpoint",
            "RESTORE.transplant",
            ERROR,
            f"--restore=transplant copies detection heads, but {info.prefix} is a "
            "backbone-only (classification) checkpoint",
            "drop --restore=transplant (type 'classification' restores all a backbone "
            "checkpoint has), or pass a detection checkpoint",
        )
