"""The rehearsal, the restore dry run and the transplant, in a child process on CPU.

    python -m train.tf.prepare SPEC.json

Run by the driver (never by users) for `--rehearse` and `--restore=transplant`. It builds the
model for training from the resolved config (never downloading weights: train/offline.py),
restores the fine-tune checkpoint with the OD API's own `load_fine_tune_checkpoint` (as
training will) and measures what that filled; for a transplant it copies every
shape-compatible checkpoint tensor on top and saves the result as the checkpoint training
restores with type "full"; for a rehearsal it pulls one batch through the OD API's training
input pipeline from the real records and computes the losses, without an optimizer step. The
report goes to the spec's `report` path; a failure's Outcome says which phase failed.
"""

from __future__ import annotations

from train.tf import harness


def _one_batch(config, model, batch: int):
    """(features, labels) of one training batch from the OD API's own input pipeline.

    `inputs.train_input` is what train_loop calls: the decoder, the augmentations, the
    model's preprocessing and target padding. The batch is `batch` images (the config's,
    capped on a CPU) and the shuffle buffer is off, so the first batch does not wait for
    thousands of images to be decoded.
    """
    from object_detection import inputs

    train_config = type(config.train_config)()
    train_config.CopyFrom(config.train_config)
    train_config.batch_size = batch
    reader = type(config.train_input_reader)()
    reader.CopyFrom(config.train_input_reader)
    reader.shuffle = False
    dataset = inputs.train_input(train_config, reader, config.model, model=model)
    return next(iter(dataset))


def _losses(config, model, features, labels) -> dict[str, float]:
    """The training losses of one batch, computed as train_loop's step does, without a step."""
    from object_detection import model_lib, model_lib_v2

    train_config = config.train_config
    model._is_training = True  # noqa: SLF001 - the OD API's own switch, as its train step sets it
    unstacked = model_lib.unstack_batch(
        labels, unpad_groundtruth_tensors=train_config.unpad_groundtruth_tensors
    )
    losses, _ = model_lib_v2._compute_losses_and_predictions_dicts(  # noqa: SLF001
        model,
        features,
        unstacked,
        training_step=0,
        add_regularization_loss=train_config.add_regularization_loss,
    )
    return {name: float(value.numpy()) for name, value in losses.items()}


def _prepare(spec, phase: harness.Phase) -> None:
    """Builds the model, measures the restore, transplants, rehearses; writes the report."""
    import math
    import time

    import tensorflow as tf
    from object_detection import model_lib_v2
    from object_detection.protos import train_pb2

    from train.contracts import PrepareReport, TransplantSource
    from train.launch import specs
    from train.pipeline import configfile
    from train.tf import offline_build, restore

    started = time.monotonic()
    config = configfile.load(spec.pipeline_config).proto
    tf.random.set_seed(0)  # the transplant's fresh tensors are the same on every rerun
    with offline_build.no_downloads(skip_imagenet=bool(spec.checkpoint)):
        model = restore.build_model(config)
    dry_run = transplant = rehearsal = None
    if spec.checkpoint:
        phase.name = "restore"
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
    if spec.transplant_to and not dry_run["error"]:
        transplant = restore.transplant(model, spec.checkpoint, spec.num_classes)
        transplant["checkpoint"] = restore.write_model_checkpoint(model, spec.transplant_to)
        TransplantSource(spec.checkpoint, spec.pipeline_config_text_sha256).write(
            specs.transplant_source(spec.transplant_to)
        )
    if spec.rehearse and not (dry_run and dry_run["error"]):
        phase.name = "input"
        features, labels = _one_batch(config, model, spec.rehearse_batch)
        phase.name = "loss"
        losses = _losses(config, model, features, labels)
        bad = sorted(name for name, value in losses.items() if not math.isfinite(value))
        if bad:
            raise FloatingPointError(
                f"non-finite losses {', '.join(f'{n}={losses[n]}' for n in bad)}"
            )
        rehearsal = {
            "batch": spec.rehearse_batch,
            "losses": losses,
            "wall_s": round(time.monotonic() - started, 1),
        }
    PrepareReport(spec.checkpoint, dry_run, transplant, rehearsal).write(spec.report)


def main(argv: list[str]) -> int:
    """Runs the PrepareSpec at argv[1]; its Outcome says whether a PrepareReport was written.

    The report itself may hold a failed restore (that is a finding about the checkpoint); a
    failure before it (the model does not build) is the Outcome's error.
    """
    from train.contracts import OK, Outcome, PrepareSpec

    def body(spec, phase):
        _prepare(spec, phase)
        return Outcome(OK, detail=f"report in {spec.report}")

    return harness.main(argv, PrepareSpec, body)


if __name__ == "__main__":
    harness.run_module(main)
