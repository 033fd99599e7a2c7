"""The training boxes against what the model can see: sizes in its input pixels, its anchors.

A box the resizer shrinks below the smallest anchor is matched by no anchor well enough to be
a positive (SSD and Faster R-CNN assign by IoU with anchors): the model cannot learn it. The
usual cause is a small object in a big picture fed to a 320 px model. `geometry(config)` reads
what decides it from the pipeline config (pure: the proto only); the finish child measures the
training boxes (train/tf/runviews.py) and plots them against it (train/plots.py).

Smallest anchors, as the OD API's generators build them:
- multiscale_anchor_generator (SSD FPN, EfficientDet, RetinaNet): anchor_scale * 2**min_level;
- ssd_anchor_generator (SSD without FPN): the lowest layer's 0.1 of the input side
  (reduce_boxes_in_lowest_layer, the default), else min_scale of it;
- grid_anchor_generator (Faster R-CNN's first stage): the smallest scale * its base anchor
  side (`height`, 256 by default);
- CenterNet has no anchors: objects are centre points on a stride-4 output.
"""

from __future__ import annotations

import dataclasses

TOO_SMALL = 0.5  # a box under half the smallest anchor's side hardly overlaps any anchor


@dataclasses.dataclass(frozen=True)
class Geometry:
    """What the model sees: its resizer, its smallest anchor (pixels) and the anchor shapes."""

    resizer: str  # "fixed", "keep_aspect" or another resizer's name
    size: tuple[int, int]  # fixed: (height, width); keep_aspect: (min, max) dimension
    smallest_anchor: float | None  # None: no anchors (CenterNet) or not known
    aspect_ratios: tuple[float, ...]  # width / height
    anchors: str  # the generator's name, or why there is none

    def scale(self, image_height: int, image_width: int) -> tuple[float, float]:
        """Pixels of model input per pixel of the picture, (vertical, horizontal)."""
        if self.resizer == "fixed":
            return self.size[0] / image_height, self.size[1] / image_width
        if self.resizer == "keep_aspect":
            low, high = self.size
            factor = min(
                low / min(image_height, image_width), high / max(image_height, image_width)
            )
            return factor, factor
        return 1.0, 1.0


def _model(config):
    arch = config.model.WhichOneof("model")
    return arch, getattr(config.model, arch)


def _resizer(model) -> tuple[str, tuple[int, int]]:
    resizer = model.image_resizer
    which = resizer.WhichOneof("image_resizer_oneof")
    if which == "fixed_shape_resizer":
        return "fixed", (resizer.fixed_shape_resizer.height, resizer.fixed_shape_resizer.width)
    if which == "keep_aspect_ratio_resizer":
        keep = resizer.keep_aspect_ratio_resizer
        return "keep_aspect", (keep.min_dimension, keep.max_dimension)
    return which or "none", (0, 0)


def geometry(config) -> Geometry:
    """The model's resizer and anchors, from a TrainEvalPipelineConfig."""
    arch, model = _model(config)
    resizer, size = _resizer(model)
    side = min(size) if resizer == "fixed" else size[0]
    if arch == "faster_rcnn":
        grid = model.first_stage_anchor_generator.grid_anchor_generator
        base = grid.height  # the base anchor's side, 256 by default
        scales = list(grid.scales) or [0.5, 1.0, 2.0]
        ratios = tuple(grid.aspect_ratios) or (0.5, 1.0, 2.0)
        return Geometry(resizer, size, min(scales) * base, ratios, "grid_anchor_generator")
    if arch != "ssd":
        return Geometry(resizer, size, None, (), f"{arch}: no anchors")
    generator = model.anchor_generator
    which = generator.WhichOneof("anchor_generator_oneof")
    if which == "multiscale_anchor_generator":
        multi = generator.multiscale_anchor_generator
        smallest = multi.anchor_scale * 2.0**multi.min_level
        return Geometry(resizer, size, smallest, tuple(multi.aspect_ratios), which)
    if which == "ssd_anchor_generator":
        ssd = generator.ssd_anchor_generator
        fraction = 0.1 if ssd.reduce_boxes_in_lowest_layer else ssd.min_scale
        smallest = fraction * ssd.base_anchor_height * side
        return Geometry(resizer, size, smallest, tuple(ssd.aspect_ratios), which)
    return Geometry(resizer, size, None, (), which or "unknown anchors")


def summary(boxes, geometry_: Geometry) -> dict:
    """Counts per class and how many boxes are too small for the anchors.

    `boxes`: (class name, width px, height px) in model-input pixels.
    """
    per_class: dict[str, int] = {}
    small = 0
    limit = TOO_SMALL * geometry_.smallest_anchor if geometry_.smallest_anchor else None
    for name, width, height in boxes:
        per_class[name] = per_class.get(name, 0) + 1
        if limit is not None and max(width, height) < limit:
            small += 1
    return {
        "boxes": len(boxes),
        "per_class": per_class,
        "too_small": small,
        "too_small_below_px": limit,
        "smallest_anchor_px": geometry_.smallest_anchor,
        "anchors": geometry_.anchors,
    }
