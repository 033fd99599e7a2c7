"""Which part of a detection model a checkpoint key belongs to, and coverage summaries.

Keys are object paths as the OD API's TF2 checkpoints spell them
(`model/_feature_extractor/classification_backbone/layer_with_weights-3/kernel/.ATTRIBUTES/...`),
so one table serves the restore report, the transplant report and the tests. TF-free.
"""

from __future__ import annotations

import dataclasses

# The display order of the summary.
ORDER = (
    "backbone",
    "box classifier features",
    "neck",
    "RPN",
    "prediction tower",
    "box tower",
    "class tower",
    "box head",
    "class head",
    "mask head",
)

_BACKBONES = ("classification_backbone", "_efficientnet", "_base_model", "_network")


def _unescape(name: str) -> str:
    """Undoes the checkpoint key escaping of one path element ("." -> "..", "/" -> ".S")."""
    out, i = [], 0
    while i < len(name):
        if name[i] == "." and i + 1 < len(name):
            out.append("/" if name[i + 1] == "S" else name[i + 1])
            i += 2
        else:
            out.append(name[i])
            i += 1
    return "".join(out)


def component_of(key: str) -> str:
    """The model component a checkpoint key (or model object path) belongs to."""
    parts = key.split("/")
    if parts and parts[0] == "model":
        parts = parts[1:]
    if not parts:
        return "other"
    top = parts[0]
    child = parts[1] if len(parts) > 1 else ""
    if top == "_feature_extractor":
        return "backbone" if child in _BACKBONES else "neck"
    if top == "_feature_extractor_for_proposal_features":
        return "backbone"
    if top == "_feature_extractor_for_box_classifier_features":
        return "box classifier features"
    if top.startswith("_first_stage_box_predictor"):
        return "RPN"
    if top == "_prediction_head_dict":  # CenterNet: one head per task
        return f"{_unescape(child)} head"
    if top in ("_box_predictor", "_mask_rcnn_box_predictor"):
        head = parts[2] if len(parts) > 2 else ""
        if child == "_head_scope_conv_layers":
            return {"BoxPredictionTower": "box tower", "ClassPredictionTower": "class tower"}.get(
                head, "prediction tower"
            )
        if child == "_base_tower_layers_for_heads":
            return "class tower" if head.startswith("class") else "box tower"
        if child in ("_box_prediction_head",) or head == "box_encodings":
            return "box head"
        if child == "_class_prediction_head" or head.startswith("class"):
            return "class head"
        if child == "_third_stage_heads" or "mask" in head:
            return "mask head"
        return "box predictor"
    return "other"


def rank(name: str) -> tuple[int, str]:
    """Sort key of a component name: display order, unknown ones last by name."""
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


@dataclasses.dataclass
class Tally:
    """Counts for one component."""

    name: str
    variables: int = 0
    restored: int = 0
    parameters: int = 0
    restored_parameters: int = 0


def tally(entries) -> list[Tally]:
    """Per-component counts from (key, shape, restored) entries, in display order."""
    by_name: dict[str, Tally] = {}
    for key, shape, restored in entries:
        name = component_of(key)
        item = by_name.setdefault(name, Tally(name))
        size = 1
        for dim in shape:
            size *= int(dim)
        item.variables += 1
        item.parameters += size
        if restored:
            item.restored += 1
            item.restored_parameters += size
    return sorted(by_name.values(), key=lambda t: rank(t.name))


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 10_000 else str(n)


def summary(tallies: list[Tally], verb: str = "restored", num_classes: int | None = None) -> str:
    """One line such as `restored 290/384 variables (…): backbone 260/260, neck 30/30; new: …`."""
    total = sum(t.variables for t in tallies)
    done = sum(t.restored for t in tallies)
    params = sum(t.parameters for t in tallies)
    done_params = sum(t.restored_parameters for t in tallies)
    line = (
        f"{verb} {done}/{total} variables ({_millions(done_params)}/{_millions(params)} parameters)"
    )
    some = [f"{t.name} {t.restored}/{t.variables}" for t in tallies if t.restored]
    new = [f"{t.name} {t.variables - t.restored}" for t in tallies if t.restored < t.variables]
    if some:
        line += ": " + ", ".join(some)
    if new:
        line += "; new: " + ", ".join(new)
        fresh_classes = any(t.name == "class head" and t.restored < t.variables for t in tallies)
        if num_classes and fresh_classes:
            plural = "class" if num_classes == 1 else "classes"
            line += f" (class head sized for {num_classes} {plural})"
    return line


def failure(report: dict | None) -> str | None:
    """The one-line reason a measured restore must stop the run, or None when it is sound.

    Sound means: the OD API's restore raised nothing, and it filled every variable its own
    restore scope (`restore_from_objects`) holds. A gap there is a backbone or neck that would
    silently train from its random initialisation.
    """
    if report is None:
        return "the restore could not be measured (see the log)"
    gaps = report.get("gaps") or []
    if not report.get("error") and not gaps:
        return None
    if not gaps:
        return report["error"]
    counts = tally((key, (), False) for key in gaps)
    where = ", ".join(f"{t.name} {t.variables}" for t in counts)
    shown = ", ".join(key.removesuffix("/.ATTRIBUTES/VARIABLE_VALUE") for key in gaps[:3])
    more = f" (+{len(gaps) - 3} more)" if len(gaps) > 3 else ""
    # TF's own message for this (an AssertionError listing variable reprs) says less.
    return (
        f"{len(gaps)} variable(s) the restore should fill are not in the checkpoint and would "
        f"train from their random initialisation ({where}): {shown}{more}"
    )
