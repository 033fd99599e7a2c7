"""Export wall time, file size, CPU latency and verification per architecture and format.

    python scripts/bench_export.py --fixtures ../shared/fixtures [--size 320] [--out bench_out]

For each zoo config below: a stand-in (the zoo architecture, 3 classes, random weights,
`--size` input) is exported through the same code as `python -m train.export`
(train.finishcmd): SavedModel, ONNX and the TFLite quantizations the architecture takes, and
every export is verified against the checkpoint on 8 images. Prints
one Markdown table row per (architecture, format): the README table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CASES = (  # zoo config, TFLite?, TFLite quantizations, stand-in weight shift, calibrated
    # (the tests' reasons, tests/test_export_standins.py: uncalibrated, Faster R-CNN detects
    # nothing and there is nothing to compare)
    (
        "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config",
        True,
        ("none", "float16", "int8"),
        (0.0, 0.02),
        False,
    ),
    ("ssd_mobilenet_v2_320x320_coco17_tpu-8.config", True, ("none", "int8"), (0.0, 0.02), False),
    ("ssd_efficientdet_d0_512x512_coco17_tpu-8.config", False, (), (0.0, 0.02), False),
    ("faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config", False, (), (0.0, 0.0), True),
    (
        "centernet_resnet50_v1_fpn_512x512_kpts_coco17_tpu-8.config",
        True,
        ("none",),
        (0.0, 0.0),
        False,
    ),
)


def _python(code: str) -> None:
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


def main() -> int:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", required=True)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--out", default="bench_out/export")
    parser.add_argument("--only", default="", help="the configs whose name contains this")
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    from train.tf import standin, synthetic

    records = synthetic.make_dataset(
        os.path.join(out, "data"), num_train=16, num_eval=8, size=args.size
    )
    rows = []
    for name, tflite, quantizations, shift, calibrated in CASES:
        if args.only not in name:
            continue
        config = standin.zoo_config_on_records(
            os.path.join(args.fixtures, "zoo_tf2", name), args.size, records, out
        )
        run_dir = os.path.join(out, name.removesuffix(".config"))
        _python(
            "from train.tf import standin\n"
            f"standin.build_standin({config!r}, {run_dir!r}, shift={shift!r}, "
            f"calibrate_on={(records['train'],) if calibrated else ()!r})"
        )
        model_dir = os.path.join(run_dir, "checkpoint")
        for n, quantize in enumerate(quantizations or ("none",)):
            formats = ("saved_model", "onnx") if n == 0 else ()
            formats += ("tflite",) if tflite else ()
            report = os.path.join(out, f"{name}.{quantize}.json")
            _python(
                "from train import finishcmd\n"
                f"finishcmd.run(finishcmd.Request(model_dir={model_dir!r}, "
                f"pipeline_config={config!r}, "
                f"formats={formats!r}, tflite_quantize={quantize!r}, report_json={report!r}, "
                f"out={os.path.join(run_dir, 'export-' + quantize)!r}))"
            )
            with open(report, encoding="utf-8") as f:
                export = json.load(f)["export"] or {}
            for entry in export.values():
                c = entry["comparison"]
                verdict = (
                    "inconclusive"
                    if not entry["conclusive"]
                    else ("**fails**" if entry["problem"] else "verified")
                )
                rows.append(
                    f"| {name.removesuffix('.config')} | {entry['format']} | {entry['export_s']} s "
                    f"| {entry['size_bytes'] / 1e6:.1f} MB | {entry['latency_ms']} ms "
                    f"({entry['reference_latency_ms']} ms) | {c['matched']}/{c['compared']} "
                    f"| {c['max_box_delta']:.1g} | {c['max_score_delta']:.1g} | {verdict} |"
                )
    print(
        f"\ninput {args.size}x{args.size}, 8 verification images, 2-core CPU\n"
        "| architecture | format | export | size | latency/image (checkpoint) | matched "
        "| max Δbox | max Δscore | |\n|---|---|---|---|---|---|---|---|---|"
    )
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
