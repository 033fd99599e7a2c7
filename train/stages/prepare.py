"""Before training: the rehearsal / restore dry run and the transplant, on CPU in a child."""

from __future__ import annotations

import os

from train import compat, errors
from train.contracts import PrepareSpec, TransplantSource
from train.launch import paths, specs
from train.launch.paths import RunPaths
from train.outcomes import explain_failure
from train.pipeline import fields
from train.preflight.findings import ERROR, Finding
from train.reporting import Reporter, emit
from train.runplan import RunPlan


def transplant_is_current(spec: PrepareSpec) -> bool:
    """True when model_dir already holds the transplant of this checkpoint for this config."""
    recorded = TransplantSource.read(specs.transplant_source(spec.transplant_to))
    return (
        os.path.isfile(spec.transplant_to + ".index")
        and recorded is not None
        and recorded.checkpoint == spec.checkpoint
        and recorded.config == spec.pipeline_config_text_sha256
    )


def prepare_duty(options, fixed_config, resolved_config, resolved_text, resolved_path, chief):
    """(duty, PrepareSpec or None) of the rehearsal / restore dry run / transplant stage."""
    if not (options.rehearse or options.restore == "transplant"):
        return "", None
    train_config = fixed_config.train_config
    if not train_config.fine_tune_checkpoint and not options.rehearse:
        return "none", None
    classes = fields.num_classes_path(resolved_config)
    spec = specs.prepare_spec(
        options.model_dir,
        resolved_path,
        resolved_text,
        train_config.fine_tune_checkpoint or None,
        train_config.fine_tune_checkpoint_type,
        fields.get(resolved_config, classes) if classes else None,
        transplant=options.restore == "transplant" and bool(train_config.fine_tune_checkpoint),
        rehearse_batch=(
            specs.rehearsal_batch(resolved_config.train_config.batch_size)
            if options.rehearse
            else 0
        ),
    )
    if not options.rehearse and transplant_is_current(spec):
        return "reuse", spec
    if not chief:
        return ("none" if options.rehearse else "wait"), spec
    return "run", spec


def prepare(plan: RunPlan, reporter: Reporter) -> int:
    """The CPU rehearsal / restore dry run and/or the transplant (train/tf/prepare.py)."""
    from train.checkpoint import components
    from train.launch import rundir, runner

    duty, spec = plan.duties.prepare, plan.prepare
    if duty == "none" and spec is None:
        emit("restore: no fine_tune_checkpoint: every variable starts from its initialiser")
        return errors.EXIT_OK
    if duty == "none":
        emit("rehearsal: done by worker 0 only")
        return errors.EXIT_OK
    if duty == "reuse":
        emit(f"transplant: reusing {spec.transplant_to} (same checkpoint and config)")
        return errors.EXIT_OK
    if duty == "wait":
        emit("transplant: waiting for worker 0 to write it ...")
        # All workers must restore the one file worker 0 wrote (its fresh tensors are random).
        if rundir.wait_until(lambda: transplant_is_current(spec), timeout_s=1800, poll_s=2):
            return errors.EXIT_OK
        emit(f"error: RESTORE: worker 0 wrote no transplant to {spec.transplant_to}")
        return errors.EXIT_PREFLIGHT
    if duty != "run":
        return errors.EXIT_OK
    if spec.rehearse:
        emit(
            f"rehearsal: building the model for training on CPU, "
            f"{'restoring the checkpoint, ' if spec.checkpoint else ''}one batch of "
            f"{spec.rehearse_batch} image(s) through the training input pipeline, the losses ..."
        )
    else:
        emit("restore: building the model on CPU to measure the fine-tune restore ...")
    log_path = RunPaths(os.path.abspath(plan.options.model_dir)).log(paths.PREPARE)
    try:
        prepared, outcome = runner.run_prepare(spec, compat.child_environment(), log_path)
    except KeyboardInterrupt:
        emit("interrupted: nothing was trained")
        return errors.EXIT_INTERRUPTED
    if prepared is None:  # the build, the input pipeline or the losses failed
        finding = explain_failure(plan, outcome, log_path)
        reporter.extra.append(finding)
        emit(finding.printed())
        return errors.EXIT_PREFLIGHT
    if prepared.dry_run is not None:
        reporter.restore.update(
            {k: v for k, v in prepared.to_dict().items() if k not in ("rehearsal",)}
        )
        emit(f"restore (type {spec.checkpoint_type}): {prepared.dry_run['summary']}")
        reason = components.failure(prepared.dry_run)
        if reason:
            finding = Finding(
                "RESTORE",
                ERROR,
                f"{spec.checkpoint}: {reason}",
                "check the CKPT_* findings above, or pass --checkpoint with a checkpoint of "
                f"this architecture (log: {log_path})",
                file=spec.checkpoint,
            )
            reporter.extra.append(finding)  # in --report_json too, not only on the terminal
            emit(finding.printed())
            return errors.EXIT_PREFLIGHT
    if prepared.transplant:
        emit(
            f"transplant: {prepared.transplant['summary']}; saved as "
            f'{prepared.transplant["checkpoint"]} (restored with type "full")'
        )
    if prepared.rehearsal:
        rehearsal = reporter.rehearsal = prepared.rehearsal
        losses = ", ".join(
            f"{name.removeprefix('Loss/')} {value:.4g}"
            for name, value in rehearsal["losses"].items()
        )
        emit(
            f"rehearsal: the model builds, a batch of {rehearsal['batch']} image(s) went through "
            f"the training input pipeline, losses finite ({losses}); {rehearsal['wall_s']} s"
        )
    return errors.EXIT_OK
