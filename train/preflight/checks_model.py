"""Checks that mirror the OD API's own build-time validations, from the config alone.

The OD API validates a config while it builds the model (model_builder, the anchor generator,
box predictor, post-processing, loss and image resizer builders) or its input pipeline: 20 to
60 s into a run, with messages that name no field ("Number of feature maps is expected to equal
the length of `num_anchors_per_location`"). Each rule here is the same condition, read from the
config without TensorFlow, reported with the field's line and the value that would build. What
a config cannot show (a custom extractor's layer count, the records' contents beyond the sample)
is left to `--rehearse`; docs/preflight.md's validations table lists which is which.
"""

from __future__ import annotations

from train.pipeline import fields, labelmap
from train.preflight.findings import ERROR, Edit

# Feature maps each SSD extractor feeds the box predictor (models/ssd_*_keras_feature_extractor).
_SSD_FIXED_LAYERS = {"ssd_mobilenet_v1_keras": 6, "ssd_mobilenet_v2_keras": 6}


def _pyramid(extractor) -> tuple[str, int, int] | None:
    """("FPN" | "BiFPN", min level, max level) of an SSD extractor's feature pyramid, if any."""
    if extractor.type.startswith("ssd_efficientnet-") and extractor.type.endswith("_bifpn_keras"):
        return "BiFPN", extractor.bifpn.min_level, extractor.bifpn.max_level
    if extractor.type.endswith("_fpn_keras"):
        return "FPN", extractor.fpn.min_level, extractor.fpn.max_level
    return None


def ssd_feature_maps(ssd) -> tuple[int, str] | None:
    """(feature maps the extractor produces, what decides it), or None when not known."""
    extractor = ssd.feature_extractor
    if extractor.type in _SSD_FIXED_LAYERS:
        return _SSD_FIXED_LAYERS[extractor.type], f"{extractor.type} has 6 feature maps"
    pyramid = _pyramid(extractor)
    if pyramid:
        kind, low, high = pyramid
        return high - low + 1, f"its {kind} levels {low}-{high}"
    return None


def ssd_anchor_layers(ssd) -> tuple[int, str, str] | None:
    """(layers the anchor generator expects, its field, the field's name), or None."""
    generator = ssd.anchor_generator
    which = generator.WhichOneof("anchor_generator_oneof")
    if which == "ssd_anchor_generator":
        return (
            generator.ssd_anchor_generator.num_layers,
            "ssd_anchor_generator.num_layers",
            "num_layers",
        )
    if which == "multiscale_anchor_generator":
        multi = generator.multiscale_anchor_generator
        return (
            multi.max_level - multi.min_level + 1,
            f"multiscale_anchor_generator levels {multi.min_level}-{multi.max_level}",
            "multiscale_anchor_generator",
        )
    if which == "flexible_grid_anchor_generator":
        grids = len(generator.flexible_grid_anchor_generator.anchor_grid)
        return grids, "flexible_grid_anchor_generator.anchor_grid", "anchor_grid"
    return None


def check_ssd_anchors(ctx):
    """MODEL.anchor_layers / MODEL.anchors_per_location: SSD anchors vs feature maps."""
    if fields.meta_arch(ctx.config) != "ssd":
        return
    ssd = ctx.config.model.ssd
    maps, anchors = ssd_feature_maps(ssd), ssd_anchor_layers(ssd)
    if maps and anchors and maps[0] != anchors[0]:
        count, why = maps
        layers, what, field = anchors
        if field == "num_layers":
            fix = f"set anchor_generator.ssd_anchor_generator.num_layers: {count}"
            edits = (
                Edit(
                    "model.ssd.anchor_generator.ssd_anchor_generator.num_layers",
                    count,
                    "match the feature maps",
                ),
            )
        elif field == "multiscale_anchor_generator":
            pyramid = _pyramid(ssd.feature_extractor)
            fix = (
                f"set multiscale_anchor_generator min_level: {pyramid[1]} and max_level: "
                f"{pyramid[2]}"
                if pyramid
                else f"give multiscale_anchor_generator {count} levels (max_level - min_level + 1)"
            )
            edits = ()
        else:
            fix = f"give anchor_grid one entry per feature map ({count})"
            edits = ()
        yield ctx.finding_at(
            field,
            "MODEL.anchor_layers",
            ERROR,
            f"the anchor generator has {layers} layers ({what}) but the feature extractor makes "
            f'{count} feature maps ({why}); the model fails to build ("Number of feature maps '
            'is expected to equal the length of `num_anchors_per_location`")',
            fix,
            edits=edits,
        )
    generator = ssd.anchor_generator
    if (
        ssd.box_predictor.WhichOneof("box_predictor_oneof")
        == "weight_shared_convolutional_box_predictor"
        and generator.WhichOneof("anchor_generator_oneof") == "ssd_anchor_generator"
    ):
        ssd_anchors = generator.ssd_anchor_generator
        others = len(ssd_anchors.aspect_ratios) + (ssd_anchors.interpolated_scale_aspect_ratio > 0)
        if ssd_anchors.reduce_boxes_in_lowest_layer and others != 3:
            yield ctx.finding_at(
                "reduce_boxes_in_lowest_layer"
                if ctx.line("reduce_boxes_in_lowest_layer") is not None
                else "ssd_anchor_generator",
                "MODEL.anchors_per_location",
                ERROR,
                f"ssd_anchor_generator gives the lowest layer 3 anchors per location "
                f"(reduce_boxes_in_lowest_layer) and the others {others}; the weight-shared box "
                "predictor needs the same number on every layer (the model fails to build)",
                "set reduce_boxes_in_lowest_layer: false in ssd_anchor_generator",
                edits=(
                    Edit(
                        "model.ssd.anchor_generator.ssd_anchor_generator.reduce_boxes_in_lowest_layer",
                        False,
                        "the weight-shared predictor needs equal anchors per layer",
                    ),
                ),
            )


