"""Prints the restore-coverage table: what type "detection" and the transplant restore fill.

    python scripts/coverage_table.py [--classes 3] [--out bench_out/coverage]

For the embedded demo config and, when $TFOD_SHARED_FIXTURES is set, a zoo config of each
meta-architecture, it builds a 90-class stand-in checkpoint (random weights, small image size:
variables do not depend on it), then runs the driver's own restore dry run (train/launch/
prepare.py, on CPU) for a model with --classes classes, with and without the transplant, and
prints one markdown row per model.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MODELS = [
    # (label, config: absolute or relative to the fixtures, stand-in image size)
    (
        "SSD MobileNetV2 FPNLite 320",
        os.path.join(ROOT, "configs", "ssd_mobilenet_v2_fpnlite_320x320.config"),
        None,
    ),
    ("SSD MobileNetV2 320", "zoo_tf2/ssd_mobilenet_v2_320x320_coco17_tpu-8.config", None),
    (
        "SSD ResNet50 FPN (RetinaNet) 640",
        "zoo_tf2/ssd_resnet50_v1_fpn_640x640_coco17_tpu-8.config",
        256,
    ),
    ("EfficientDet D0", "zoo_tf2/ssd_efficientdet_d0_512x512_coco17_tpu-8.config", 256),
    (
        "Faster R-CNN ResNet50 640",
        "zoo_tf2/faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config",
        128,
    ),
    (
        "CenterNet ResNet101 FPN 512",
        "zoo_tf2/centernet_resnet101_v1_fpn_512x512_coco17_tpu-8.config",
        128,
    ),
]


def row(label: str, config: str, size: int | None, classes: int, out: str) -> str:
    """Builds the stand-in, runs the prepare child, returns the table row."""
    from train import files
    from train.launch import specs
    from train.pipeline import configfile, fields
    from train.tf import standin

    zoo = os.path.join(out, "zoo")
    standin.build_standin(config, zoo, image_size=size)
    resolved = configfile.load(os.path.join(zoo, "pipeline.config")).proto
    fields.set_value(resolved, fields.num_classes_path(resolved), classes)
    resolved_path = os.path.join(out, "pipeline.config")
    files.write_atomic(resolved_path, configfile.to_text(resolved))
    spec = specs.prepare_spec(
        out,
        resolved_path,
        configfile.to_text(resolved),
        os.path.join(zoo, "checkpoint", "ckpt-0"),
        "detection",
        classes,
        transplant=True,
    )
    from train.launch import runner

    report, outcome = runner.run_prepare(
        spec, {"TF_CPP_MIN_LOG_LEVEL": "2"}, os.path.join(out, "prepare.log")
    )
    if report is None:
        raise SystemExit(f"{label}: {outcome.error}")
    dry, moved = report.dry_run, report.transplant
    fresh: dict[str, int] = {}
    from train.checkpoint import components

    for key in moved["new"]:
        name = components.component_of(key)
        fresh[name] = fresh.get(name, 0) + 1
    return (
        f"| {label} | {dry['variables']} | {dry['restored']} | {moved['transferred']} | "
        f"{', '.join(f'{n} {c}' for n, c in fresh.items())} |"
    )


def main() -> int:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench_out", "coverage"))
    args = parser.parse_args()
    fixtures = os.environ.get("TFOD_SHARED_FIXTURES")
    rows = []
    for i, (label, config, size) in enumerate(MODELS):
        if not os.path.isabs(config):
            if not fixtures:
                print(f"skipped {label}: set TFOD_SHARED_FIXTURES", file=sys.stderr)
                continue
            config = os.path.join(fixtures, config)
        rows.append(row(label, config, size, args.classes, os.path.join(args.out, str(i))))
        print(rows[-1], flush=True)
    print(
        f"\n| model ({args.classes} classes, from a 90-class checkpoint) | variables | "
        "type detection restores | transplant transfers | fresh after transplant |"
    )
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
