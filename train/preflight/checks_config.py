"""Checks that need only the config text (and the label maps it names)."""

from __future__ import annotations

import re

from train.files import windows_hint
from train.pipeline import extractors, fields, labelmap
from train.preflight.findings import ERROR, INFO, WARNING, Edit, Finding

_PLACEHOLDER = re.compile(r"PATH_TO_BE_CONFIGURED|\$\{\w+\}|\$[A-Z_][A-Z0-9_]*")

# Which flag fills which path field, for the fix text.
_FLAG_FOR = {
    "fine_tune_checkpoint": "--checkpoint",
    "label_map_path": "--label_map",
    "input_path": "--train_input_path / --eval_input_path",
}


def _string_fields(message, prefix=""):
    """Yields (dotted path, leaf name, value) for every string field set in `message`."""
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.type == field.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                if isinstance(item, str):
                    yield f"{path}[{key!r}]", field.name, item
                elif hasattr(item, "ListFields"):
                    yield from _string_fields(item, f"{path}[{key!r}].")
        elif field.type == field.TYPE_MESSAGE:
            items = value if fields.is_repeated(field) else [value]
            for i, item in enumerate(items):
                sub = f"{path}[{i}]." if fields.is_repeated(field) else f"{path}."
                yield from _string_fields(item, sub)
        elif field.type == field.TYPE_STRING:
            items = value if fields.is_repeated(field) else [value]
            for i, item in enumerate(items):
                leaf = f"{path}[{i}]" if fields.is_repeated(field) else path
                yield leaf, field.name, item


def check_placeholders(ctx):
    """PLACEHOLDER: zoo `PATH_TO_BE_CONFIGURED`, unexpanded `${VAR}`, empty required paths."""
    seen: dict[tuple[str, str], int] = {}
    options = ctx.options
    # The eval readers are read by --eval, the final evaluation and the export's verification
    # only: raw train_loop trains a zoo config whose eval paths are still placeholders.
    eval_unread = not (options.eval or options.final_eval or options.export)
    for path, name, value in _string_fields(ctx.config):
        if _PLACEHOLDER.search(value):
            flag = _FLAG_FOR.get(name)
            how = f"pass {flag}, or set it in the config" if flag else "set it in the config"
            nth = seen.get((name, value), 0)
            seen[(name, value)] = nth + 1
            unread = eval_unread and path.startswith("eval_input_reader")
            yield ctx.finding_at(
                name,
                "PLACEHOLDER.unread" if unread else "PLACEHOLDER",
                WARNING if unread else ERROR,
                f"{path} is still a placeholder: {value!r}"
                + ("; nothing reads it in this run (--nofinal_eval, no --eval)" if unread else ""),
                f"{how} to the real path"
                + (" before evaluating or exporting this run" if unread else ""),
                value=value,
                nth=nth,
            )
    tc = ctx.train_config
    if tc.HasField("fine_tune_checkpoint") and not tc.fine_tune_checkpoint.strip():
        yield ctx.finding_at(
            "fine_tune_checkpoint",
            "PLACEHOLDER.empty",
            ERROR,
            "train_config.fine_tune_checkpoint is empty",
            "pass --checkpoint PATH/ckpt-0, or delete the field to train from scratch",
        )
    if not fields.input_paths(ctx.config.train_input_reader):
        yield Finding(
            "PLACEHOLDER.empty",
            ERROR,
            f"{ctx.source.path}: train_input_reader has no tf_record_input_reader.input_path",
            "pass --train_input_path 'DIR/train*.record', or set it in the config",
            file=ctx.source.path,
            line=ctx.line("train_input_reader"),
        )


def check_checkpoint_version(ctx):
    """CKPT_VERSION: the proto default is V1, which the TF2 loop rejects."""
    tc = ctx.train_config
    if not tc.HasField("fine_tune_checkpoint"):
        return
    current = fields.display(ctx.config, "train_config.fine_tune_checkpoint_version")
    if current != "V2":
        yield ctx.finding_at(
            "fine_tune_checkpoint_version",
            "CKPT_VERSION",
            ERROR,
            "train_config.fine_tune_checkpoint_version "
            f"is {current} (the proto default is V1); the TF2 loop fails with "
            "'Checkpoint version should be V2'",
            "set fine_tune_checkpoint_version: V2",
            edits=(
                Edit(
                    "train_config.fine_tune_checkpoint_version",
                    "V2",
                    "TF2 checkpoints are V2; the default V1 is rejected",
                ),
            ),
        )


