"""The one owner of "a child ended badly: which finding is that?".

Every failure a child reports in its Outcome (train/contracts.py), and every malformed file
between the processes, becomes a Finding here; the stages print it with `Finding.line()` and
add it to the report.
"""

from __future__ import annotations

from train.contracts import BAD_RECORD, DISK_FULL, ContractError, Outcome
from train.pipeline import fields
from train.preflight.findings import ERROR, Finding
from train.runplan import RunPlan

# A failure in these phases is told as the rehearsal's finding (it happened before training
# proper: the import, the model build, the input pipeline, the first step).
EARLY_PHASES = ("import", "model", "input", "first_step")


def explain_failure(plan: RunPlan, outcome: Outcome, log_path: str) -> Finding:
    """The finding for a child that failed building, restoring, reading or computing losses."""
    from train import failures, nativeimports

    if outcome.code == nativeimports.CODE and outcome.failed_import:
        return nativeimports.finding(outcome.failed_import, log_path)
    config = plan.resolved_config if plan.resolved_config is not None else plan.source.proto
    diagnosis = failures.diagnose(outcome.phase, outcome.error or "", config)
    line = plan.source.line_of(diagnosis.field) if diagnosis.field and plan.source else None
    where = f"{plan.source.path}:{line}: " if line else ""
    return Finding(
        diagnosis.code,
        ERROR,
        f"{where}{diagnosis.message}",
        f"{diagnosis.fix} (log: {log_path})",
        file=plan.source.path if plan.source else None,
        line=line,
    )


def nan_finding(plan: RunPlan, outcome: Outcome) -> Finding:
    """TRAIN.nan: where the losses went non-finite, what was kept, and the likely causes."""
    config = plan.resolved_config
    batch = config.train_config.batch_size if config is not None else None
    extractor = (fields.feature_extractor_type(config) or "") if config is not None else ""
    causes = [
        f"a learning rate too high for batch {batch}: lower learning_rate_base (or the "
        "optimizer's rate), or pass --nan_retries 2 to continue from the last good checkpoint "
        "with the rate halved",
        "degenerate boxes (zero area) or boxes in pixels in the records: --scan_records all "
        "checks every record (python -m train.data check GLOB)",
    ]
    if "efficientnet" in extractor and batch is not None and batch < 8:
        causes.insert(
            0,
            f"EfficientDet at batch {batch} (tensorflow/models #9151): raise the batch to 8 or "
            "more, or lower the learning rate",
        )
    return Finding(
        "TRAIN.nan",
        ERROR,
        f"training stopped: {outcome.error}",
        "likely causes, most likely first: " + "; ".join(causes),
        file=plan.source.path if plan.source else None,
    )


def oom_finding(plan: RunPlan, outcome: Outcome) -> Finding:
    """TRAIN.oom: what ran out, the batch that failed, and a batch that should fit."""
    batch = plan.resolved_config.train_config.batch_size
    replicas = plan.launch.strategy.replicas if plan.launch else 1
    smaller = max(replicas, (batch // 2) // replicas * replicas)
    if smaller >= batch:
        fix = (
            f"batch {batch} is already the smallest for {replicas} replica(s): use a smaller "
            "input size (image_resizer), fewer replicas per host, or a machine with more memory"
        )
    else:
        fix = (
            f"pass --batch_size {smaller} (half of {batch}, a multiple of the {replicas} "
            "replica(s)) and keep the learning rate in proportion, --batch_size auto to "
            "measure the largest that fits, or use a smaller input size"
        )
    return Finding(
        "TRAIN.oom",
        ERROR,
        f"training at batch {batch} ran out of memory: {outcome.error}",
        fix,
        file=plan.source.path if plan.source else None,
    )


def disk_finding(plan: RunPlan, outcome: Outcome) -> Finding:
    """TRAIN.disk_full: where, how much is free, what a checkpoint takes, what was kept."""
    return Finding(
        DISK_FULL,
        ERROR,
        f"training stopped at step {outcome.step}: {outcome.error}",
        "free space there (or pass --checkpoint_max_to_keep to keep fewer checkpoints), then "
        "run the same command: it resumes from the newest checkpoint",
        file=plan.options.model_dir,
    )


def no_fit(plan: RunPlan, found) -> Finding:
    """BATCH.no_fit: not even the smallest batch fits the budget."""
    from train.launch import autobatch

    first = found.points[0]
    return Finding(
        "BATCH.no_fit",
        ERROR,
        f"--batch_size auto: {autobatch.describe_point(first, found.budgets)}; the budget is "
        f"{found.fraction:g} of the memory ({autobatch.describe_budgets(found.budgets)}; "
        f"log: {found.log})",
        "raise --memory_fraction, freeze the backbone (--freeze backbone: no gradients or "
        "optimizer slots for it), use a smaller input size (image_resizer), or a machine with "
        "more memory",
        file=plan.source.path if plan.source else None,
    )


def contract_finding(error: ContractError) -> Finding:
    """INTERNAL: a contract file between the driver and a child that does not hold its class."""
    return Finding(
        "INTERNAL",
        ERROR,
        f"a file passed between tfod-finetune's processes is malformed: {error} (the two "
        "sides disagree: a bug, or a file left by another version)",
        "please report it with the file named here; rerunning with --fresh starts the run anew",
        file=error.path,
    )


def of_training(plan: RunPlan, outcome: Outcome) -> Finding | None:
    """The finding of a failed training, by the code the child gave it, or by its phase.

    None when the runner's own line says it best (a located bad record names its file and
    record; a failure after the first step has only its error to tell).
    """
    by_code = {"TRAIN.nan": nan_finding, "TRAIN.oom": oom_finding, DISK_FULL: disk_finding}
    if outcome.code in by_code:
        return by_code[outcome.code](plan, outcome)
    if outcome.code == BAD_RECORD or outcome.phase not in EARLY_PHASES:
        return None
    return explain_failure(plan, outcome, plan.launch.log_path)


def of_finish(outcome: Outcome, log_path: str) -> Finding:
    """The finding of a failed end of a run (train/tf/finish.py): evaluation or export.

    EVAL.failed for the final evaluation, EXPORT.failed for the reference detections, an
    export or its verification (the phases "reference", "export_FMT", "verify_FMT"). The
    checkpoints are never touched by the end of a run: the fix says how to redo only it.
    """
    from train import nativeimports

    if outcome.code == nativeimports.CODE and outcome.failed_import:
        return nativeimports.finding(outcome.failed_import, log_path)
    phase = outcome.phase or "finish"
    evaluating = phase == "eval"
    return Finding(
        "EVAL.failed" if evaluating else "EXPORT.failed",
        ERROR,
        f"{phase} failed: {outcome.error}",
        "the checkpoints are untouched: see the log for the cause, then redo only this with "
        f"`python -m train.{'evaluate' if evaluating else 'export'} --model_dir MODEL_DIR` "
        f"(log: {log_path})",
    )


def export_rejected(rejected: list[str], export_dir: str, log_path: str) -> Finding:
    """EXPORT.verify: exports that detect differently from their checkpoint (moved aside)."""
    import os

    return Finding(
        "EXPORT.verify",
        ERROR,
        f"{', '.join(rejected)} detect(s) differently from the checkpoint (moved to "
        f"{os.path.join(export_dir, 'rejected')}); the checkpoints are untouched",
        "the export's figures are in the report; a TFLite int8 export may need "
        "--tflite_quantize float16 or none, else please report it with the log "
        f"(log: {log_path})",
    )
