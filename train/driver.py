"""The driver: options -> preflight -> resolved config -> launch plan -> training.

`run(options)` is what the CLI calls; it returns an exit code and prints only one-line errors
for user mistakes.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from train import compat, errors, report
from train.options import RunOptions
from train.pipeline import fields, io, rewrite
from train.preflight import Context, run_preflight
from train.preflight.findings import ERROR, Finding


def _emit(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _resolved_path(options: RunOptions, work_dir: str) -> str:
    """work_dir/pipeline.config, unless that is the user's own file (never overwrite it)."""
    path = os.path.join(work_dir, "pipeline.config")
    if os.path.exists(path) and os.path.samefile(path, options.pipeline_config):
        return os.path.join(work_dir, "pipeline.resolved.config")
    return path


def _topology(options: RunOptions):
    """The launch's strategy (train.launch.cluster), from --gpus, the GPUs and Slurm's env."""
    from train import envinfo
    from train.launch import cluster

    return cluster.plan_topology(options.gpus, envinfo.visible_gpus(), os.environ)


def _warn_config_changes(options, resolved_config, resolved_path) -> None:
    """Warns when the run being resumed was trained with another resolved config."""
    from train.launch import rundir

    if not os.path.isfile(resolved_path):
        return
    try:
        previous = io.load(resolved_path).proto
    except io.ConfigParseError:
        return
    changed = rundir.config_changes(previous, resolved_config)
    if changed:
        _emit(
            f"warning: MODEL_DIR.config_changed: the run in {options.model_dir} was trained with "
            f"another {' and '.join(changed)} ({resolved_path}); resuming mixes the two\n"
            "  fix: pass --fresh to start over (the old run is moved aside), or use a new "
            "--model_dir"
        )


def _config_summary(options, config, resolved: str | None) -> dict:
    path = fields.num_classes_path(config)
    return {
        "source": os.path.abspath(options.pipeline_config),
        "resolved": os.path.abspath(resolved) if resolved else None,
        "meta_arch": fields.meta_arch(config),
        "feature_extractor": fields.feature_extractor_type(config),
        "num_classes": fields.get(config, path) if path else None,
        "fine_tune_checkpoint": config.train_config.fine_tune_checkpoint or None,
        "fine_tune_checkpoint_type": config.train_config.fine_tune_checkpoint_type or None,
        "batch_size": config.train_config.batch_size,
        "num_steps": config.train_config.num_steps,
    }


def _write_report_json(options, preflight_report, changes, config, resolved, restore=None) -> None:
    if options.report_json:
        io.write_atomic(
            options.report_json,
            report.build_json(
                preflight_report, changes, _config_summary(options, config, resolved), restore
            ),
        )


def _transplant_is_current(spec: dict) -> bool:
    """True when model_dir already holds the transplant of this checkpoint for this config."""
    from train.launch import plan as launch_plan
    from train.launch import runner

    recorded = runner.read_json(launch_plan.transplant_source(spec["transplant_to"]))
    return (
        os.path.exists(spec["transplant_to"] + ".index")
        and recorded is not None
        and recorded.get("checkpoint") == spec["checkpoint"]
        and recorded.get("config") == spec["pipeline_config_text_sha256"]
    )