# The smallest input each SSD extractor accepts (its `shape_utils.check_min_image_dim`).
_SSD_MIN_IMAGE = {"ssd_efficientnet-": 129, "ssd_resnet": 129, "ssd_mobilenet": 33}


def check_ssd_image_size(ctx):
    """MODEL.image_size: a fixed_shape_resizer smaller than the SSD extractor accepts."""
    if fields.meta_arch(ctx.config) != "ssd":
        return
    ssd = ctx.config.model.ssd
    minimum = next(
        (
            size
            for prefix, size in _SSD_MIN_IMAGE.items()
            if ssd.feature_extractor.type.startswith(prefix)
        ),
        None,
    )
    resizer = ssd.image_resizer
    if minimum is None or resizer.WhichOneof("image_resizer_oneof") != "fixed_shape_resizer":
        return
    fixed = resizer.fixed_shape_resizer
    if min(fixed.height, fixed.width) < minimum:
        yield ctx.finding_at(
            "fixed_shape_resizer",
            "MODEL.image_size",
            ERROR,
            f"fixed_shape_resizer {fixed.height}x{fixed.width} is smaller than the "
            f"{ssd.feature_extractor.type} extractor accepts ({minimum}x{minimum}); the model "
            f'fails on its first image ("image size must be >= {minimum}")',
            f"set height and width to at least {minimum}",
        )


# (meta-architecture, field, its oneof): the builders raise "Empty anchor generator.",
# "Empty box coder.", "Empty matcher.", "Unknown box predictor" ... when one is not chosen.
_REQUIRED = (
    ("ssd", "image_resizer", "image_resizer_oneof"),
    ("ssd", "anchor_generator", "anchor_generator_oneof"),
    ("ssd", "box_coder", "box_coder_oneof"),
    ("ssd", "matcher", "matcher_oneof"),
    ("ssd", "similarity_calculator", "region_similarity"),
    ("ssd", "box_predictor", "box_predictor_oneof"),
    ("faster_rcnn", "image_resizer", "image_resizer_oneof"),
    ("faster_rcnn", "first_stage_anchor_generator", "anchor_generator_oneof"),
    ("faster_rcnn", "second_stage_box_predictor", "box_predictor_oneof"),
    ("center_net", "image_resizer", "image_resizer_oneof"),
)


def check_required_parts(ctx):
    """MODEL.missing / MODEL.tf1_only: a part the builders need is not chosen, or is TF1 only."""
    arch = fields.meta_arch(ctx.config)
    message = fields.model_message(ctx.config)
    for meta, field, oneof in _REQUIRED:
        if arch == meta and getattr(message, field).WhichOneof(oneof) is None:
            yield ctx.finding_at(
                field if ctx.line(field) is not None else arch,
                "MODEL.missing",
                ERROR,
                f"model.{arch}.{field} chooses no kind; the model fails to build (the OD API's "
                f"builder raises for an empty {field})",
                f"set {field} as the zoo config of this architecture does",
            )
    if arch == "ssd" and message.matcher.WhichOneof("matcher_oneof") == "bipartite_matcher":
        yield ctx.finding_at(
            "bipartite_matcher",
            "MODEL.tf1_only",
            ERROR,
            'bipartite_matcher is TF1 only ("bipartite_matcher is not supported in TF 2.X")',
            "use argmax_matcher (as every TF2 zoo SSD config does)",
        )


