"""What `--freeze` trains, per architecture: the README's table, from the real zoo configs.

    python scripts/freeze_table.py --fixtures ../shared/fixtures [--size 256]

Builds each model (random weights, 3 classes, the input resized to --size: the variables do
not depend on it), applies train.pipeline.freezing to its trainable variables exactly as the
training child does, and prints a markdown table of the trained parameters.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIGS = (
    "ssd_mobilenet_v2_320x320_coco17_tpu-8.config",
    "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config",
    "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8.config",
    "ssd_efficientdet_d0_512x512_coco17_tpu-8.config",
    "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config",
    "centernet_resnet50_v1_fpn_512x512_kpts_coco17_tpu-8.config",
)


def main() -> int:
    """Builds each model and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--fixtures", required=True)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()

    from train import compat

    compat.apply()
    import tempfile

    from train.pipeline import configfile, freezing
    from train.tf import restore, standin

    out = tempfile.mkdtemp(prefix="freeze_table-")

    print(
        "| architecture | trainable parameters | `--freeze backbone` trains | "
        "`--freeze backbone,neck` trains |"
    )
    print("|---|---|---|---|")
    for name in CONFIGS:
        records = {"train": "unused.record", "eval": "unused.record", "label_map": "unused"}
        source = os.path.join(args.fixtures, "zoo_tf2", name)
        path = standin.zoo_config_on_records(source, args.size, records, out)
        config = configfile.load(path).proto
        model = restore.build_model(config)
        keys = {id(v): k for k, v in restore.model_variables(model).items()}
        named = [
            (v.name, keys.get(id(v), ""), int(v.shape.num_elements() or 0))
            for v in model.trainable_variables
        ]
        cells = []
        for flag in ("backbone", "backbone,neck"):
            rule = freezing.rule(config.train_config, flag)
            trains, unmatched = freezing.decide(rule, [(n, k) for n, k, _ in named])
            report = freezing.report(rule, named, trains, unmatched)
            cells.append(report["summary"].replace("training ", ""))
        total = sum(size for _, _, size in named)
        print(f"| {name.split('_coco17')[0]} | {total / 1e6:.1f}M | {cells[0]} | {cells[1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
