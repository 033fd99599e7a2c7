"""The input sizes an EfficientDet BiFPN can take, from the OD API's own arithmetic.

The BiFPN (object_detection/models/bidirectional_feature_pyramid_generators.py) combines each
level with the level above it upsampled by nearest neighbour x2, and does not crop: the two
must have the same size. Level L of an input side h is ceil(h / 2^L): the EfficientNet
backbone's stride-2 convolutions and the BiFPN's own stride-2 max pools are 'SAME' padded,
each rounding up. So every level from bifpn.min_level to max_level - 1 must be even
(2 * ceil(h / 2^(L+1)) == ceil(h / 2^L)); else the first top-down node fails at the first
step, e.g. `1_dn_lvl_6/combine: Inputs have incompatible shapes (5, 5, 384) and (6, 6, 384)`
at 300 px. The input side is what the image resizer gives, rounded up to the extractor's
`pad_to_multiple`: the fixed shape; the max dimension when a keep-aspect resizer pads to it;
any side up to the max dimension when it does not. (The FPN of the other SSD extractors crops
the upsampled map, so only the BiFPN has this rule.)
"""

from __future__ import annotations

import math

from train.pipeline import fields
from train.preflight.findings import ERROR

_MIN_SIDE = 129  # the EfficientNet extractor's check_min_image_dim (checks_model._SSD_MIN_IMAGE)


def level_mismatch(side: int, min_level: int, max_level: int) -> tuple[int, int, int] | None:
    """(level, its size, the level above's upsampled size) where an input side fails, or None.

    The top-down path is built from the top level down, so the first failure is the highest.
    """
    for level in range(max_level - 1, min_level - 1, -1):
        here, above = math.ceil(side / 2**level), math.ceil(side / 2 ** (level + 1))
        if here != 2 * above:
            return level, here, 2 * above
    return None


def reachable_sides(resizer, pad_to_multiple: int) -> tuple[list[int], bool] | None:
    """(the input sides the resizer can give after padding, whether they vary per image)."""
    which = resizer.WhichOneof("image_resizer_oneof")
    multiple = max(1, pad_to_multiple)

    def padded(side: int) -> int:
        return math.ceil(side / multiple) * multiple

    if which == "fixed_shape_resizer":
        fixed = resizer.fixed_shape_resizer
        return sorted({padded(fixed.height), padded(fixed.width)}), False
    if which == "keep_aspect_ratio_resizer":
        keep = resizer.keep_aspect_ratio_resizer
        if keep.pad_to_max_dimension:
            return [padded(keep.max_dimension)], False
        return sorted({padded(side) for side in range(1, keep.max_dimension + 1)}), True
    return None


def nearest_working(side: int, min_level: int, max_level: int) -> tuple[int | None, int]:
    """The nearest sides below (None if none >= the extractor's minimum) and above that work."""
    below = next(
        (
            s
            for s in range(side - 1, _MIN_SIDE - 1, -1)
            if not level_mismatch(s, min_level, max_level)
        ),
        None,
    )
    above = next(
        s
        for s in range(side + 1, side + 2**max_level + 1)
        if not level_mismatch(s, min_level, max_level)
    )
    return below, above


def check_bifpn_input_size(ctx):
    """MODEL.bifpn_size: an input size the BiFPN's levels do not divide evenly."""
    if fields.meta_arch(ctx.config) != "ssd":
        return
    extractor = ctx.config.model.ssd.feature_extractor
    if "_bifpn" not in extractor.type:
        return
    low, high = extractor.bifpn.min_level, extractor.bifpn.max_level
    reachable = reachable_sides(ctx.config.model.ssd.image_resizer, extractor.pad_to_multiple)
    if reachable is None:
        return
    sides, varying = reachable
    failing = [(s, level_mismatch(s, low, high)) for s in sides if s >= _MIN_SIDE]
    failing = [(s, m) for s, m in failing if m]
    if not failing:
        return
    side, (level, here, up) = failing[0]
    where = f"BiFPN levels {low}-{high}"
    if varying:
        yield ctx.finding_at(
            "keep_aspect_ratio_resizer",
            "MODEL.bifpn_size",
            ERROR,
            f"keep_aspect_ratio_resizer without pad_to_max_dimension gives each image its own "
            f"size, and some sides (e.g. {side} px) do not fit the {where}: level {level} is "
            f"{here} px but the level above upsampled is {up} px (the model fails at the first "
            'step with "Inputs have incompatible shapes")',
            f"set pad_to_max_dimension: true (with a max_dimension that fits, e.g. "
            f"{nearest_working(max(side, _MIN_SIDE), low, high)[1]}), or pad_to_multiple: "
            f"{2**high} in feature_extractor",
        )
        return
    below, above = nearest_working(side, low, high)
    sizes = f"{below} or {above}" if below else f"{above}"
    field = (
        "fixed_shape_resizer"
        if ctx.config.model.ssd.image_resizer.WhichOneof("image_resizer_oneof")
        == "fixed_shape_resizer"
        else "max_dimension"
    )
    yield ctx.finding_at(
        field,
        "MODEL.bifpn_size",
        ERROR,
        f"an input side of {side} px does not fit the {where}: level {level} is {here} px but "
        f"the level above, upsampled x2, is {up} px; the model fails at the first step "
        f'("Inputs have incompatible shapes ({here}, {here}, ...) and ({up}, {up}, ...)")',
        f"use an input size of {sizes} px (the nearest that fit), or pad_to_multiple: "
        f"{2**high} in feature_extractor",
    )