def _nms_messages(ctx):
    """(field path, NMS message) for every batch_non_max_suppression block the model has."""
    arch = fields.meta_arch(ctx.config)
    if arch == "ssd":
        yield (
            "model.ssd.post_processing.batch_non_max_suppression",
            ctx.config.model.ssd.post_processing.batch_non_max_suppression,
        )
    elif arch == "faster_rcnn":
        processing = ctx.config.model.faster_rcnn.second_stage_post_processing
        yield (
            "model.faster_rcnn.second_stage_post_processing.batch_non_max_suppression",
            processing.batch_non_max_suppression,
        )


def check_post_processing(ctx):
    """MODEL.nms: the post-processing builder's NMS rules (iou range, detection counts)."""
    for path, nms in _nms_messages(ctx):
        problems = []
        if not 0.0 <= nms.iou_threshold <= 1.0:
            problems.append(
                (
                    "iou_threshold",
                    f"iou_threshold {fields.float_text(nms.iou_threshold)} is not in [0, 1]",
                    "set iou_threshold: 0.6",
                    Edit(f"{path}.iou_threshold", 0.6, "NMS IoU must be in [0, 1]"),
                )
            )
        if nms.max_detections_per_class > nms.max_total_detections:
            problems.append(
                (
                    "max_detections_per_class",
                    f"max_detections_per_class {nms.max_detections_per_class} is greater than "
                    f"max_total_detections {nms.max_total_detections}",
                    f"set max_detections_per_class: {nms.max_total_detections}",
                    Edit(
                        f"{path}.max_detections_per_class",
                        nms.max_total_detections,
                        "no more than max_total_detections",
                    ),
                )
            )
        if nms.soft_nms_sigma < 0:
            problems.append(
                (
                    "soft_nms_sigma",
                    f"soft_nms_sigma {nms.soft_nms_sigma} is negative",
                    "set soft_nms_sigma: 0.0 (off) or a positive value",
                    None,
                )
            )
        if nms.use_combined_nms and nms.use_class_agnostic_nms:
            problems.append(
                (
                    "use_combined_nms",
                    "use_combined_nms and use_class_agnostic_nms are both true",
                    "set use_combined_nms: false",
                    None,
                )
            )
        for field, message, fix, edit in problems:
            yield ctx.finding_at(
                field,
                "MODEL.nms",
                ERROR,
                f"{path}: {message}; the model fails to build",
                fix,
                edits=(edit,) if edit else (),
            )


def check_faster_rcnn(ctx):
    """MODEL.proposals / MODEL.inplace_batchnorm / MODEL.nms: Faster R-CNN build rules."""
    if fields.meta_arch(ctx.config) != "faster_rcnn":
        return
    frcnn = ctx.config.model.faster_rcnn
    if frcnn.second_stage_batch_size > frcnn.first_stage_max_proposals:
        stated = ctx.line("second_stage_batch_size") is not None
        yield ctx.finding_at(
            "second_stage_batch_size" if stated else "first_stage_max_proposals",
            "MODEL.proposals",
            ERROR,
            f"second_stage_batch_size {frcnn.second_stage_batch_size}"
            f"{'' if stated else ' (the default)'} is greater than first_stage_max_proposals "
            f"{frcnn.first_stage_max_proposals}; the model fails to build for training "
            '("second_stage_batch_size should be no greater than first_stage_max_proposals")',
            f"set second_stage_batch_size: {frcnn.first_stage_max_proposals} in faster_rcnn",
            edits=(
                Edit(
                    "model.faster_rcnn.second_stage_batch_size",
                    frcnn.first_stage_max_proposals,
                    "no more proposals can be sampled than the first stage keeps",
                ),
            ),
        )
    if not 0.0 <= frcnn.first_stage_nms_iou_threshold <= 1.0:
        yield ctx.finding_at(
            "first_stage_nms_iou_threshold",
            "MODEL.nms",
            ERROR,
            "first_stage_nms_iou_threshold "
            f"{fields.float_text(frcnn.first_stage_nms_iou_threshold)} is not in "
            "[0, 1]; the model fails to build",
            "set first_stage_nms_iou_threshold: 0.7",
        )
    if frcnn.inplace_batchnorm_update:
        yield ctx.finding_at(
            "inplace_batchnorm_update",
            "MODEL.inplace_batchnorm",
            ERROR,
            "inplace_batchnorm_update: true is not supported by the TF2 Faster R-CNN builder "
            '("inplace batchnorm updates not supported.")',
            "remove inplace_batchnorm_update (or set it false)",
            edits=(Edit("model.faster_rcnn.inplace_batchnorm_update", None, "TF1 only"),),
        )