# Fields model_lib_v2 never reads (TF1 trainer only), or reads only to reject / override.
_IGNORED = {
    "sync_replicas": "TF1 SyncReplicasOptimizer; TF2 distribution strategies always sync",
    "replicas_to_aggregate": "TF1 SyncReplicasOptimizer only",
    "startup_delay_steps": "TF1 trainer only",
    "batch_queue_capacity": "TF1 input queues only",
    "num_batch_queue_threads": "TF1 input queues only",
    "prefetch_queue_capacity": "TF1 input queues only",
    "bias_grad_multiplier": "TF1 trainer only",
    "from_detection_checkpoint": "deprecated; fine_tune_checkpoint_type says the same explicitly",
    "use_bfloat16": "forced off unless training on TPU",
}


def check_ignored_fields(ctx):
    """IGNORED_FIELD: TF1-only fields the TF2 loop silently ignores, or rejects."""
    tc = ctx.train_config
    if tc.load_all_detection_checkpoint_vars:
        yield ctx.finding_at(
            "load_all_detection_checkpoint_vars",
            "IGNORED_FIELD",
            ERROR,
            "train_config.load_all_detection_checkpoint_vars: true is rejected by the TF2 loop "
            "('unsupported in TF2')",
            'delete it; fine_tune_checkpoint_type: "full" restores every variable in TF2',
            edits=(
                Edit(
                    "train_config.load_all_detection_checkpoint_vars",
                    None,
                    "rejected by the TF2 loop",
                ),
            ),
        )
    elif tc.HasField("load_all_detection_checkpoint_vars"):
        yield ctx.finding_at(
            "load_all_detection_checkpoint_vars",
            "IGNORED_FIELD",
            INFO,
            "train_config.load_all_detection_checkpoint_vars: false has no effect in TF2",
            "delete it",
            edits=(Edit("train_config.load_all_detection_checkpoint_vars", None, "no effect"),),
        )
    if ctx.config.HasField("graph_rewriter"):
        yield ctx.finding_at(
            "graph_rewriter",
            "IGNORED_FIELD.graph_rewriter",
            WARNING,
            "graph_rewriter (TF1 quantization-aware training) is "
            "ignored by the TF2 training loop: this run trains in float",
            "delete it; for a quantized model, convert the trained model with the TFLite converter",
            edits=(Edit("graph_rewriter", None, "ignored by TF2: TF1 quantization rewrite"),),
        )
    for name, why in _IGNORED.items():
        if not fields.has(ctx.config, f"train_config.{name}"):
            continue
        severity = WARNING if getattr(tc, name) is True else INFO
        fix = "delete it"
        if name == "use_bfloat16" and tc.use_bfloat16:
            fix = "delete it; bfloat16 is applied only on TPU, so this run trains in float32"
        yield ctx.finding_at(
            name,
            f"IGNORED_FIELD.{name}",
            severity,
            f"train_config.{name} is ignored by the TF2 training loop ({why})",
            fix,
            edits=(Edit(f"train_config.{name}", None, f"ignored by TF2: {why}"),),
        )


