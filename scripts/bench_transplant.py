"""Benchmark: fine-tuning with `--restore=type` (detection) vs `--restore=transplant`.

    python scripts/bench_transplant.py --arch ssd_fpnlite [--pretrain_steps 300] [--steps 200]
    python scripts/bench_transplant.py --arch faster_rcnn   # needs TFOD_SHARED_FIXTURES

1. A stand-in zoo checkpoint (random weights) is pre-trained through the driver for
   `--pretrain_steps` on a related synthetic task: the same kind of images, every shape
   labelled 1 ("shape"), so its box heads, towers and RPN have learnt to find shapes while its
   class head has 1 class.
2. That checkpoint is fine-tuned on the 3-class task (square / circle / triangle, other
   images) twice, same config, data and steps: type "detection" (the OD API's restore: backbone
   and neck) and `--restore=transplant` (everything whose path and shape match).
3. Prints the total-loss curve of both (running median of 5 logged steps), and the first step
   at which each run reaches loss targets between the detection run's first and final values.

Everything lands under --out (default bench_out/transplant-<arch>); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _small_faster_rcnn(config) -> None:
    """A CPU-sized Faster R-CNN for the benchmark.

    64 proposals (the second stage dominates a CPU step) and a constant learning rate the
    random-weight stand-in survives (the zoo's schedule diverges from random weights).
    """
    frcnn = config.model.faster_rcnn
    frcnn.first_stage_max_proposals = 64
    frcnn.second_stage_batch_size = 32
    frcnn.second_stage_post_processing.batch_non_max_suppression.max_detections_per_class = 20
    frcnn.second_stage_post_processing.batch_non_max_suppression.max_total_detections = 20
    rate = config.train_config.optimizer.momentum_optimizer.learning_rate
    rate.constant_learning_rate.learning_rate = 0.004


ARCHS = {
    # name: (config, image size for the stand-in and every run, batch size[, config edit])
    "ssd_fpnlite": (
        os.path.join(ROOT, "configs", "ssd_mobilenet_v2_fpnlite_320x320.config"),
        320,
        4,
    ),
    "faster_rcnn": (
        "zoo_tf2/faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config",
        256,
        2,
        _small_faster_rcnn,
    ),
}


def losses(model_dir: str) -> dict[int, float]:
    """Loss/total_loss per logged step, read from the run's TensorBoard events."""
    from train.launch.progress import EventTail

    records = EventTail(os.path.join(model_dir, "train")).poll(final=True)
    return {r.step: r.values["Loss/total_loss"] for r in records if "Loss/total_loss" in r.values}


def running_median(curve: dict[int, float], window: int = 5) -> dict[int, float]:
    """Median of the last `window` logged losses at each logged step.

    A median, not a mean: a random-weight Faster R-CNN has single-step loss spikes.
    """
    steps = sorted(curve)
    return {
        s: statistics.median(curve[t] for t in steps[max(0, i - window + 1) : i + 1])
        for i, s in enumerate(steps)
    }


def first_reaching(curve: dict[int, float], target: float, window: int = 5) -> int | None:
    """The first logged step whose running median (full window) is at or below `target`."""
    return next((s for s in sorted(curve)[window - 1 :] if curve[s] <= target), None)


def driver(args: list[str], log: str) -> None:
    """Runs the driver; raises with the log's tail when it fails."""
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as f:
        code = subprocess.call([sys.executable, "-m", "train.finetune", *args], stdout=f, stderr=f)
    print(
        f"  {os.path.basename(log)}: exit {code} in {time.monotonic() - started:.0f} s", flush=True
    )
    if code != 0:
        with open(log, encoding="utf-8") as f:
            sys.exit("driver failed:\n" + "".join(f.readlines()[-15:]))


def main() -> int:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="ssd_fpnlite")
    parser.add_argument("--pretrain_steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=5, help="steps per logged loss")
    parser.add_argument("--out", default=None)
    parser.add_argument("--reuse", action="store_true", help="report finished runs again")
    args = parser.parse_args()
    from train.tf import standin, synthetic

    config, size, batch, *edit = ARCHS[args.arch]
    if not os.path.isabs(config):
        fixtures = os.environ.get("TFOD_SHARED_FIXTURES")
        if not fixtures:
            sys.exit(f"{args.arch} needs the zoo config {config}: set TFOD_SHARED_FIXTURES")
        config = os.path.join(fixtures, config)
    out = os.path.abspath(args.out or os.path.join(ROOT, "bench_out", f"transplant-{args.arch}"))
    os.makedirs(out, exist_ok=True)
    started = time.monotonic()
    related = synthetic.make_dataset(os.path.join(out, "related"), 64, 8, seed=1, one_class=True)
    target = synthetic.make_dataset(os.path.join(out, "target"), 64, 8, seed=2)
    zoo = os.path.join(out, "zoo")
    if not os.path.exists(os.path.join(zoo, "checkpoint", "ckpt-0.index")):
        standin.build_standin(config, zoo, image_size=size)
    zoo_config = os.path.join(zoo, "pipeline.config")  # the config at the bench's image size
    if edit:
        from train import files
        from train.pipeline import configfile

        edited = configfile.load(zoo_config).proto
        edit[0](edited)
        zoo_config = os.path.join(out, "bench.config")
        files.write_atomic(zoo_config, configfile.to_text(edited))
    common = [f"--pipeline_config={zoo_config}", f"--batch_size={batch}", "--log_every_s=600"]
    common += [f"--num_steps_per_iteration={args.every}", "--checkpoint_every_n=100000"]

    pretrain = os.path.join(out, "pretrain")
    if not glob.glob(os.path.join(pretrain, "ckpt-*.index")):
        print(f"pre-training {args.pretrain_steps} steps on the 1-class task", flush=True)
        driver(
            [
                *common,
                f"--model_dir={pretrain}",
                f"--checkpoint={zoo}",
                f"--label_map={related['label_map']}",
                f"--train_input_path={related['train']}",
                f"--eval_input_path={related['eval']}",
                f"--num_train_steps={args.pretrain_steps}",
            ],
            os.path.join(out, "pretrain.log"),
        )
    import tensorflow as tf

    pretrained = tf.train.latest_checkpoint(pretrain)
    curves = {}
    for mode in ("type", "transplant"):
        model_dir = os.path.join(out, f"finetune-{mode}")
        if args.reuse and tf.train.latest_checkpoint(model_dir):
            curves[mode] = losses(model_dir)
            continue
        if os.path.isdir(model_dir):
            import shutil

            shutil.rmtree(model_dir)
        print(f"fine-tuning {args.steps} steps, --restore={mode}", flush=True)
        driver(
            [
                *common,
                f"--model_dir={model_dir}",
                f"--checkpoint={pretrained}",
                f"--label_map={target['label_map']}",
                f"--train_input_path={target['train']}",
                f"--eval_input_path={target['eval']}",
                f"--num_train_steps={args.steps}",
                f"--restore={mode}",
            ],
            os.path.join(out, f"finetune-{mode}.log"),
        )
        curves[mode] = losses(model_dir)
    smooth = {mode: running_median(curve) for mode, curve in curves.items()}
    goal = smooth["type"][max(smooth["type"])]
    print(f"\n{args.arch}: total loss (running median of 5 logged steps, one every {args.every})")
    print(f"{'step':>6} {'detection':>10} {'transplant':>11}")
    steps = sorted(smooth["type"])
    shown = steps[:: max(1, len(steps) // 10)]
    for s in shown + ([steps[-1]] if shown[-1] != steps[-1] else []):
        print(
            f"{s:>6} {smooth['type'][s]:>10.3f} {smooth['transplant'].get(s, float('nan')):>11.3f}"
        )
    start = smooth["type"][min(smooth["type"])]
    print("\nfirst step whose running median is at or below a target loss (targets: from the")
    print("detection run's first running median towards its final one):")
    print(f"{'target':>8} {'detection':>10} {'transplant':>11}")
    for fraction in (0.25, 0.5, 0.75, 0.9, 1.0):
        level = start - fraction * (start - goal)
        reach = {mode: first_reaching(curve, level) for mode, curve in smooth.items()}
        print(f"{level:>8.3f} {reach['type']!s:>10} {reach['transplant']!s:>11}")
    print(
        f"first logged loss: detection {curves['type'][min(curves['type'])]:.3f}, "
        f"transplant {curves['transplant'][min(curves['transplant'])]:.3f}"
    )
    print(
        f"final running median: detection {smooth['type'][steps[-1]]:.3f}, "
        f"transplant {smooth['transplant'][max(smooth['transplant'])]:.3f}"
    )
    print(f"wall: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
