"""What checkpoint structure a config expects: meta-architecture, backbone family, neck, heads.

Compared by the preflight against `checkpoint.identify.BackboneSignature` to catch a checkpoint
of another architecture from the index alone: the OD API would either fail at restore with a
shape mismatch, or (type "detection" over a different backbone) leave layers silently random.
"""

from __future__ import annotations

import dataclasses
import re

from train.pipeline import fields


@dataclasses.dataclass(frozen=True)
class ExpectedArch:
    """The architecture a config builds, in the terms a checkpoint signature can be checked in."""

    meta_arch: str | None
    family: str | None
    fpn: bool | None  # SSD only: FPN-style neck (FPN, FPNLite, RetinaNet)
    depth_multiplier: float | None
    bifpn_filters: int | None
    bifpn_nodes: int | None


def family_of_type(extractor_type: str | None) -> str | None:
    """Backbone family named by a feature extractor type string."""
    if not extractor_type:
        return None
    name = extractor_type.lower()
    if "efficientnet" in name or "efficientdet" in name:
        return "efficientnet"
    for family in (
        "mobilenet_v1",
        "mobilenet_v2",
        "mobilenet_v3",
        "inception_resnet_v2",
        "hourglass",
        "mobiledet",
    ):
        if family in name:
            return family
    match = re.search(r"resnet(?:_v\d)?_?(50|101|152)", name)
    if match:
        return f"resnet{match[1]}"
    return None


def expected(config) -> ExpectedArch:
    """The ExpectedArch of a parsed pipeline config."""
    arch = fields.meta_arch(config)
    extractor = fields.feature_extractor_type(config)
    fpn = None
    depth_multiplier = None
    bifpn_filters = bifpn_nodes = None
    if arch == "ssd":
        fe = config.model.ssd.feature_extractor
        fpn = "fpn" in (extractor or "") and "bifpn" not in (extractor or "")
        depth_multiplier = fe.depth_multiplier
        if fe.HasField("bifpn"):
            bifpn_filters = fe.bifpn.num_filters
            levels = fe.bifpn.max_level - fe.bifpn.min_level
            bifpn_nodes = fe.bifpn.num_iterations * 2 * levels
    return ExpectedArch(
        arch, family_of_type(extractor), fpn, depth_multiplier, bifpn_filters, bifpn_nodes
    )


def anchors_per_location(config) -> int | None:
    """Boxes per feature-map location of an SSD config (the level the class head is read at)."""
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


def class_head_slots(config, num_classes: int) -> int | None:
    """The class head's output size this config builds for `num_classes` classes."""
    arch = fields.meta_arch(config)
    if arch == "faster_rcnn":
        return num_classes + 1
    if arch == "center_net":
        return num_classes
    if arch == "ssd":
        anchors = anchors_per_location(config)
        if anchors is None:
            return None
        return anchors * (num_classes + (1 if config.model.ssd.add_background_class else 0))
    return None


_OPTIMIZER_SLOTS = {
    "momentum_optimizer": {"momentum"},
    "adam_optimizer": {"m", "v"},
    "rms_prop_optimizer": {"rms"},
}


def optimizer_slots(config) -> set[str] | None:
    """Slot variable names the config's optimizer keeps (None when unknown)."""
    return _OPTIMIZER_SLOTS.get(config.train_config.optimizer.WhichOneof("optimizer"))
