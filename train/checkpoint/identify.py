"""What a checkpoint is, from its variable names and shapes.

Reads only the index (with checkpoint.bundle, TensorFlow-free): no model build, no data shard.
The fingerprints: the root objects give the kind (`model/` for a detection export, plus
`optimizer/` for a training checkpoint, `feature_extractor/` for a backbone, no object graph for
a TF1 Saver checkpoint), head object paths give the meta-architecture, and the last dimension
of the class head gives the number of classes it was trained for.
"""

from __future__ import annotations

import dataclasses
import re

_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"


@dataclasses.dataclass
class CheckpointInfo:
    """What the preflight inferred about a checkpoint.

    Attributes:
      prefix: the checkpoint prefix read.
      kind: 'detection' (zoo export: model/...), 'training' (a model_dir checkpoint with
        optimizer state), 'classification' (backbone-only: feature_extractor/...), 'tf1'
        (name-based Saver checkpoint), or 'empty'.
      meta_arch: 'ssd' | 'faster_rcnn' | 'center_net' | None.
      family: the backbone family ('mobilenet_v2', 'resnet50', 'efficientnet', ...) or None.
      signature: the structural fingerprint the family was read from.
      class_head: (variable name, shape) of the class-logit bias/kernel the class count is read
        from, or None.
      head_slots: the class head's output size (last dimension), or None.
      global_step: the `step` variable of training checkpoints, else None.
      optimizer_slots: slot names saved with the model variables ('momentum', 'm', 'v', ...).
      variables: {name: shape} of the model variables (no optimizer slots).
    """

    prefix: str
    kind: str
    meta_arch: str | None = None
    family: str | None = None
    signature: BackboneSignature | None = None
    class_head: tuple[str, list[int]] | None = None
    head_slots: int | None = None
    global_step: int | None = None
    optimizer_slots: frozenset[str] = frozenset()
    variables: dict[str, list[int]] = dataclasses.field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-able summary for reports."""
        return {
            "prefix": self.prefix,
            "kind": self.kind,
            "meta_arch": self.meta_arch,
            "family": self.family,
            "fpn": self.signature.fpn if self.signature else None,
            "class_head": list(self.class_head) if self.class_head else None,
            "head_slots": self.head_slots,
            "global_step": self.global_step,
            "num_variables": len(self.variables),
        }


# Parts of the feature extractor that are necks (FPN, BiFPN, extra SSD layers), not backbone.
_NECK = (
    "_fpn_features_generator",
    "_coarse_feature_layers",
    "feature_map_generator",
    "_bifpn_stage",
    "_feature_extractor_model",
)


@dataclasses.dataclass(frozen=True)
class BackboneSignature:
    """Structure of a checkpoint's feature extractor, read from variable names and shapes.

    The OD API's Keras backbones save as `layer_with_weights-N`, so the backbone is recognised
    by structure: MobileNetV2 has 17 depthwise convolutions and MobileNetV1 13, ResNets start
    with a 7x7 convolution and differ in their number of convolutions, EfficientNet lives under
    `_efficientnet`.
    """

    depthwise: int
    kernels: int
    first_kernel: tuple[int, ...] | None
    efficientnet: bool
    fpn: bool
    bifpn_filters: int | None
    bifpn_nodes: int

    @property
    def family(self) -> str | None:
        """'mobilenet_v1' | 'mobilenet_v2' | 'resnet50/101/152' | 'efficientnet' | ... | None."""
        if self.efficientnet:
            return "efficientnet"
        if self.depthwise == 17:
            return "mobilenet_v2"
        if self.depthwise == 13:
            return "mobilenet_v1"
        if self.first_kernel == (7, 7, 3, 128):
            return "hourglass"  # its stem is a 7x7 convolution with 128 filters
        if self.depthwise == 0 and self.first_kernel == (7, 7, 3, 64):
            if self.kernels < 80:
                return "resnet50"
            return "resnet101" if self.kernels < 130 else "resnet152"
        if self.depthwise == 0 and self.first_kernel == (3, 3, 3, 32) and self.kernels > 150:
            return "inception_resnet_v2"
        return None


def _order(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"[-/]", name)]


def backbone_signature(shapes: dict[str, list[int]]) -> BackboneSignature | None:
    """The BackboneSignature of a model's variables ({name without suffix: shape})."""
    extractor = {n: s for n, s in shapes.items() if n.startswith("model/_feature_extractor")}
    if not extractor:
        return None
    backbone = {n: s for n, s in extractor.items() if not any(f"/{p}/" in n for p in _NECK)}
    kernels = sorted((n for n in backbone if n.endswith("/kernel")), key=_order)
    first = next(
        (tuple(backbone[n]) for n in kernels if len(backbone[n]) == 4 and backbone[n][2] == 3), None
    )
    bifpn = sorted(
        (n for n in extractor if "/_bifpn_stage/" in n and n.endswith("kernel")), key=_order
    )
    # Every BiFPN node has a post-combine block (combine ops have weights only when weighted).
    nodes = {
        n.split("/_bifpn_stage/node_post_combine_block/")[1].split("/")[0]
        for n in extractor
        if "/_bifpn_stage/node_post_combine_block/" in n
    }
    return BackboneSignature(
        depthwise=sum(1 for n in backbone if n.endswith("depthwise_kernel")),
        kernels=len(kernels),
        first_kernel=first,
        efficientnet=any("/_efficientnet/" in n for n in backbone),
        fpn=any("/_fpn_features_generator/" in n for n in extractor),
        bifpn_filters=extractor[bifpn[0]][-1] if bifpn else None,
        bifpn_nodes=len(nodes),
    )


