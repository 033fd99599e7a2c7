"""The restore dry run and the transplant, in a child process on CPU.

    python -m train.launch.prepare SPEC.json

Run by the driver (never by users) for `--dry_run` and `--restore=transplant`. It builds the
model from the resolved config, restores the fine-tune checkpoint with the OD API's own
`load_fine_tune_checkpoint` (as training will), measures what that filled, and for a
transplant copies every shape-compatible checkpoint tensor on top and saves the result as the
checkpoint training restores with type "full". The report goes to the spec's `report` path.
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    """Runs the spec at argv[1]; 0 when the report was written (it may hold an error)."""
    with open(argv[1], encoding="utf-8") as f:
        spec = json.load(f)

    from train import compat

    compat.apply()
    import tensorflow as tf
    from object_detection import model_lib_v2
    from object_detection.protos import train_pb2

    from train.checkpoint import restore
    from train.launch import plan
    from train.pipeline import io

    config = io.load(spec["pipeline_config"]).proto
    tf.random.set_seed(0)  # the transplant's fresh tensors are the same on every rerun
    model = restore.build_model(config)
    source, checkpoint_type = spec["checkpoint"], spec["checkpoint_type"]
    report = {
        "checkpoint": source,
        "dry_run": restore.measure(
            model,
            checkpoint_type,
            lambda: model_lib_v2.load_fine_tune_checkpoint(
                model, source, checkpoint_type, train_pb2.CheckpointVersion.V2, False, None, True
            ),
            spec.get("num_classes"),
        ),
    }
    target = spec.get("transplant_to")
    if target and not report["dry_run"]["error"]:
        report["transplant"] = restore.transplant(model, source, spec.get("num_classes"))
        report["transplant"]["checkpoint"] = restore.write_model_checkpoint(model, target)
        io.write_atomic(
            plan.transplant_source(target),
            json.dumps({"checkpoint": source, "config": spec["pipeline_config_text_sha256"]}),
        )
    io.write_atomic(spec["report"], json.dumps(report, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main(sys.argv))
