"""The driver: options -> preflight -> resolved config -> launch plan -> training.

`run(options)` is what the CLI calls; it returns an exit code and prints only one-line errors
for user mistakes.
"""

from __future__ import annotations

import os
import sys

from train import compat, errors, report
from train.options import RunOptions
from train.pipeline import fields, io, rewrite
from train.preflight import Context, run_preflight
from train.preflight.findings import ERROR, Finding


def _emit(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _resolved_path(options: RunOptions) -> str:
    """model_dir/pipeline.config, unless that is the user's own file (never overwrite it)."""
    path = os.path.join(options.model_dir, "pipeline.config")
    if os.path.exists(path) and os.path.samefile(path, options.pipeline_config):
        return os.path.join(options.model_dir, "pipeline.resolved.config")
    return path


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


def _write_report_json(options, preflight_report, changes, config, resolved) -> None:
    if options.report_json:
        io.write_atomic(
            options.report_json,
            report.build_json(
                preflight_report, changes, _config_summary(options, config, resolved)
            ),
        )


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

    config, overrides = rewrite.apply_overrides(source.proto, options)
    ctx = Context(options=options, source=source, config=config)
    preflight_report = run_preflight(ctx)
    blocking = preflight_report.blocking(options.fix)
    fixes = [f for f in preflight_report.findings if f.fixable] if options.fix == "auto" else []
    resolved_config, fix_changes = rewrite.apply_fixes(config, fixes)
    changes = overrides + fix_changes
    _emit(report.render_text(preflight_report, options.fix, changes))

    if blocking:
        _write_report_json(options, preflight_report, changes, resolved_config, None)
        _emit(f"error: preflight found {len(blocking)} error(s) it cannot fix; nothing was started")
        return errors.EXIT_PREFLIGHT
    if options.preflight_only:
        _write_report_json(options, preflight_report, changes, resolved_config, None)
        _emit("preflight passed (--preflight_only: not training)")
        return errors.EXIT_OK

    os.makedirs(options.model_dir, exist_ok=True)
    resolved_path = _resolved_path(options)
    diff_path = rewrite.write_resolved(resolved_path, source, resolved_config)
    _write_report_json(options, preflight_report, changes, resolved_config, resolved_path)
    _emit(f"resolved config: {resolved_path} (diff: {diff_path})")

    from train.launch import plan as launch_plan
    from train.launch import runner

    steps = resolved_config.train_config.num_steps
    _, previous_run, _ = ctx.model_dir_run  # read by the preflight's MODEL_DIR check
    start_step = (previous_run.global_step or 0) if previous_run else 0
    plan = launch_plan.build_plan(
        options, resolved_path, steps, start_step, compat.child_environment()
    )
    code = runner.run(plan, options.log_every_s, _emit)
    if code == errors.EXIT_OK:
        _emit(
            f"done: checkpoints in {plan.model_dir} (ckpt-* at step {steps}); "
            f"resolved config {resolved_path}; TensorBoard logs in "
            f"{os.path.join(plan.model_dir, 'train')} (tensorboard --logdir {plan.model_dir})"
        )
    return code