def check_freezing(ctx):
    """FREEZE: what freeze_variables / update_trainable_variables / --freeze will do.

    The TF2 loop alone ignores the two fields; the driver's training child applies them
    (train.pipeline.freezing). A pattern that matches no variable can only be told once the
    model is built: the run warns then (FREEZE.no_match).
    """
    from train.pipeline import freezing

    flag = getattr(ctx.options, "freeze", "")
    the_rule = freezing.rule(ctx.train_config, flag)
    for name in ("update_trainable_variables", "freeze_variables"):
        patterns = [p for p in getattr(ctx.train_config, name) if p]
        if not patterns:
            continue
        if flag == "none":
            message = f"train_config.{name} {patterns} is overridden by --freeze none: every "
            message += "variable trains"
        else:
            what = (
                "only variables matching"
                if name == "update_trainable_variables"
                else ("no variable matching")
            )
            message = (
                f"train_config.{name} {patterns}: {what} them trains (applied by the driver's "
                "training child; the OD API's TF2 loop alone ignores this field); a pattern "
                "that matches no variable is warned about when training starts"
            )
        yield ctx.finding_at(
            name,
            f"FREEZE.{name}",
            INFO,
            message,
            "nothing to do; --freeze none trains every variable, --freeze backbone freezes the "
            "backbone whatever the patterns",
        )
    if the_rule.components:
        arch = ctx.config.model.WhichOneof("model")
        model = getattr(ctx.config.model, arch) if arch else None
        batchnorm = ""
        if model is not None and "freeze_batchnorm" in model.DESCRIPTOR.fields_by_name:
            batchnorm = (
                " (batch-norm statistics follow the model's freeze_batchnorm: "
                f"{str(model.freeze_batchnorm).lower()})"
            )
        yield Finding(
            "FREEZE.components",
            INFO,
            f"--freeze {','.join(the_rule.components)}: those components' trainable variables "
            f"are not trained{batchnorm}",
            "nothing to do; the run prints what trains when it starts",
        )


def check_tf1_config(ctx):
    """TF1_CONFIG: a feature extractor only the TF1 OD API has."""
    arch = fields.meta_arch(ctx.config)
    extractor = fields.feature_extractor_type(ctx.config)
    if arch is None:
        yield Finding(
            "PARSE.no_model",
            ERROR,
            f"{ctx.source.path}: the config has no model {{ ... }} block",
            "start from a TF2 zoo config (configs/tf2/ in tensorflow/models)",
            file=ctx.source.path,
        )
        return
    tc = ctx.train_config
    tf1_era = [
        reason
        for reason, present in (
            ("from_detection_checkpoint", tc.HasField("from_detection_checkpoint")),
            ("a TF1 'model.ckpt' checkpoint name", tc.fine_tune_checkpoint.endswith("model.ckpt")),
        )
        if present
    ]
    if tf1_era and not tc.HasField("fine_tune_checkpoint_version"):
        yield ctx.finding_at(
            "train_config",
            "TF1_CONFIG.tf1_era",
            WARNING,
            "this config was written for the TF1 OD API "
            f"({', '.join(tf1_era)}, no fine_tune_checkpoint_version)",
            "start from the TF2 zoo config of this model (configs/tf2/) and a TF2 checkpoint",
        )
    if not extractor or arch not in extractors.TF2 or extractor in extractors.TF2[arch]:
        return
    if extractor in extractors.TF1_TO_TF2:
        yield ctx.finding_at(
            "type",
            "TF1_CONFIG",
            ERROR,
            f"model.{arch}.feature_extractor.type {extractor!r} exists only "
            f"in the TF1 OD API; the TF2 loop fails with '{extractor} is not supported for tf "
            "version 2'",
            f"use a TF2 zoo config; the TF2 equivalent is {extractors.TF1_TO_TF2[extractor]!r}",
        )
        return
    close = extractors.suggest(arch, extractor)
    yield ctx.finding_at(
        "type",
        "TF1_CONFIG.unknown_extractor",
        ERROR,
        f"model.{arch}.feature_extractor.type {extractor!r} is not a feature "
        "extractor of the installed OD API (TF1 or TF2)",
        f"use {close!r}" if close else f"use one of: {', '.join(sorted(extractors.TF2[arch]))}",
    )


