"""After training: the final evaluation, the best checkpoint, the exports and their checks."""

from __future__ import annotations

import os

from train import errors, results
from train.reporting import Reporter, emit
from train.runplan import RunPlan


def memory_line(peaks: dict, auto_batch: dict | None) -> str:
    """'memory: training peaked at host 1.85 GB', each pool it used, with its auto budget."""
    from train.launch import autobatch

    budgets = (auto_batch or {}).get("budgets") or {}
    pools = [
        f"{pool} {autobatch.gigabytes(value)}"
        + (
            f" (--batch_size auto budget {autobatch.gigabytes(budgets[pool])})"
            if pool in budgets
            else ""
        )
        for pool, value in sorted(peaks.items())
    ]
    return f"memory: training peaked at {', '.join(pools)}"


def finish(plan: RunPlan, reporter: Reporter) -> int:
    """The final evaluation, the best checkpoint's line, the export and its verification."""
    from train.checkpoint import identify, resolve
    from train.contracts import EarlyStop
    from train.launch import runner

    options, model_dir = plan.options, plan.launch.model_dir
    early = EarlyStop.read(plan.launch.eval.early_stop) if plan.launch.eval else None
    if early is not None:
        reporter.results["early_stop"] = early.to_dict()
    final = resolve.latest_in_dir(model_dir)
    best = resolve.latest_in_dir(os.path.join(model_dir, "best"))
    if best is not None:
        recorded = results.read_best(model_dir)
        reporter.results.setdefault("eval", {})["best"] = recorded
        if recorded:
            emit(
                f"best checkpoint: {best} (step {recorded['step']}, {recorded['metric']} "
                f"{recorded['value']:.4f})"
            )
    formats = results.parse_formats(options.export)
    evaluate = options.final_eval and bool(results.eval_paths(plan.resolved_config))
    if final is None or not (evaluate or formats):
        return errors.EXIT_OK

    def spec(checkpoint: str, evaluate: bool, formats: tuple[str, ...], sheet: bool = True):
        info = identify.inspect(checkpoint)
        return results.finish_spec(
            model_dir,
            plan.resolved_path,
            plan.resolved_config,
            checkpoint,
            info.global_step or 0,
            evaluate=evaluate,
            formats=formats,
            input_type=options.input_type,
            tflite_quantize=options.tflite_quantize,
            verify_images=options.verify_images,
            contact_sheet=sheet,
        )

    exported = best if best is not None else final
    specs = (
        [spec(final, evaluate, formats)]
        if exported == final or not formats
        # the sheet beside the final evaluation's plots: drawn from its detections
        else [spec(final, evaluate, ()), spec(exported, False, formats, sheet=not evaluate)]
    )
    code = errors.EXIT_OK
    for one in specs:
        ended = runner.finish(one, emit)
        code, finished = max(code, ended.code), ended.report
        if ended.finding is not None:
            reporter.extra.append(ended.finding)
        if finished and finished.eval:
            reporter.results.setdefault("eval", {})["final"] = finished.eval
        if finished and finished.export:
            reporter.results["export"] = finished.export
        if finished and finished.contact_sheet:
            reporter.results["contact_sheet"] = finished.contact_sheet
        if finished and finished.curves:
            reporter.results["curves"] = finished.curves
    return code