def check_losses_and_resizer(ctx):
    """MODEL.loss / MODEL.resizer: the loss and image resizer builders' rules."""
    arch = fields.meta_arch(ctx.config)
    if arch == "ssd":
        loss = ctx.config.model.ssd.loss
        focal = (
            loss.classification_loss.WhichOneof("classification_loss") == "weighted_sigmoid_focal"
        )
        if loss.HasField("hard_example_miner") and focal:
            yield ctx.finding_at(
                "hard_example_miner",
                "MODEL.loss",
                ERROR,
                "hard_example_miner is set with weighted_sigmoid_focal loss; the loss builder "
                'refuses the pair ("HardExampleMiner should not be used with sigmoid focal loss")',
                "remove the hard_example_miner block (focal loss already weights hard examples)",
                edits=(Edit("model.ssd.loss.hard_example_miner", None, "not with focal loss"),),
            )
    message = fields.model_message(ctx.config)
    if message is None or not hasattr(message, "image_resizer"):
        return
    resizer = message.image_resizer
    which = resizer.WhichOneof("image_resizer_oneof")
    keep = resizer.keep_aspect_ratio_resizer
    if which == "keep_aspect_ratio_resizer" and keep.min_dimension > keep.max_dimension:
        yield ctx.finding_at(
            "min_dimension",
            "MODEL.resizer",
            ERROR,
            f"keep_aspect_ratio_resizer min_dimension {keep.min_dimension} is greater than "
            f"max_dimension {keep.max_dimension}; the model fails to build",
            f"set min_dimension: {keep.max_dimension} (or raise max_dimension)",
        )
    if which == "fixed_shape_resizer" and 0 in (
        resizer.fixed_shape_resizer.height,
        resizer.fixed_shape_resizer.width,
    ):
        yield ctx.finding_at(
            "fixed_shape_resizer",
            "MODEL.resizer",
            ERROR,
            "fixed_shape_resizer has a height or width of 0",
            "set height and width (e.g. 320 and 320)",
        )


def keypoint_tasks(config) -> list:
    """The model's CenterNet keypoint tasks (none for other meta-architectures)."""
    return (
        list(config.model.center_net.keypoint_estimation_task)
        if fields.meta_arch(config) == "center_net"
        else []
    )


def predicts_masks(config) -> str | None:
    """The field that makes the model predict instance masks, or None."""
    arch = fields.meta_arch(config)
    if arch == "faster_rcnn":
        predictor = config.model.faster_rcnn.second_stage_box_predictor
        if predictor.mask_rcnn_box_predictor.predict_instance_masks:
            return "predict_instance_masks"
    if arch == "center_net" and config.model.center_net.HasField("mask_estimation_task"):
        return "mask_estimation_task"
    if arch == "center_net" and config.model.center_net.HasField("deepmac_mask_estimation"):
        return "deepmac_mask_estimation"
    return None


def check_keypoints_and_masks(ctx):
    """MODEL.keypoints / MODEL.masks: what the model's tasks need from the input readers."""
    config = ctx.config
    tasks = keypoint_tasks(config)
    reader = config.train_input_reader
    if reader.num_keypoints and not tasks:
        yield ctx.finding_at(
            "num_keypoints",
            "MODEL.keypoints",
            ERROR,
            f"train_input_reader asks for num_keypoints: {reader.num_keypoints} but the model "
            f"({fields.meta_arch(config)}) has no keypoint task: every record must then hold "
            "that many keypoints per box, for nothing (records without them fail with "
            '"indices[0] = 0 is not in [0, 0)")',
            "remove num_keypoints from the input readers",
            edits=tuple(
                Edit(f"{path}.num_keypoints", None, "the model has no keypoint task")
                for path, r in fields.input_readers(config)
                if r.num_keypoints
            ),
        )
    if tasks:
        yield from _keypoint_task_problems(ctx, tasks, reader)
    masks = predicts_masks(config)
    loading = [path for path, r in fields.input_readers(config) if r.load_instance_masks]
    if loading and not masks:
        yield ctx.finding_at(
            "load_instance_masks",
            "MODEL.masks_unused",
            ERROR,
            f"{', '.join(loading)} load instance masks (load_instance_masks: true) but the model "
            f"({fields.meta_arch(config)}) predicts none: every record must then hold a mask per "
            "box, for nothing",
            "remove load_instance_masks from the input readers",
            edits=tuple(
                Edit(f"{path}.load_instance_masks", None, "the model predicts no masks")
                for path in loading
            ),
        )
    if masks and masks != "deepmac_mask_estimation" and not reader.load_instance_masks:
        yield ctx.finding_at(
            masks,
            "MODEL.masks",
            ERROR,
            f"the model predicts instance masks ({masks}) but train_input_reader does not load "
            "them (load_instance_masks is false): training fails for want of groundtruth masks",
            "set load_instance_masks: true and mask_type: PNG_MASKS in train_input_reader "
            "(the records need image/object/mask), or remove the mask head",
        )