def check_label_maps(ctx):
    """LABEL_MAP: unreadable map, id 0, duplicate ids or names, train/eval maps differ."""
    for path, value in ctx.label_maps.items():
        if isinstance(value, str):
            missing = value == "does not exist"
            yield ctx.finding_at(
                "label_map_path",
                "LABEL_MAP.missing" if missing else "LABEL_MAP",
                ERROR,
                f"label_map_path {path!r} {value}{windows_hint(path) if missing else ''}",
                "pass --label_map PATH (sets every reader), or fix label_map_path",
                value=path,
            )
            continue
        if not value.items:
            yield Finding(
                "LABEL_MAP.empty",
                ERROR,
                f"{path}: label map has no items",
                "add one `item { id: N name: '...' }` per class, ids from 1",
                file=path,
            )
        if 0 in value.ids:
            yield Finding(
                "LABEL_MAP.id0",
                ERROR,
                f"{path}: label map uses id 0, which is reserved for the background class",
                "number the classes from 1",
                file=path,
            )
        negative = sorted({i for i in value.ids if i < 0})
        huge = sorted({i for i in value.ids if i > labelmap.MAX_ID})
        found = [f"negative ids {negative[:5]}"] if negative else []
        if huge:
            found.append(
                f"ids above {labelmap.MAX_ID} {huge[:5]} (the class head gets one output per id "
                "up to the highest, so such an id is almost always a typo or another dataset's "
                "numbering)"
            )
        if found:
            yield Finding(
                "LABEL_MAP.id_range",
                ERROR,
                f"{path}: label map ids must be 1..N, found {'; '.join(found)}",
                "number the classes 1, 2, ..., N (N = the number of classes)",
                file=path,
            )
        dup_ids = sorted({i for i in value.ids if value.ids.count(i) > 1})
        dup_names = sorted({n for n in value.names if value.names.count(n) > 1})
        if dup_ids:
            yield Finding(
                "LABEL_MAP.duplicate_id",
                ERROR,
                f"{path}: duplicate ids {dup_ids}",
                "give every class its own id",
                file=path,
            )
        if dup_names:
            yield Finding(
                "LABEL_MAP.duplicate_name",
                ERROR,
                f"{path}: duplicate names {dup_names}",
                "give every class its own name",
                file=path,
            )
    maps = [v for v in ctx.label_maps.values() if not isinstance(v, str)]
    if len(maps) > 1 and any(set(m.items) != set(maps[0].items) for m in maps[1:]):
        yield Finding(
            "LABEL_MAP.train_eval_differ",
            WARNING,
            f"train and eval label maps differ: {', '.join(m.path for m in maps)}",
            "use the same label map for training and evaluation (--label_map sets both)",
        )


def check_num_classes(ctx):
    """NUM_CLASSES: num_classes must equal the label map's highest id."""
    path = fields.num_classes_path(ctx.config)
    label_map = ctx.train_label_map
    if path is None:
        return
    current = fields.get(ctx.config, path)
    if label_map is None:  # no usable label map: the config's own value must be sane
        if not 1 <= current <= labelmap.MAX_ID:
            yield ctx.finding_at(
                "num_classes",
                "NUM_CLASSES.range",
                ERROR,
                f"{path} is {current}: it must be 1..{labelmap.MAX_ID} (the class head has one "
                "output per class)",
                "set num_classes to the number of classes in your label map (or pass "
                "--label_map and it is set for you)",
            )
        return
    wanted = label_map.max_id
    if current == wanted:
        return
    fixable = ctx.options.num_classes is None  # never silently override the user's flag
    yield ctx.finding_at(
        "num_classes",
        "NUM_CLASSES",
        ERROR,
        f"{path} is {current} but the label map {label_map.path} has "
        f"{len(label_map.items)} classes (highest id {wanted})"
        + ("" if fixable else f" and --num_classes={ctx.options.num_classes} was given"),
        f"set num_classes: {wanted}" + ("" if fixable else " (or drop --num_classes)"),
        edits=(Edit(path, wanted, f"label map {label_map.path} has ids 1..{wanted}"),)
        if fixable
        else (),
    )


