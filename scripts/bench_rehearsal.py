"""Benchmark: the rehearsal's wall time per architecture beside raw train_loop's first step.

    python scripts/bench_rehearsal.py [--out bench_out/rehearsal] [--size 128]

For the demo (SSD MobileNetV2 FPNLite) and stand-ins of EfficientDet-D0, Faster R-CNN ResNet50,
Mask R-CNN Inception-ResNet-v2 and CenterNet ResNet50 keypoints (zoo configs from
$TFOD_SHARED_FIXTURES, else ../shared/fixtures), on CPU at a small input size: the driver's
`--rehearse` (whole command: preflight, model build, restore, one batch, losses) and the OD
API's own `model_lib_v2.train_loop` for one step on the same resolved config (whole process:
imports, build, restore, input pipeline, one training step, its checkpoint), each run once.
Prints the table the README quotes, with the ratio rehearsal / raw.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

RAW = """
import sys
from train import compat; compat.apply()
from object_detection import model_lib_v2
model_lib_v2.train_loop(pipeline_config_path=sys.argv[1], model_dir=sys.argv[2], train_steps=1,
    use_tpu=False, checkpoint_every_n=1, num_steps_per_iteration=1)
"""

FAMILIES = (
    ("EfficientDet-D0", "ssd_efficientdet_d0_512x512_coco17_tpu-8.config", {}, 256),
    ("Faster R-CNN R50", "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config", {}, None),
    (
        "Mask R-CNN IRv2",
        "mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8.config",
        {"masks": True},
        None,
    ),
    (
        "CenterNet R50 kpts",
        "centernet_resnet50_v1_fpn_512x512_kpts_coco17_tpu-8.config",
        {"keypoints": 17},
        None,
    ),
)


def _timed(argv, env) -> tuple[float, int, str]:
    start = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    return time.monotonic() - start, result.returncode, result.stderr


def _cases(out: str, size: int):
    """(name, config, checkpoint prefix, records dict) for each architecture."""
    from tests import helpers
    from train.demo import __main__ as demo
    from train.pipeline import configfile
    from train.tf import standin, synthetic

    assets = demo.prepare(os.path.join(out, "demo"))
    small = os.path.join(out, "demo_small.config")
    helpers.small_image_config(demo.DEMO_CONFIG, small, size)
    yield (
        "SSD MobileNetV2 FPNLite (demo)",
        small,
        os.path.join(assets["zoo"], "checkpoint", "ckpt-0"),
        assets,
    )
    shared = os.environ.get("TFOD_SHARED_FIXTURES") or os.path.join(
        os.path.dirname(ROOT), "shared", "fixtures"
    )
    for name, zoo_name, extra, own_size in FAMILIES:
        config = helpers.zoo_config_copy(shared, zoo_name, out)
        signature = helpers.standin_signatures([config])[config]
        prefix = helpers.standin_checkpoint(signature, os.path.join(out, f"zoo_{zoo_name}"))
        proto = configfile.load(config).proto
        standin._set_image_size(proto, own_size or size)  # noqa: SLF001
        small = os.path.join(out, f"small_{zoo_name}")
        with open(small, "w", encoding="utf-8") as f:
            f.write(configfile.to_text(proto))
        records = synthetic.make_dataset(
            os.path.join(out, f"data_{zoo_name}"), num_train=8, num_eval=2, size=size, **extra
        )
        yield name, small, prefix, records


def main() -> int:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "bench_out", "rehearsal"))
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "-1"}
    rows = []
    for name, config, prefix, records in _cases(args.out, args.size):
        model_dir = os.path.join(args.out, f"m_{len(rows)}")
        rehearsal, code, stderr = _timed(
            [
                sys.executable,
                "-m",
                "train.finetune",
                f"--pipeline_config={config}",
                f"--model_dir={model_dir}",
                f"--checkpoint={prefix}",
                f"--label_map={records['label_map']}",
                f"--train_input_path={records['train']}",
                f"--eval_input_path={records['eval']}",
                "--batch_size=2",
                "--rehearse",
            ],
            env,
        )
        if code != 0:
            print(f"{name}: the rehearsal failed:\n{stderr[-2000:]}", file=sys.stderr)
            return 1
        resolved = os.path.join(model_dir, "pipeline.config")
        raw, code, stderr = _timed(
            [sys.executable, "-c", RAW, resolved, os.path.join(args.out, f"raw_{len(rows)}")], env
        )
        if code != 0:
            print(f"{name}: raw train_loop failed:\n{stderr[-2000:]}", file=sys.stderr)
            return 1
        rows.append((name, rehearsal, raw))
        print(f"{name}: rehearsal {rehearsal:.1f} s, raw first step {raw:.1f} s", flush=True)
    print("\n| architecture | `--rehearse` (s) | raw `train_loop`, 1 step (s) | ratio |")
    print("|---|---|---|---|")
    for name, rehearsal, raw in rows:
        print(f"| {name} | {rehearsal:.1f} | {raw:.1f} | {rehearsal / raw:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
