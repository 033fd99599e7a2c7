"""The restore dry run and the transplant, in a child process on CPU.

    python -m train.tf.prepare SPEC.json

Run by the driver (never by users) for `--dry_run` and `--restore=transplant`. It builds the
model from the resolved config, restores the fine-tune checkpoint with the OD API's own
`load_fine_tune_checkpoint` (as training will), measures what that filled, and for a
transplant copies every shape-compatible checkpoint tensor on top and saves the result as the
checkpoint training restores with type "full". The report goes to the spec's `report` path.
"""

from __future__ import annotations

import os
import sys
import traceback


def _prepare(spec) -> None:
    """Builds the model, measures the restore, transplants if asked; writes the PrepareReport."""
    import tensorflow as tf
    from object_detection import model_lib_v2
    from object_detection.protos import train_pb2

    from train.contracts import PrepareReport, TransplantSource
    from train.launch import plan
    from train.pipeline import configfile
    from train.tf import restore

    config = configfile.load(spec.pipeline_config).proto
    tf.random.set_seed(0)  # the transplant's fresh tensors are the same on every rerun
    model = restore.build_model(config)
    dry_run = restore.measure(
        model,
        spec.checkpoint_type,
        lambda: model_lib_v2.load_fine_tune_checkpoint(
            model,
            spec.checkpoint,
            spec.checkpoint_type,
            train_pb2.CheckpointVersion.V2,
            False,
            None,
            True,
        ),
        spec.num_classes,
    )
    transplant = None
    if spec.transplant_to and not dry_run["error"]:
        transplant = restore.transplant(model, spec.checkpoint, spec.num_classes)
        transplant["checkpoint"] = restore.write_model_checkpoint(model, spec.transplant_to)
        TransplantSource(spec.checkpoint, spec.pipeline_config_text_sha256).write(
            plan.transplant_source(spec.transplant_to)
        )
    PrepareReport(spec.checkpoint, dry_run, transplant).write(spec.report)


def main(argv: list[str]) -> int:
    """Runs the PrepareSpec at argv[1]; its Outcome says whether a PrepareReport was written.

    The report itself may hold a failed restore (that is a finding about the checkpoint); a
    failure before it (the model does not build) is the Outcome's error.
    """
    from train import compat, errors
    from train.contracts import FAILED, OK, Outcome, PrepareSpec

    with open(argv[1], encoding="utf-8") as f:
        spec = PrepareSpec.from_json(f.read())
    compat.apply()
    try:
        _prepare(spec)
        outcome = Outcome(OK, detail=f"report in {spec.report}")
    except Exception as e:  # noqa: BLE001 - one line for the driver, the traceback in the log
        traceback.print_exc()
        outcome = Outcome(FAILED, error=errors.one_line(e))
    outcome.write(spec.outcome)
    return 0 if outcome.status == OK else errors.EXIT_TRAINING


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main(sys.argv))
