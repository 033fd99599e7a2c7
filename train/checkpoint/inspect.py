"""What a checkpoint is, from its variable names and shapes (`tf.train.list_variables`).

Reads only the index: no model build, no data shard. The fingerprints are those of the failure
catalogue (section 3): root objects give the kind, head object paths give the meta-architecture,
and the last dimension of the class head gives the number of classes it was trained for.
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
      family: a short backbone/neck fingerprint ('mobilenet_v2_fpn', 'resnet', 'efficientdet',
        ...) or None.
      class_head: (variable name, shape) of the class-logit bias/kernel the class count is read
        from, or None.
      head_slots: the class head's output size (last dimension), or None.
      global_step: the `step` variable of training checkpoints, else None.
      variables: {name: shape} of the model variables (no optimizer slots).
    """

    prefix: str
    kind: str
    meta_arch: str | None = None
    family: str | None = None
    class_head: tuple[str, list[int]] | None = None
    head_slots: int | None = None
    global_step: int | None = None
    variables: dict[str, list[int]] = dataclasses.field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-able summary for reports."""
        return {
            "prefix": self.prefix,
            "kind": self.kind,
            "meta_arch": self.meta_arch,
            "family": self.family,
            "class_head": list(self.class_head) if self.class_head else None,
            "head_slots": self.head_slots,
            "global_step": self.global_step,
            "num_variables": len(self.variables),
        }


def _family(names: list[str]) -> str | None:
    joined = "\n".join(names)
    if "_bifpn_stage" in joined:
        return "efficientdet"
    fpn = "_fpn_features_generator" in joined or "fpn" in joined.lower()
    if re.search(r"block_\d+_expand|expanded_conv|Conv_1/", joined) or "mobilenet_v2" in joined:
        return "mobilenet_v2_fpn" if fpn else "mobilenet_v2"
    if "conv_pw_" in joined or "mobilenet_v1" in joined:
        return "mobilenet_v1_fpn" if fpn else "mobilenet_v1"
    if re.search(r"conv\d_block\d|resnet", joined, re.I):
        return "resnet_fpn" if fpn else "resnet"
    if "hourglass" in joined.lower():
        return "hourglass"
    if re.search(r"block\d+[a-z]_|inception", joined, re.I):
        return "inception_resnet" if "inception" in joined.lower() else None
    return None


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
        info = CheckpointInfo(prefix, "tf1", family=_family(all_names))
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
    step = None
    return CheckpointInfo(
        prefix=prefix,
        kind=kind,
        meta_arch=meta_arch,
        family=_family(model_names),
        class_head=head,
        head_slots=head[1][-1] if head else None,
        global_step=step,
        variables={n: shapes[n] for n in model_names},
    )


def inspect(prefix: str) -> CheckpointInfo:
    """Reads a checkpoint index with TensorFlow and classifies it.

    Raises:
      tf.errors.OpError / ValueError: unreadable (callers turn these into findings).
    """
    from train import compat

    compat.apply(with_tensorflow=False)  # TF >= 2.16: Keras choice must precede the TF import
    import tensorflow as tf

    names_and_shapes = tf.train.list_variables(prefix)
    info = classify(names_and_shapes, prefix)
    if info.kind == "training":
        try:
            info.global_step = int(tf.train.load_variable(prefix, "step" + _SUFFIX))
        except (tf.errors.OpError, ValueError):
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
