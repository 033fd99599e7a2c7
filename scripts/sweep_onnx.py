"""Which zoo architectures convert to ONNX and verify in ONNX Runtime: the measurement.

    python scripts/sweep_onnx.py --fixtures ../shared/fixtures [--all] [--size 256]

For each zoo config (by default one per family that tests/test_export_standins.py does not
cover; `--all`: the 40), a stand-in (the zoo architecture, 3 classes, random weights
calibrated on synthetic pictures so it scores boxes apart, `--size` input) is exported with
`--export onnx` through the same code as `python -m train.export` (train.finishcmd) and
verified against its checkpoint on 2 images. Each config runs in its own processes with a
time limit; a row per config goes to OUT/rows.jsonl as it ends (a long sweep keeps what it
measured) and the Markdown table is printed at the end. What this finds decides whether an
architecture needs an `EXPORT.*` finding for ONNX (train/exportformats.py).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

FAMILIES = (  # one config per family the export tests do not build
    "centernet_hourglass104_512x512_coco17_tpu-8.config",
    "centernet_resnet50_v2_512x512_kpts_coco17_tpu-8.config",
    "center_net_deepmac_512x512_voc_only_tpu-32.config",
    "faster_rcnn_resnet50_v1_fpn_640x640_coco17_tpu-8.config",
    "mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8.config",
    "ssd_mobilenet_v1_fpn_640x640_coco17_tpu-8.config",
    "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8.config",
)
LIMIT_S = 1200  # per config and step: a conversion that runs longer is reported as such


def _python(code: str) -> tuple[int, str]:
    """Runs `code` in a fresh interpreter: (exit status, the last error line or '')."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=LIMIT_S,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
    except subprocess.TimeoutExpired:
        return -1, f"still running after {LIMIT_S} s"
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error") or "Error" in line]
    return done.returncode, (errors or lines or [""])[-1][:300]


def measure(config_path: str, records: dict, out: str, size: int) -> dict:
    """One config's row: built?, converted?, verified?, the figures, or why not."""
    from train.tf import standin

    name = os.path.basename(config_path).removesuffix(".config")
    row = {"config": name}
    start = time.monotonic()
    config = standin.zoo_config_on_records(config_path, size, records, out)
    run_dir = os.path.join(out, name)
    code, why = _python(
        "from train.tf import standin\n"
        f"standin.build_standin({config!r}, {run_dir!r}, shift=(0.0, 0.0), "
        f"calibrate_on=({records['train']!r},))"
    )
    row["build_s"] = round(time.monotonic() - start, 1)
    if code != 0:
        return {**row, "stage": "build", "why": why}
    report = os.path.join(out, f"{name}.json")
    start = time.monotonic()
    code, why = _python(
        "import sys\nfrom train import finishcmd\n"
        "sys.exit(finishcmd.run(finishcmd.Request("
        f"model_dir={os.path.join(run_dir, 'checkpoint')!r}, pipeline_config={config!r}, "
        f"formats=('onnx',), verify_images=2, report_json={report!r}, "
        f"out={os.path.join(run_dir, 'export')!r})))"
    )
    row["export_s"] = round(time.monotonic() - start, 1)
    entry = None
    if os.path.isfile(report):
        with open(report, encoding="utf-8") as f:
            entry = (json.load(f).get("export") or {}).get("onnx")
    if entry is None:
        return {**row, "stage": "convert", "why": why}
    comparison = entry["comparison"]
    return {
        **row,
        "stage": "verified" if entry["verified"] else "verify",
        "why": entry.get("problem") or ("" if entry["conclusive"] else "inconclusive"),
        "size_mb": round(entry["size_bytes"] / 1e6, 1),
        "ort_ms": entry["latency_ms"],
        "checkpoint_ms": entry["reference_latency_ms"],
        "matched": f"{comparison['matched']}/{comparison['compared']}",
        "max_box": comparison["max_box_delta"],
        "max_score": comparison["max_score_delta"],
    }


def _table(rows: list[dict], size: int) -> str:
    lines = [
        f"stand-ins at {size}x{size}, 3 classes, 2 verification images, 2-core CPU",
        "| config | converts | verified | size | ONNX Runtime (checkpoint) | matched "
        "| max Δbox | max Δscore | why not |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        stage = row["stage"]
        converts = "–" if stage == "build" else ("no" if stage == "convert" else "yes")
        verified = "yes" if stage == "verified" else ("no" if stage == "verify" else "–")
        figures = (
            f"{row['size_mb']} MB | {row['ort_ms']} ms ({row['checkpoint_ms']} ms) "
            f"| {row['matched']} | {row['max_box']:.1g} | {row['max_score']:.1g}"
            if "size_mb" in row
            else "| | | |"
        )
        lines.append(
            f"| {row['config']} | {converts} | {verified} | {figures} | {row.get('why', '')} |"
        )
    return "\n".join(lines)


def main() -> int:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", required=True)
    parser.add_argument("--all", action="store_true", help="all 40 TF2 zoo configs")
    parser.add_argument("--only", default="", help="configs whose name contains this")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", default="bench_out/onnx_sweep")
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    zoo = os.path.join(args.fixtures, "zoo_tf2")
    configs = (
        sorted(glob.glob(os.path.join(zoo, "*.config")))
        if args.all
        else [os.path.join(zoo, name) for name in FAMILIES]
    )
    configs = [c for c in configs if args.only in os.path.basename(c)]
    from train.tf import synthetic

    records = synthetic.make_dataset(
        os.path.join(out, "data"), num_train=8, num_eval=2, size=args.size
    )
    rows = []
    for config in configs:
        row = measure(config, records, out, args.size)
        print(json.dumps(row), flush=True)
        with open(os.path.join(out, "rows.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
    print(_table(rows, args.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
