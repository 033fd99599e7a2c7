"""The plots a person reads at the end of a run, drawn headless with matplotlib.

Each function draws one figure from data computed elsewhere (train/evalcurves.py for the
final evaluation's detections, event-file scalars for the training curves), saves it as a
PNG and returns the figure's data as drawn, so tests check the picture against known inputs
without reading pixels. Nothing here runs a model.
"""

from __future__ import annotations

import os

import numpy as np

from train import evalcurves

DPI = 100


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on clusters and in containers
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _name(names: dict[int, str], cls: int) -> str:
    return names.get(cls, f"class {cls}")


def pr_curves(curves: dict, names: dict[int, str], path: str) -> dict:
    """Precision against recall per class at IoU 0.5, each class's AP@.5 in the legend.

    Returns {class name: {"recall", "precision", "ap"}} as drawn (the interpolated envelope
    COCO's AP integrates).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    drawn = {}
    for cls, curve in curves.items():
        ap = curve.average_precision()
        if ap is None:
            continue  # no ground truth of this class: no curve to draw
        precision, recall = curve.precision_recall()
        envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        xs = np.concatenate([[0.0], recall])
        ys = np.concatenate([envelope[:1] if len(envelope) else [1.0], envelope])
        label = f"{_name(names, cls)}  AP@.5 {ap:.3f}"
        ax.plot(xs, ys, drawstyle="steps-post", label=label)
        drawn[_name(names, cls)] = {"recall": xs.tolist(), "precision": ys.tolist(), "ap": ap}
    aps = [d["ap"] for d in drawn.values()]
    title = f"Precision-recall at IoU {evalcurves.IOU}"
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
    ax.set_title(f"{title} (mAP@.5 {np.mean(aps):.3f})" if aps else title)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(loc="lower left", fontsize="small")
    _save(fig, path)
    return drawn


def confusion_matrix(matrix: np.ndarray, labels: list[str], score: float, path: str) -> dict:
    """Counts with true classes down and predictions across, background last on both.

    The background row is false detections, the background column missed objects.
    """
    plt = _pyplot()
    labels = [*labels, "background"]
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * n, 1 + 0.55 * n))
    ax.imshow(matrix, cmap="Blues")
    top = matrix.max() or 1
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                colour = "white" if matrix[i, j] > top / 2 else "black"
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=colour)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_title(f"Confusion at IoU {evalcurves.IOU}, score >= {score:.2f}")
    _save(fig, path)
    return {"labels": labels, "matrix": matrix.tolist(), "score": score}


def f1_curves(by_threshold: dict, names: dict[int, str], best: tuple[float, float], path: str):
    """F1 against the score threshold per class and overall, the best threshold marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    thresholds = by_threshold["thresholds"]
    for cls, values in by_threshold["per_class"].items():
        ax.plot(thresholds, values, linewidth=1, alpha=0.7, label=_name(names, cls))
    ax.plot(thresholds, by_threshold["overall"], color="black", linewidth=2.5, label="all classes")
    threshold, f1 = best
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1)
    ax.annotate(
        f"{f1:.2f} at {threshold:.2f}", (threshold, f1), textcoords="offset points", xytext=(6, 6)
    )
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="score threshold", ylabel="F1")
    ax.set_title(f"F1 by score threshold (IoU {evalcurves.IOU})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    _save(fig, path)
    return {"threshold": threshold, "f1": f1}


def training_curves(scalars: dict[str, dict[int, float]], path: str) -> dict[str, list]:
    """Losses, learning rate and eval mAP over steps, one panel each that has data.

    `scalars`: {tag: {step: value}} from the run's event files (train and eval).
    """
    panels = {
        "loss": [t for t in sorted(scalars) if t.startswith("Loss/") and "eval" not in t],
        "learning rate": [t for t in scalars if t.endswith("learning_rate")],
        "eval": [
            t
            for t in scalars
            if t in ("DetectionBoxes_Precision/mAP", "DetectionBoxes_Precision/mAP@.50IOU")
        ],
    }
    panels = {title: tags for title, tags in panels.items() if tags}
    plt = _pyplot()
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.5 * max(1, len(panels)), 3.6))
    axes = np.atleast_1d(axes)
    drawn = {}
    for ax, (title, tags) in zip(axes, panels.items(), strict=False):
        for tag in tags:
            steps = sorted(scalars[tag])
            values = [scalars[tag][s] for s in steps]
            ax.plot(steps, values, marker="o" if len(steps) < 20 else None, label=tag)
            drawn[tag] = [steps, values]
        ax.set(title=title, xlabel="step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    if not panels:
        axes[0].text(0.5, 0.5, "no scalars in the event files", ha="center", va="center")
    _save(fig, path)
    return drawn


def training_data(boxes, geometry, path: str) -> dict:
    """The training boxes: per class, their sizes in model-input pixels, their shapes.

    `boxes`: (class name, width px, height px) as the model sees them (train/boxstats.py).
    Sizes are drawn against the smallest anchor (dashed) and the region under half of it
    (shaded: too small for any anchor to match); shapes against the anchors' aspect ratios.
    Returns boxstats.summary of what was drawn.
    """
    from train import boxstats

    plt = _pyplot()
    found = boxstats.summary(boxes, geometry)
    fig, (count, sizes, shapes) = plt.subplots(1, 3, figsize=(14, 4))
    names = list(found["per_class"])
    count.bar(names, [found["per_class"][n] for n in names], color="#4c72b0")
    count.set(title=f"Boxes per class ({found['boxes']} boxes)", ylabel="boxes")
    count.tick_params(axis="x", rotation=45)
    widths = np.array([w for _, w, _ in boxes], np.float64)
    heights = np.array([h for _, _, h in boxes], np.float64)
    if len(boxes):
        sizes.scatter(widths, heights, s=6, alpha=0.5)
        ratios = np.log2(np.maximum(widths, 1e-6) / np.maximum(heights, 1e-6))
        shapes.hist(ratios, bins=30, color="#4c72b0")
    anchor = geometry.smallest_anchor
    if anchor:
        limit = found["too_small_below_px"]
        sizes.axvline(anchor, color="black", linestyle="--", linewidth=1)
        sizes.axhline(anchor, color="black", linestyle="--", linewidth=1)
        sizes.fill_between([1, limit], 1, limit, color="red", alpha=0.12)  # both sides under
        sizes.annotate(
            f"smallest anchor {anchor:.0f} px; {found['too_small']} box(es) under {limit:.0f} px",
            (0.02, 0.96),
            xycoords="axes fraction",
            va="top",
            fontsize="small",
        )
    else:
        sizes.annotate(geometry.anchors, (0.02, 0.96), xycoords="axes fraction", va="top")
    top = max([*geometry.size, *widths.tolist(), *heights.tolist(), 2.0])
    sizes.set(xscale="log", yscale="log", xlim=(1, top * 1.2), ylim=(1, top * 1.2))
    sizes.set(xlabel="width (model input px)", ylabel="height (model input px)")
    sizes.set_title("Box sizes as the model sees them")
    for ratio in geometry.aspect_ratios:
        shapes.axvline(np.log2(ratio), color="black", linestyle="--", linewidth=1)
    shapes.set(xlabel="log2(width / height); dashed: the anchors' shapes", ylabel="boxes")
    shapes.set_title("Box shapes")
    for ax in (count, sizes, shapes):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    return found


def evaluation_plots(evalset: evalcurves.EvalSet, out_dir: str) -> dict:
    """PR curves, F1 by threshold, and the confusion matrix at the best-F1 threshold.

    Returns evalcurves.summary plus the plots' paths: what the run reports and prints.
    """
    curves = evalcurves.class_curves(evalset)
    by_threshold = evalcurves.f1_by_threshold(curves)
    best = evalcurves.best_threshold(by_threshold)
    ids = evalset.class_ids()
    names = evalset.names
    paths = {
        "pr_curves": os.path.join(out_dir, "pr_curves.png"),
        "f1_threshold": os.path.join(out_dir, "f1_threshold.png"),
        "confusion_matrix": os.path.join(out_dir, "confusion_matrix.png"),
    }
    pr_curves(curves, names, paths["pr_curves"])
    f1_curves(by_threshold, names, best, paths["f1_threshold"])
    matrix = evalcurves.confusion(evalset, best[0])
    confusion_matrix(matrix, [_name(names, c) for c in ids], best[0], paths["confusion_matrix"])
    return {
        **evalcurves.summary(evalset),
        "confusion": {"labels": [_name(names, c) for c in ids], "matrix": matrix.tolist()},
        "plots": paths,
    }