def _prepare(
    options, source_config, resolved_config, resolved_text, resolved_path, is_chief=True
) -> tuple[int, dict | None]:
    """The CPU restore dry run and/or the transplant (train/launch/prepare.py).

    Returns (exit code, the prepare report for the JSON report). Only the chief of a
    multi-worker run prepares; the others wait for its transplant.
    """
    from train.checkpoint import components
    from train.launch import plan as launch_plan
    from train.launch import runner

    train_config = source_config.train_config
    if not train_config.fine_tune_checkpoint:
        _emit("restore: no fine_tune_checkpoint: every variable starts from its initialiser")
        return errors.EXIT_OK, None
    classes = fields.num_classes_path(resolved_config)
    spec = launch_plan.prepare_spec(
        options.model_dir,
        resolved_path,
        resolved_text,
        train_config.fine_tune_checkpoint,
        train_config.fine_tune_checkpoint_type,
        fields.get(resolved_config, classes) if classes else None,
        transplant=options.restore == "transplant",
    )
    if not options.dry_run and _transplant_is_current(spec):
        _emit(f"transplant: reusing {spec['transplant_to']} (same checkpoint and config)")
        return errors.EXIT_OK, None
    if not is_chief:
        if options.dry_run:
            _emit("restore: the dry run is done by worker 0")
            return errors.EXIT_OK, None
        _emit("transplant: waiting for worker 0 to write it ...")
        from train.launch import rundir

        # All workers must restore the one file worker 0 wrote (its fresh tensors are random).
        if rundir.wait_until(lambda: _transplant_is_current(spec), timeout_s=1800, poll_s=2):
            return errors.EXIT_OK, None
        _emit(f"error: RESTORE: worker 0 wrote no transplant to {spec['transplant_to']}")
        return errors.EXIT_PREFLIGHT, None
    _emit("restore: building the model on CPU to measure the fine-tune restore ...")
    log_path = os.path.join(options.model_dir, "logs", "prepare.log")
    try:
        prepared = runner.run_prepare(spec, compat.child_environment(), log_path)
    except KeyboardInterrupt:  # subprocess.call has killed the child
        _emit("interrupted: nothing was trained")
        return errors.EXIT_INTERRUPTED, None
    dry_run = prepared["dry_run"] if prepared else None
    reason = components.failure(dry_run)
    if dry_run:
        _emit(f"restore (type {spec['checkpoint_type']}): {dry_run['summary']}")
    if reason:
        _emit(
            f"error: RESTORE: {spec['checkpoint']}: {reason}\n  fix: check the CKPT_* findings "
            f"above, or pass --checkpoint with a checkpoint of this architecture "
            f"(log: {log_path})"
        )
        return errors.EXIT_PREFLIGHT, prepared
    if prepared and "transplant" in prepared:
        _emit(
            f"transplant: {prepared['transplant']['summary']}; saved as "
            f'{prepared["transplant"]["checkpoint"]} (restored with type "full")'
        )
    return errors.EXIT_OK, prepared