def _keypoint_task_problems(ctx, tasks, reader):
    center_net = ctx.config.model.center_net
    path = center_net.keypoint_label_map_path
    if not path:
        yield ctx.finding_at(
            "keypoint_estimation_task",
            "MODEL.keypoints",
            ERROR,
            "center_net has a keypoint_estimation_task but no keypoint_label_map_path; the model "
            "fails to build",
            "set keypoint_label_map_path to a label map whose items list their keypoints",
        )
        return
    if fields.PLACEHOLDER in path:
        return  # check_placeholders reports it
    try:
        keypoint_map = labelmap.load(path)
    except labelmap.LabelMapError as e:
        yield ctx.finding_at(
            "keypoint_label_map_path",
            "MODEL.keypoints",
            ERROR,
            f"keypoint_label_map_path {path}: {e}",
            "point keypoint_label_map_path at a readable label map with keypoints",
        )
        return
    indices: list[int] = []
    for task in tasks:
        ids = keypoint_map.keypoints.get(task.keypoint_class_name)
        if ids is None:
            have = ", ".join(sorted(keypoint_map.keypoints)) or "none"
            yield ctx.finding_at(
                "keypoint_class_name",
                "MODEL.keypoints",
                ERROR,
                f"keypoint task {task.task_name!r}: class {task.keypoint_class_name!r} has no "
                f"keypoints in {path} (classes with keypoints: {have}); the model fails to build "
                "(a KeyError)",
                "name a class whose label map item lists `keypoints { id: .. label: .. }`",
                value=task.keypoint_class_name,
            )
            continue
        indices += ids
    if len(indices) != len(set(indices)):
        yield ctx.finding_at(
            "keypoint_estimation_task",
            "MODEL.keypoints",
            ERROR,
            f"keypoint ids {sorted(indices)} in {path} are used by more than one task",
            "give each keypoint task its own keypoint ids",
        )
    needed = max(indices, default=-1) + 1
    if indices and reader.num_keypoints < needed:
        yield ctx.finding_at(
            "num_keypoints" if reader.num_keypoints else "train_input_reader",
            "MODEL.keypoints",
            ERROR,
            f"the keypoint tasks use keypoint ids up to {needed - 1} but train_input_reader has "
            f"num_keypoints: {reader.num_keypoints}; the keypoints never reach the model",
            f"set num_keypoints: {needed} in train_input_reader",
            edits=(Edit("train_input_reader.num_keypoints", needed, "the keypoint tasks' ids"),),
        )


def check_duplicate_fields(ctx):
    """CONFIG.last_one_wins: a field or oneof choice given twice, where text format keeps the last.

    The OD API parses configs with `text_format.Merge`, which lets a later value replace an
    earlier one without a word. A strict parse (`text_format.Parse`) of the same text shows the
    first such place; in a `data_augmentation_options` block listing several options only the
    last is kept.
    """
    from google.protobuf import text_format

    from train.pipeline import configfile

    proto = configfile.pipeline_pb2().TrainEvalPipelineConfig()
    try:
        text_format.Parse(ctx.source.text, proto)
        return
    except text_format.ParseError as e:
        line, message = e.GetLine(), str(e).split(" : ", 1)[-1]
    where = f"{ctx.source.path}:{line}" if line else ctx.source.path
    if "preprocessing_step" in message:
        message = (
            "one data_augmentation_options block lists several augmentations; the OD API keeps "
            f"only the last and drops the others without a word ({message})"
        )
        fix = "give each augmentation its own data_augmentation_options { ... } block"
    else:
        message = f"a value is given twice and only the last one is kept ({message})"
        fix = "keep one of the two (later ones silently replace earlier ones)"
    from train.preflight.findings import Finding

    yield Finding(
        "CONFIG.last_one_wins", ERROR, f"{where}: {message}", fix, file=ctx.source.path, line=line
    )