def _class_head(meta_arch: str | None, shapes: dict[str, list[int]]):
    if meta_arch == "ssd":
        pattern = re.compile(
            r"^model/_box_predictor/_prediction_heads/class_predictions_with_background/"
            r"(?:0/)?_class_predictor_layers/0/bias$"
        )
    elif meta_arch == "faster_rcnn":
        pattern = re.compile(
            r"^model/_mask_rcnn_box_predictor/_class_prediction_head/_class_predictor_layers/\d+/bias$"
        )
    elif meta_arch == "center_net":
        pattern = re.compile(
            r"^model/_prediction_head_dict/object_center/0/layer_with_weights-\d+/bias$"
        )
    else:
        return None
    matches = sorted(name for name in shapes if pattern.match(name))
    if not matches:
        return None
    name = matches[-1]
    return name, shapes[name]


def classify(names_and_shapes: list[tuple[str, list[int]]], prefix: str = "") -> CheckpointInfo:
    """Builds a CheckpointInfo from `tf.train.list_variables` output (pure; testable)."""
    if not names_and_shapes:
        return CheckpointInfo(prefix, "empty")
    all_names = [n for n, _ in names_and_shapes]
    if OBJECT_GRAPH not in all_names:
        info = CheckpointInfo(prefix, "tf1")
        info.variables = dict(names_and_shapes)
        if any(n.startswith("FirstStageFeatureExtractor") for n in all_names):
            info.meta_arch = "faster_rcnn"
        elif any(
            n.startswith(("BoxPredictor", "WeightSharedConvolutionalBoxPredictor"))
            for n in all_names
        ):
            info.meta_arch = "ssd"
        return info
    shapes = {
        n[: -len(_SUFFIX)]: list(s)
        for n, s in names_and_shapes
        if n.endswith(_SUFFIX) and ".OPTIMIZER_SLOT" not in n
    }
    roots = {n.split("/", 1)[0] for n in shapes}
    slots = frozenset(
        n.split("/.OPTIMIZER_SLOT/", 1)[1].split("/")[1]
        for n, _ in names_and_shapes
        if "/.OPTIMIZER_SLOT/" in n and n.count("/") > 2
    )
    if "model" in roots:
        kind = "training" if "optimizer" in roots else "detection"
    elif "feature_extractor" in roots:
        kind = "classification"
    else:
        kind = "unknown"
    model_names = [n for n in shapes if n.startswith(("model/", "feature_extractor/"))]
    joined = "\n".join(model_names)
    if "_first_stage_box_predictor" in joined:
        meta_arch = "faster_rcnn"
    elif "_prediction_head_dict" in joined:
        meta_arch = "center_net"
    elif "_box_predictor" in joined:
        meta_arch = "ssd"
    else:
        meta_arch = None
    head = _class_head(meta_arch, shapes)
    signature = backbone_signature({n: shapes[n] for n in model_names})
    return CheckpointInfo(
        prefix=prefix,
        kind=kind,
        meta_arch=meta_arch,
        family=signature.family if signature else None,
        signature=signature,
        class_head=head,
        head_slots=head[1][-1] if head else None,
        global_step=None,
        optimizer_slots=slots,
        variables={n: shapes[n] for n in model_names},
    )


class CheckpointReadError(Exception):
    """The checkpoint cannot be read at all."""


def inspect(prefix: str) -> CheckpointInfo:
    """Reads a checkpoint index (TF-free, milliseconds) and classifies it.

    Raises:
      CheckpointReadError: the index is missing, not a regular file, or corrupted.
    """
    from train import files
    from train.checkpoint import bundle

    try:
        names_and_shapes = bundle.list_variables(prefix)
    except files.InputError as e:
        raise CheckpointReadError(f"{prefix}.index {e.reason}") from None
    except FileNotFoundError:
        raise CheckpointReadError(f"{prefix}.index not found") from None
    except OSError as e:
        raise CheckpointReadError(f"{prefix}.index cannot be read ({e.strerror or e})") from None
    except bundle.UnsupportedIndex as e:
        raise CheckpointReadError(
            f"{prefix}.index is not a readable checkpoint index ({e})"
        ) from None
    info = classify(names_and_shapes, prefix)
    if info.kind == "training":
        try:
            info.global_step = bundle.read_int64(prefix, "step" + _SUFFIX)
        except (bundle.UnsupportedIndex, OSError):
            info.global_step = None
    return info


def classes_from_head(
    info: CheckpointInfo, anchors_per_location: int | None, add_background_class: bool = True
) -> int | None:
    """The class count a checkpoint's head was trained for, given the config's anchors."""
    if info.head_slots is None:
        return None
    if info.meta_arch == "faster_rcnn":
        return info.head_slots - 1
    if info.meta_arch == "center_net":
        return info.head_slots
    if info.meta_arch == "ssd" and anchors_per_location:
        if info.head_slots % anchors_per_location:
            return None
        return info.head_slots // anchors_per_location - (1 if add_background_class else 0)
    return None