def run(options: RunOptions) -> int:
    """Runs one driver invocation and returns its exit code."""
    # Keep TensorFlow's C++ banner out of the report should anything here import it (an index
    # format the TF-free reader does not know); the training child logs everything to a file.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        compat.apply(with_tensorflow=False)
    except compat.CompatError as e:
        _emit(f"error: ENV: {e}")
        return errors.EXIT_PREFLIGHT
    try:
        source = io.load(options.pipeline_config)
    except io.ConfigParseError as e:
        finding = Finding("PARSE", ERROR, f"{e}", e.fix, file=e.path, line=e.line)
        _emit(f"error: {finding.code}: {finding.message}\n  fix: {finding.fix}")
        return (
            errors.EXIT_PREFLIGHT if os.path.exists(options.pipeline_config) else errors.EXIT_USAGE
        )

    from train.launch import cluster

    try:
        topology = _topology(options)
    except cluster.ClusterError as e:
        _emit(f"error: {e}")
        return errors.EXIT_USAGE
    if not topology.is_chief:  # worker 0 writes the run's report; the others print theirs
        options = dataclasses.replace(options, report_json=None)
    config, overrides = rewrite.apply_overrides(source.proto, options)
    ctx = Context(options=options, source=source, config=config, topology=topology)
    preflight_report = run_preflight(ctx)
    blocking = preflight_report.blocking(options.fix)
    fixes = [f for f in preflight_report.findings if f.fixable] if options.fix == "auto" else []
    resolved_config, fix_changes = rewrite.apply_fixes(config, fixes)
    fixed_config = resolved_config
    changes = overrides + fix_changes
    if options.restore == "transplant" and not blocking:
        from train.launch import plan as launch_plan

        resolved_config, transplant_changes = rewrite.restore_from_transplant(
            resolved_config, launch_plan.transplant_prefix(options.model_dir)
        )
        changes += transplant_changes
    preflight_text = report.render_text(preflight_report, options.fix, changes)
    _emit(preflight_text)

    if blocking:
        _write_report_json(options, preflight_report, changes, resolved_config, None)
        _emit(f"error: preflight found {len(blocking)} error(s) it cannot fix; nothing was started")
        return errors.EXIT_PREFLIGHT
    if options.preflight_only:
        _write_report_json(options, preflight_report, changes, resolved_config, None)
        _emit("preflight passed (--preflight_only: not training)")
        return errors.EXIT_OK

    from train.launch import rundir

    previous_run = ctx.model_dir_run[1]  # read by the preflight's MODEL_DIR check
    if options.fresh and ctx.model_dir_run[0] is not None:
        previous_run = None
        if topology.is_chief:
            _emit(f"--fresh: moved the earlier run aside to {rundir.move_aside(options.model_dir)}")
        elif not rundir.wait_until(
            lambda: not os.path.exists(ctx.model_dir_run[0] + ".index"), timeout_s=600
        ):
            _emit(f"error: --fresh: worker 0 did not move {options.model_dir} aside")
            return errors.EXIT_PREFLIGHT
    work_dir = topology.work_dir(options.model_dir)
    os.makedirs(work_dir, exist_ok=True)
    resolved_path = _resolved_path(options, work_dir)
    if previous_run is not None:
        _warn_config_changes(options, resolved_config, resolved_path)
    resolved_text = io.to_text(resolved_config)
    diff_path = rewrite.write_resolved(resolved_path, source, resolved_text)
    _write_report_json(options, preflight_report, changes, resolved_config, resolved_path)
    _emit(f"resolved config: {resolved_path} (diff: {diff_path})")

    restore_record: dict = {}
    if options.dry_run or options.restore == "transplant":
        code, prepared = _prepare(
            options, fixed_config, resolved_config, resolved_text, resolved_path, topology.is_chief
        )
        restore_record.update(prepared or {})
        _write_report_json(
            options, preflight_report, changes, resolved_config, resolved_path, restore_record
        )
        if code != errors.EXIT_OK or options.dry_run:
            return code

    from train.launch import board
    from train.launch import plan as launch_plan

    steps = resolved_config.train_config.num_steps
    start_step = (previous_run.global_step or 0) if previous_run else 0
    plan = launch_plan.build_plan(
        options, resolved_path, steps, start_step, compat.child_environment(), topology
    )
    _emit(f"strategy: {topology.describe()}")
    summaries = os.path.join(plan.model_dir, "train")

    def on_restore(measured: dict | None) -> None:
        if measured:
            _emit(f"restore: {measured['summary']}")
            restore_record["training"] = measured
            if plan.is_chief:
                board.write_run_summaries(
                    summaries,
                    {"tfod_finetune/restore": report.restore_text(measured)},
                    None,
                    plan.start_step,
                )

    if plan.is_chief:
        board.write_run_summaries(
            summaries,
            {
                "tfod_finetune/resolved_config": resolved_text,
                "tfod_finetune/preflight": preflight_text,
            },
            board.hparams_of(resolved_config, plan),
            start_step,
        )
    code = _launch(options, plan, on_restore)
    if restore_record:
        _write_report_json(
            options, preflight_report, changes, resolved_config, resolved_path, restore_record
        )
    if code == errors.EXIT_OK and plan.is_chief:
        _emit(
            f"done: checkpoints in {plan.model_dir} (ckpt-* at step {steps}); "
            f"resolved config {resolved_path}; TensorBoard logs in "
            f"{os.path.join(plan.model_dir, 'train')} (tensorboard --logdir {plan.model_dir})"
        )
    return code


def _launch(options, plan, on_restore) -> int:
    """Runs the plan, with a TensorBoard server beside it when asked (rank 0 only)."""
    from train.launch import board, runner

    if not (options.tensorboard and plan.is_chief):
        return runner.run(plan, options.log_every_s, _emit, on_restore)
    log_path = os.path.join(plan.work_dir, "logs", "tensorboard.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    try:
        with board.serve(
            plan.model_dir, options.tensorboard_port, options.tensorboard_bind_all, log_path
        ) as address:
            _emit(f"tensorboard: {address} (stops with the run)")
            return runner.run(plan, options.log_every_s, _emit, on_restore)
    except board.ServerError as e:
        _emit(f"warning: tensorboard: {e}; training without it")
        return runner.run(plan, options.log_every_s, _emit, on_restore)