def check_learning_rate(ctx):
    """LR_SCHEDULE: cosine schedule vs num_steps, warmup vs total, base vs warmup rate."""
    optimizer = ctx.train_config.optimizer
    which = optimizer.WhichOneof("optimizer")
    if which is None:
        return
    learning_rate = getattr(optimizer, which).learning_rate
    if learning_rate.WhichOneof("learning_rate") != "cosine_decay_learning_rate":
        return
    cosine = learning_rate.cosine_decay_learning_rate
    steps = ctx.num_train_steps
    if cosine.warmup_steps > cosine.total_steps:
        yield ctx.finding_at(
            "cosine_decay_learning_rate",
            "LR_SCHEDULE.warmup",
            ERROR,
            f"warmup_steps {cosine.warmup_steps} > total_steps {cosine.total_steps}; the "
            "OD API fails with 'total_steps must be larger or equal to warmup_steps'",
            f"set warmup_steps <= total_steps (e.g. {cosine.total_steps // 10})",
        )
    if cosine.learning_rate_base < cosine.warmup_learning_rate:
        yield ctx.finding_at(
            "cosine_decay_learning_rate",
            "LR_SCHEDULE.base",
            ERROR,
            f"learning_rate_base {cosine.learning_rate_base:g} < warmup_learning_rate "
            f"{cosine.warmup_learning_rate:g}; the OD API rejects it",
            "make warmup_learning_rate at most learning_rate_base",
        )
    if steps and cosine.total_steps and steps > cosine.total_steps:
        yield ctx.finding_at(
            "cosine_decay_learning_rate",
            "LR_SCHEDULE.total_steps",
            WARNING,
            f"num_train_steps {steps} > cosine total_steps {cosine.total_steps}: the "
            f"learning rate is 0 for the last {steps - cosine.total_steps} steps",
            f"set total_steps: {steps}",
        )
    elif steps and steps <= cosine.warmup_steps:
        yield ctx.finding_at(
            "cosine_decay_learning_rate",
            "LR_SCHEDULE.in_warmup",
            INFO,
            f"the whole run ({steps} steps) stays in the {cosine.warmup_steps}-step "
            "warm-up of the cosine schedule",
            "fine for a smoke test; for real training set total_steps and warmup_steps to fit "
            "num_train_steps",
        )


def check_batch(ctx):
    """BATCH: global batch vs replicas, and TPU-sized zoo batches on CPU/GPU.

    Not with --batch_size auto: the batch is then measured to fit, a multiple of the replicas.
    """
    if ctx.options.batch_size_auto:
        return
    batch = ctx.train_config.batch_size
    replicas = ctx.replicas
    if batch == 0:
        yield ctx.finding_at(
            "batch_size",
            "BATCH.zero",
            ERROR,
            "train_config.batch_size is 0: every step would train on no image",
            f"pass --batch_size {8 * replicas} (8 per replica is a safe start)",
        )
        return
    if batch and replicas > 1 and batch % replicas:
        yield ctx.finding_at(
            "batch_size",
            "BATCH.replicas",
            ERROR,
            f"batch_size {batch} is not divisible by the {replicas} "
            "replicas this run will use (the OD API fails at the first step)",
            f"pass --batch_size {max(replicas, batch - batch % replicas)}",
        )
    per_replica = batch // max(1, replicas)
    if per_replica >= 64:
        device = "GPU" if ctx.training_gpus else "CPU"
        yield ctx.finding_at(
            "batch_size",
            "BATCH.tpu_sized",
            WARNING,
            f"batch_size {batch} ({per_replica} per {device}) is a "
            "TPU pod batch from the zoo config; it will likely run out of memory",
            "pass --batch_size 8 (to 16 per GPU) and scale learning_rate_base (and the warm-up "
            "rate) down by the same factor",
        )


MAX_BATCH = 1 << 16  # images in one step: beyond any machine's memory at any input size
MAX_STEPS = 10**9  # at 100 steps/s, four months of training
MAX_AUGMENTATIONS = 1000  # zoo configs use 1 to 6; each runs on every image of every step


def check_bounds(ctx):
    """CONFIG.absurd: values no run can complete (a typo, an overflowed script variable)."""
    tc = ctx.train_config
    bounds = (
        ("batch_size", tc.batch_size, MAX_BATCH, "images in one step: no machine holds that"),
        ("num_steps", tc.num_steps, MAX_STEPS, "steps: at 100 steps/s more than 4 months"),
        (
            "data_augmentation_options",
            len(tc.data_augmentation_options),
            MAX_AUGMENTATIONS,
            "augmentation blocks, each run on every image of every step (zoo configs: 1-6)",
        ),
    )
    for field, value, bound, why in bounds:
        if value > bound:
            yield ctx.finding_at(
                field,
                "CONFIG.absurd",
                ERROR,
                f"train_config.{field}: {value} {why} (the bound is {bound})",
                f"set {field} to a value a run can reach"
                + (
                    " (--num_train_steps, --batch_size)"
                    if field != "data_augmentation_options"
                    else ""
                ),
            )
