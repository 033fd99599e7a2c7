"""The driver: one invocation is planned (reads only), then executed.

`plan_run(options)` reads the config, checkpoint index, label maps, records and model_dir,
runs the preflight, and returns a frozen RunPlan: what to print, where to stop (usage error,
preflight, dry run or training), this worker's duties, the resolved config and the launch
plan. It writes nothing, so tests can look at the plan of any invocation in-process.
`execute(plan)` carries it out and returns the exit code; `run(options)` is both, and is
what the CLI calls.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import sys

from train import compat, errors, files, records, report, results
from train.contracts import BAD_RECORD, ContractError, Outcome, PrepareSpec, TransplantSource
from train.launch import cluster
from train.launch import plan as launch_plan
from train.launch.plan import LaunchPlan
from train.options import RunOptions
from train.pipeline import configfile, fields, rewrite
from train.preflight import Context, PreviousRun, Report, run_preflight
from train.preflight.findings import ERROR, WARNING, Finding


def _emit(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class Stop:
    """The invocation ends before any write but the report: its exit code and last line."""

    code: int
    line: str


@dataclasses.dataclass(frozen=True)
class Duties:
    """What this process does beyond training; only worker 0 writes the run's shared files.

    Attributes:
      report: write --report_json.
      move_aside: --fresh: rename model_dir's earlier run (worker 0) ...
      wait_for_move: ... or wait until worker 0 has (the others).
      prepare: "run" the restore dry run / transplant child, "reuse" a current transplant,
        "wait" for worker 0's transplant, "none" (no fine-tune checkpoint), or "" (not asked).
      summaries: write the run's text and HParams summaries.
      tensorboard: serve TensorBoard while training.
    """

    report: bool = True
    move_aside: bool = False
    wait_for_move: bool = False
    prepare: str = ""
    summaries: bool = True
    tensorboard: bool = False


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """Everything one invocation will do, decided before anything is written."""

    options: RunOptions
    stop: Stop | None = None
    lines: tuple[str, ...] = ()  # printed first (the preflight report, warnings)
    findings: tuple[Finding, ...] = ()
    preflight: Report | None = None
    changes: tuple[rewrite.Change, ...] = ()
    source: configfile.PipelineFile | None = None
    resolved_config: object = None
    resolved_text: str = ""
    resolved_path: str | None = None
    previous_run: PreviousRun | None = None
    topology: cluster.Topology | None = None
    duties: Duties = Duties()
    prepare: PrepareSpec | None = None
    launch: LaunchPlan | None = None
    auto_batch: dict | None = None  # --batch_size auto: what was measured (report batch_auto)

    @property
    def work_dir(self) -> str | None:  # noqa: D102
        return os.path.dirname(self.resolved_path) if self.resolved_path else None


# --- planning (reads, never writes) -----------------------------------------------------------


def _report_target_problem(path: str | None) -> str | None:
    """Why --report_json cannot be written (None when it can, or is not asked)."""
    if path is None:
        return None
    if os.path.isdir(path):
        return "is a folder; name a file, e.g. DIR/report.json"
    problem = files.writable_dir_problem(os.path.dirname(os.path.abspath(path)))
    return f"cannot be written: its folder {problem}" if problem else None


def _inputs(options: RunOptions, config) -> list[str]:
    """Every file the run reads: --report_json must never be one of them."""
    paths = [options.pipeline_config]
    for _, reader in fields.input_readers(config):
        paths.append(reader.label_map_path)
        for pattern in fields.input_paths(reader):
            paths += records.expand(pattern)
    checkpoint = config.train_config.fine_tune_checkpoint
    if checkpoint:
        paths += [checkpoint, checkpoint + ".index"]
    return [p for p in paths if p]


def _resolved_path(options: RunOptions, work_dir: str) -> str:
    """work_dir/pipeline.config, unless that is the user's own file (never overwrite it)."""
    path = os.path.join(work_dir, "pipeline.config")
    if files.same_file(path, options.pipeline_config):
        return os.path.join(work_dir, "pipeline.resolved.config")
    return path


def _config_change_warning(options, resolved_config, resolved_path) -> str | None:
    """A warning when the run being resumed was trained with another resolved config."""
    from train.launch import rundir

    try:
        previous = configfile.load(resolved_path).proto
    except configfile.ConfigError:
        return None
    changed = rundir.config_changes(previous, resolved_config)
    if not changed:
        return None
    return (
        f"warning: MODEL_DIR.config_changed: the run in {options.model_dir} was trained with "
        f"another {' and '.join(changed)} ({resolved_path}); resuming mixes the two\n"
        "  fix: pass --fresh to start over (the old run is moved aside), or use a new "
        "--model_dir"
    )


def transplant_is_current(spec: PrepareSpec) -> bool:
    """True when model_dir already holds the transplant of this checkpoint for this config."""
    recorded = TransplantSource.read(launch_plan.transplant_source(spec.transplant_to))
    return (
        os.path.isfile(spec.transplant_to + ".index")
        and recorded is not None
        and recorded.checkpoint == spec.checkpoint
        and recorded.config == spec.pipeline_config_text_sha256
    )


def _prepare_duty(options, fixed_config, resolved_config, resolved_text, resolved_path, chief):
    """(duty, PrepareSpec or None) of the rehearsal / restore dry run / transplant stage."""
    if not (options.rehearse or options.restore == "transplant"):
        return "", None
    train_config = fixed_config.train_config
    if not train_config.fine_tune_checkpoint and not options.rehearse:
        return "none", None
    classes = fields.num_classes_path(resolved_config)
    spec = launch_plan.prepare_spec(
        options.model_dir,
        resolved_path,
        resolved_text,
        train_config.fine_tune_checkpoint or None,
        train_config.fine_tune_checkpoint_type,
        fields.get(resolved_config, classes) if classes else None,
        transplant=options.restore == "transplant" and bool(train_config.fine_tune_checkpoint),
        rehearse_batch=(
            launch_plan.rehearsal_batch(resolved_config.train_config.batch_size)
            if options.rehearse
            else 0
        ),
    )
    if not options.rehearse and transplant_is_current(spec):
        return "reuse", spec
    if not chief:
        return ("none" if options.rehearse else "wait"), spec
    return "run", spec


def _usage_problem(options: RunOptions) -> str | None:
    """Flag combinations no run can honour (exit 2 before anything is read)."""
    try:
        results.parse_formats(options.export)
    except results.UsageError as e:
        return f"--export: {e}"
    if options.patience and not options.eval:
        return "--patience needs --eval (early stopping watches the evaluations)"
    if options.memory_fraction is not None and not options.batch_size_auto:
        return "--memory_fraction is the budget of --batch_size auto; pass both, or neither"
    if options.data:
        given = [
            f"--{name}"
            for name in ("label_map", "train_input_path", "eval_input_path")
            if getattr(options, name)
        ]
        if given:
            return (
                f"--data sets the records and label map; drop {' and '.join(given)} (or "
                "--data); to keep a label map's ids, convert with python -m train.data "
                "convert SRC --out DIR --label_map MAP and pass --data DIR"
            )
    return None


def with_data(options: RunOptions) -> tuple[RunOptions, Stop | None]:
    """Options with --data turned into records and a label map (converting when needed).

    The one step before planning that may write: an annotation folder is converted into
    model_dir/data (reused on rerun while its sources are unchanged).
    """
    if not options.data or _usage_problem(options):
        return options, None
    from train.data import use

    try:
        data = use.prepare(use.plan(options.data, options.model_dir), _emit)
    except use.DataError as e:
        return options, Stop(e.code, errors.clip(f"error: {e}"))
    return (
        dataclasses.replace(
            options,
            label_map=data.label_map,
            train_input_path=(data.train,),
            eval_input_path=(data.eval,) if data.eval else (),
            data=None,  # resolved: what is left is ordinary records and a label map
        ),
        None,
    )


def plan_run(options: RunOptions, environ=None, visible_gpus: int | None = None) -> RunPlan:
    """Plans one invocation (see the module docstring). Reads inputs; writes nothing."""
    from train import envinfo

    environ = os.environ if environ is None else environ
    usage = _usage_problem(options)
    if usage:
        return RunPlan(
            options, Stop(errors.EXIT_USAGE, f"error: {usage}"), duties=Duties(report=False)
        )
    problem = _report_target_problem(options.report_json)
    if problem:
        return RunPlan(
            options,
            Stop(
                errors.EXIT_USAGE,
                errors.clip(f"error: --report_json {options.report_json} {problem}"),
            ),
            duties=Duties(report=False),
        )
    try:
        source = configfile.load(options.pipeline_config)
    except configfile.ConfigFileError as e:
        line = f"error: --pipeline_config {e}\n  fix: {e.fix}"
        return RunPlan(options, Stop(errors.EXIT_USAGE, line), duties=_report_unless(options, []))
    except configfile.ConfigParseError as e:
        finding = Finding("PARSE", ERROR, str(e), e.fix, file=e.path, line=e.line)
        return RunPlan(
            options,
            Stop(
                errors.EXIT_PREFLIGHT,
                f"error: {finding.code}: {finding.message}\n  fix: {finding.fix}",
            ),
            findings=(finding,),
            duties=_report_unless(options, []),
        )
    config, overrides = rewrite.apply_overrides(source.proto, options)
    duties = _report_unless(options, _inputs(options, config))
    try:
        topology = cluster.plan_topology(
            options.gpus, envinfo.visible_gpus() if visible_gpus is None else visible_gpus, environ
        )
    except cluster.ClusterError as e:
        return RunPlan(
            options, Stop(errors.EXIT_USAGE, f"error: {e}"), source=source, duties=duties
        )
    if options.report_json and not duties.report and topology.is_chief:
        return RunPlan(
            options,
            Stop(
                errors.EXIT_USAGE,
                f"error: --report_json {options.report_json} is one of this run's inputs; "
                "writing the report there would destroy it\n  fix: name another file, e.g. "
                f"{os.path.join(options.model_dir, 'report.json')}",
            ),
            duties=duties,
        )
    if options.batch_size_auto and topology.num_workers > 1:
        return RunPlan(
            options,
            Stop(
                errors.EXIT_USAGE,
                f"error: --batch_size auto measures one machine; with {topology.num_workers} "
                "workers pass --batch_size N (find N on one node: the same command with "
                "--batch_size auto --preflight_only, times the number of workers)",
            ),
            source=source,
            duties=duties,
        )
    duties = dataclasses.replace(duties, report=duties.report and topology.is_chief)
    ctx = Context(options=options, source=source, config=config, topology=topology)
    preflight = run_preflight(ctx)
    blocking = preflight.blocking(options.fix)
    fixes = [f for f in preflight.findings if f.fixable] if options.fix == "auto" else []
    fixed_config, fix_changes = rewrite.apply_fixes(config, fixes)
    resolved_config, changes = fixed_config, overrides + fix_changes
    if options.restore == "transplant" and not blocking:
        resolved_config, transplant_changes = rewrite.restore_from_transplant(
            resolved_config, launch_plan.transplant_prefix(options.model_dir)
        )
        changes += transplant_changes
    common = dict(
        options=options,
        lines=(report.render_text(preflight, options.fix, changes),),
        findings=preflight.findings,
        preflight=preflight,
        changes=tuple(changes),
        source=source,
        resolved_config=resolved_config,
        resolved_text=configfile.to_text(resolved_config),
    )
    if blocking:
        line = f"error: preflight found {len(blocking)} error(s) it cannot fix; nothing was started"
        return RunPlan(stop=Stop(errors.EXIT_PREFLIGHT, line), duties=duties, **common)
    if options.preflight_only:
        line = "preflight passed (--preflight_only: not training)"
        return RunPlan(stop=Stop(errors.EXIT_OK, line), topology=topology, duties=duties, **common)

    previous_run = preflight.previous_run
    fresh = options.fresh and previous_run is not None
    if fresh:
        previous_run = None  # moved aside before training: the run starts from step 0
    work_dir = topology.work_dir(options.model_dir)
    resolved_path = _resolved_path(options, work_dir)
    warning = (
        _config_change_warning(options, resolved_config, resolved_path) if previous_run else None
    )
    prepare, prepare_spec = _prepare_duty(
        options,
        fixed_config,
        resolved_config,
        common["resolved_text"],
        resolved_path,
        topology.is_chief,
    )
    launch = None
    if not options.rehearse:
        launch = launch_plan.build_plan(
            options,
            resolved_path,
            resolved_config.train_config.num_steps,
            previous_run.step if previous_run else 0,
            compat.child_environment(),
            topology,
        )
    duties = dataclasses.replace(
        duties,
        move_aside=fresh and topology.is_chief,
        wait_for_move=fresh and not topology.is_chief,
        prepare=prepare,
        summaries=topology.is_chief,
        tensorboard=options.tensorboard and topology.is_chief,
    )
    common["lines"] += (warning,) if warning else ()
    return RunPlan(
        resolved_path=resolved_path,
        previous_run=preflight.previous_run,
        topology=topology,
        duties=duties,
        prepare=prepare_spec,
        launch=launch,
        **common,
    )


def _report_unless(options: RunOptions, inputs: list[str]) -> Duties:
    """Duties with the report on, unless --report_json is absent or names an input.

    The config and --label_map always count as inputs, with the config's own `inputs`.
    """
    target = options.report_json
    inputs = [options.pipeline_config, options.label_map, *inputs]
    clashes = target is not None and any(files.same_file(target, p) for p in inputs if p)
    return Duties(report=target is not None and not clashes)


# --- execution ----------------------------------------------------------------------------------


class _Reporter:
    """Writes --report_json (when this process's duty) at each stage, the last one wins."""

    def __init__(self, plan: RunPlan):
        self.plan = plan
        self.restore: dict = {}
        self.extra: list[Finding] = []  # found after the preflight (the rehearsal, training)
        self.rehearsal: dict | None = None
        # eval, export, early_stop, freeze, nan_retries, batch_auto, memory
        self.results: dict = {"batch_auto": plan.auto_batch} if plan.auto_batch else {}

    def write(self, status: str, code: int | None = None, message: str = "") -> None:
        plan = self.plan
        if not plan.duties.report:
            return
        config = (
            plan.resolved_config
            if plan.resolved_config is not None
            else (plan.source.proto if plan.source else None)
        )
        document = report.build_json(
            (*plan.findings, *self.extra),
            plan.preflight,
            plan.changes,
            _config_summary(plan, config),
            self.restore or None,
            {"status": status, "exit_code": code, "message": message},
            self.rehearsal,
            self.results,
        )
        files.write_atomic(plan.options.report_json, document)


def _config_summary(plan: RunPlan, config) -> dict:
    summary = {
        "source": os.path.abspath(plan.options.pipeline_config),
        "resolved": os.path.abspath(plan.resolved_path) if plan.resolved_path else None,
    }
    if config is None:
        return summary
    path = fields.num_classes_path(config)
    return {
        **summary,
        "meta_arch": fields.meta_arch(config),
        "feature_extractor": fields.feature_extractor_type(config),
        "num_classes": fields.get(config, path) if path else None,
        "fine_tune_checkpoint": config.train_config.fine_tune_checkpoint or None,
        "fine_tune_checkpoint_type": config.train_config.fine_tune_checkpoint_type or None,
        "batch_size": config.train_config.batch_size,
        "num_steps": config.train_config.num_steps,
    }


def _status(code: int) -> str:
    return {errors.EXIT_OK: "ok", errors.EXIT_INTERRUPTED: "stopped"}.get(code, "failed")


def _end(reporter: _Reporter, code: int, line: str) -> int:
    """Prints the last line and writes the final report; returns `code`."""
    _emit(line)
    reporter.write(_status(code), code, line.split("\n", 1)[0])
    return code


def execute(plan: RunPlan) -> int:
    """Carries out a RunPlan and returns the exit code."""
    reporter = _Reporter(plan)
    for line in plan.lines:
        _emit(line)
    if plan.stop is not None:
        return _end(reporter, plan.stop.code, plan.stop.line)
    options, duties = plan.options, plan.duties
    from train.launch import rundir

    if duties.move_aside:
        _emit(f"--fresh: moved the earlier run aside to {rundir.move_aside(options.model_dir)}")
    elif duties.wait_for_move and not rundir.wait_until(
        lambda: not os.path.exists(plan.previous_run.prefix + ".index"), timeout_s=600
    ):
        return _end(
            reporter,
            errors.EXIT_PREFLIGHT,
            f"error: --fresh: worker 0 did not move {options.model_dir} aside",
        )
    os.makedirs(plan.work_dir, exist_ok=True)
    diff_path = rewrite.write_resolved(plan.resolved_path, plan.source, plan.resolved_text)
    reporter.write("started")
    _emit(f"resolved config: {plan.resolved_path} (diff: {diff_path})")
    code = _prepare(plan, reporter)
    if code != errors.EXIT_OK:
        return _end(reporter, code, "nothing was trained")
    if options.rehearse:
        return _end(reporter, errors.EXIT_OK, "rehearsal passed (--rehearse: not training)")
    code = _train(plan, reporter)
    launch = plan.launch
    ended = Outcome.read(launch.train.outcome)
    if code == errors.EXIT_OK and ended is not None and ended.memory:
        _emit(_memory_line(ended.memory.get("peaks") or {}, plan.auto_batch))
        reporter.results["memory"] = ended.memory
    if code == errors.EXIT_OK and launch.is_chief:
        code = _finish(plan, reporter)
        step = ended.step if ended and ended.step is not None else launch.num_train_steps
        early = " (stopped early)" if "early_stop" in reporter.results else ""
        line = (
            f"done{early}: checkpoints in {launch.model_dir} (ckpt-* at step {step}); "
            f"resolved config {plan.resolved_path}; TensorBoard logs in "
            f"{os.path.join(launch.model_dir, 'train')} (tensorboard --logdir {launch.model_dir})"
        )
        if code != errors.EXIT_OK:
            line = "trained and saved, but the end of the run failed (above)"
        return _end(reporter, code, line)
    outcome = Outcome.read(launch.train.outcome)  # what the child said about its end
    reporter.write(_status(code), code, (outcome.error or outcome.detail) if outcome else "")
    return code


def _memory_line(peaks: dict, auto_batch: dict | None) -> str:
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


def _finish(plan: RunPlan, reporter: _Reporter) -> int:
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
            _emit(
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
        else [spec(final, evaluate, (), sheet=False), spec(exported, False, formats)]
    )
    code = errors.EXIT_OK
    for one in specs:
        step_code, finished = runner.finish(one, _emit)
        code = max(code, step_code)
        if finished and finished.eval:
            reporter.results.setdefault("eval", {})["final"] = finished.eval
        if finished and finished.export:
            reporter.results["export"] = finished.export
        if finished and finished.contact_sheet:
            reporter.results["contact_sheet"] = finished.contact_sheet
    return code


def _prepare(plan: RunPlan, reporter: _Reporter) -> int:
    """The CPU rehearsal / restore dry run and/or the transplant (train/tf/prepare.py)."""
    from train.checkpoint import components
    from train.launch import rundir, runner

    duty, spec = plan.duties.prepare, plan.prepare
    if duty == "none" and spec is None:
        _emit("restore: no fine_tune_checkpoint: every variable starts from its initialiser")
        return errors.EXIT_OK
    if duty == "none":
        _emit("rehearsal: done by worker 0 only")
        return errors.EXIT_OK
    if duty == "reuse":
        _emit(f"transplant: reusing {spec.transplant_to} (same checkpoint and config)")
        return errors.EXIT_OK
    if duty == "wait":
        _emit("transplant: waiting for worker 0 to write it ...")
        # All workers must restore the one file worker 0 wrote (its fresh tensors are random).
        if rundir.wait_until(lambda: transplant_is_current(spec), timeout_s=1800, poll_s=2):
            return errors.EXIT_OK
        _emit(f"error: RESTORE: worker 0 wrote no transplant to {spec.transplant_to}")
        return errors.EXIT_PREFLIGHT
    if duty != "run":
        return errors.EXIT_OK
    if spec.rehearse:
        _emit(
            f"rehearsal: building the model for training on CPU, "
            f"{'restoring the checkpoint, ' if spec.checkpoint else ''}one batch of "
            f"{spec.rehearse_batch} image(s) through the training input pipeline, the losses ..."
        )
    else:
        _emit("restore: building the model on CPU to measure the fine-tune restore ...")
    log_path = os.path.join(plan.options.model_dir, "logs", "prepare.log")
    try:
        prepared, outcome = runner.run_prepare(spec, compat.child_environment(), log_path)
    except KeyboardInterrupt:
        _emit("interrupted: nothing was trained")
        return errors.EXIT_INTERRUPTED
    if prepared is None:  # the build, the input pipeline or the losses failed
        finding = explain_failure(plan, outcome, log_path)
        reporter.extra.append(finding)
        _emit(f"error: {finding.code}: {finding.message}\n  fix: {finding.fix}")
        return errors.EXIT_PREFLIGHT
    if prepared.dry_run is not None:
        reporter.restore.update(
            {k: v for k, v in prepared.to_dict().items() if k not in ("rehearsal",)}
        )
        _emit(f"restore (type {spec.checkpoint_type}): {prepared.dry_run['summary']}")
        reason = components.failure(prepared.dry_run)
        if reason:
            _emit(
                f"error: RESTORE: {spec.checkpoint}: {reason}\n  fix: check the CKPT_* findings "
                f"above, or pass --checkpoint with a checkpoint of this architecture "
                f"(log: {log_path})"
            )
            return errors.EXIT_PREFLIGHT
    if prepared.transplant:
        _emit(
            f"transplant: {prepared.transplant['summary']}; saved as "
            f'{prepared.transplant["checkpoint"]} (restored with type "full")'
        )
    if prepared.rehearsal:
        rehearsal = reporter.rehearsal = prepared.rehearsal
        losses = ", ".join(
            f"{name.removeprefix('Loss/')} {value:.4g}"
            for name, value in rehearsal["losses"].items()
        )
        _emit(
            f"rehearsal: the model builds, a batch of {rehearsal['batch']} image(s) went through "
            f"the training input pipeline, losses finite ({losses}); {rehearsal['wall_s']} s"
        )
    return errors.EXIT_OK


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


def _train(plan: RunPlan, reporter: _Reporter) -> int:
    """Runs the launch plan, with summaries and a TensorBoard server as the duties say."""
    from train.launch import board, runner

    launch, options = plan.launch, plan.options
    _emit(f"strategy: {plan.topology.describe()}")
    summaries = os.path.join(launch.model_dir, "train")

    def text_summary(name: str, measured: dict) -> None:
        if plan.duties.summaries:
            board.write_run_summaries(
                summaries,
                {f"tfod_finetune/{name}": report.restore_text(measured)},
                None,
                launch.start_step,
            )

    def on_restore(measured: dict | None) -> None:
        if measured:
            _emit(f"restore: {measured['summary']}")
            reporter.restore["training"] = measured
            reporter.write("training")
            text_summary("restore", measured)

    def on_freeze(measured: dict) -> None:
        reporter.results["freeze"] = measured
        if measured["rule"] == "nothing frozen":
            reporter.write("training")
            return
        _emit(f"freeze: {measured['summary']} ({measured['rule']})")
        for pattern in measured["unmatched"]:
            finding = Finding(
                "FREEZE.no_match",
                WARNING,
                f"{plan.source.path}: the pattern {pattern!r} matches no trainable variable of "
                "this model, so it changes nothing (TF2 variables are named by Keras layer, "
                "e.g. 'block_3_expand/kernel', not TF1 scopes like 'FeatureExtractor/...')",
                "fix the pattern (re.match from the start of the name), or use --freeze "
                "backbone / backbone,neck",
                file=plan.source.path,
            )
            reporter.extra.append(finding)
            _emit(f"warning: {finding.code}: {finding.message}\n  fix: {finding.fix}")
        reporter.write("training")
        text_summary("freeze", measured)

    if plan.duties.summaries:
        board.write_run_summaries(
            summaries,
            {
                "tfod_finetune/resolved_config": plan.resolved_text,
                "tfod_finetune/preflight": plan.lines[0],
            },
            board.hparams_of(plan.resolved_config, launch),
            launch.start_step,
        )

    last_failure: dict = {}

    def explain(outcome: Outcome) -> str | None:
        """A failure before the first step as the rehearsal's finding, not a traceback tail."""
        last_failure["outcome"] = outcome
        retried = last_failure.get("retries", 0)
        if outcome.code == "TRAIN.nan" and retried < options.nan_retries:
            return f"TRAIN.nan (retry {retried + 1}/{options.nan_retries} follows): {outcome.error}"
        if outcome.code in ("TRAIN.nan", "TRAIN.oom"):
            finding = (nan_finding if outcome.code == "TRAIN.nan" else oom_finding)(plan, outcome)
            reporter.extra.append(finding)
            return f"error: {finding.code}: {finding.message}\n  fix: {finding.fix}"
        if outcome.phase not in ("import", "model", "input", "first_step") or (
            outcome.code == BAD_RECORD  # its line names the file and record: printed as it is
        ):
            return None
        finding = explain_failure(plan, outcome, launch.log_path)
        reporter.extra.append(finding)
        return f"error: {finding.code}: {finding.message}\n  fix: {finding.fix}"

    attempt = functools.partial(runner.run, explain=explain, on_freeze=on_freeze)

    def run(current, *args) -> int:
        """Trains; on TRAIN.nan, up to --nan_retries times, again with the rate halved."""
        retries = []
        while True:
            code = attempt(current, *args)
            outcome = last_failure.pop("outcome", None)
            if (
                code != errors.EXIT_TRAINING
                or outcome is None
                or outcome.code != "TRAIN.nan"
                or len(retries) >= options.nan_retries
            ):
                return code
            current = _nan_retry(plan, reporter, current, outcome, retries)
            last_failure["retries"] = len(retries)

    if not plan.duties.tensorboard:
        return run(launch, options.log_every_s, _emit, on_restore)
    log_path = os.path.join(launch.work_dir, "logs", "tensorboard.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    try:
        with board.serve(
            launch.model_dir, options.tensorboard_port, options.tensorboard_bind_all, log_path
        ) as address:
            _emit(f"tensorboard: {address} (stops with the run)")
            return run(launch, options.log_every_s, _emit, on_restore)
    except board.ServerError as e:
        _emit(f"warning: tensorboard: {e}; training without it")
        return run(launch, options.log_every_s, _emit, on_restore)


def _nan_retry(plan: RunPlan, reporter: _Reporter, launch, outcome: Outcome, retries: list):
    """Halves the learning rates in the resolved config and returns the launch to resume.

    The training child resumes from model_dir's newest checkpoint, which the NaN guard kept
    free of the poisoned step. The retry is printed and recorded in the report
    (`nan_retries`); the TRAIN.nan it answers is no longer a finding of the run.
    """
    from train.pipeline import configfile

    resolved = configfile.load(launch.train.pipeline_config).proto
    number = len(retries) + 1
    halved, changes = rewrite.scale_learning_rate(
        resolved, 0.5, f"--nan_retries: retry {number} after TRAIN.nan"
    )
    files.write_atomic(launch.train.pipeline_config, configfile.to_text(halved))
    step = outcome.step or 0
    rates = ", ".join(f"{c.path.rsplit('.', 1)[1]} {c.old} -> {c.new}" for c in changes)
    _emit(
        f"nan retry {number}/{plan.options.nan_retries}: continuing from {outcome.checkpoint} "
        f"with the learning rate halved ({rates})"
    )
    reporter.extra = [f for f in reporter.extra if f.code != "TRAIN.nan"]
    retries.append(
        {
            "retry": number,
            "failed_after_step": step,
            "resumed_from": outcome.checkpoint,
            "cause": outcome.error,
            "changes": [{"field": c.path, "old": c.old, "new": c.new} for c in changes],
        }
    )
    reporter.results["nan_retries"] = list(retries)
    reporter.write("training")
    return dataclasses.replace(launch, start_step=_checkpoint_step(outcome.checkpoint, step))


def _checkpoint_step(prefix: str | None, default: int) -> int:
    """The step a checkpoint holds (from its index, TF-free), else `default`."""
    if not prefix:
        return default
    from train.checkpoint import bundle

    try:
        step = bundle.read_int64(prefix, "step/.ATTRIBUTES/VARIABLE_VALUE")
    except (OSError, ValueError, bundle.UnsupportedIndex):
        return default
    return default if step is None else step


DEFAULT_MEMORY_FRACTION = 0.85


def previous_batch(plan: RunPlan) -> int | None:
    """The batch of the run being resumed, from its resolved config (None: no such run)."""
    if plan.previous_run is None or plan.options.fresh or not plan.resolved_path:
        return None
    try:
        batch = configfile.load(plan.resolved_path).proto.train_config.batch_size
    except configfile.ConfigError:
        return None
    return batch or None


def with_auto_batch(plan: RunPlan) -> RunPlan:
    """--batch_size auto: the plan again with the batch measured to fit (or a Stop).

    Runs after a preflight that passed (with the config's batch) and before anything is
    written but model_dir/batch_probe: a few short training processes at growing batch sizes
    (train.launch.autobatch), then the whole plan at the chosen batch, so the preflight's
    findings and the resolved config are those of the batch that trains. A run being resumed
    keeps its batch.
    """
    options = plan.options
    if plan.stop is not None and not (options.preflight_only and plan.stop.code == errors.EXIT_OK):
        return plan
    if options.rehearse:
        note = "batch_size auto: not measured (--rehearse trains nothing)"
        return dataclasses.replace(plan, lines=(*plan.lines, note))
    batch = previous_batch(plan)
    if batch is not None:
        _emit(f"batch_size auto: {batch}, as the run being resumed ({plan.resolved_path})")
        record = {"batch": batch, "resumed_run": plan.resolved_path}
    else:
        fraction = options.memory_fraction or DEFAULT_MEMORY_FRACTION
        found = _search_batch(plan, fraction)
        if isinstance(found, Stop | Finding):
            return _stopped(plan, found)
        batch, record = found.batch, found.to_report()
    replanned = plan_run(dataclasses.replace(options, batch_size=batch))
    stop = replanned.stop
    if stop is not None and options.preflight_only and stop.code == errors.EXIT_OK:
        stop = Stop(stop.code, f"{stop.line}; --batch_size auto: batch {batch}")
    return dataclasses.replace(replanned, auto_batch=record, stop=stop)


def _stopped(plan: RunPlan, why) -> RunPlan:
    """The plan ending with `why` (a Stop, or a Finding that stops it before training)."""
    if isinstance(why, Stop):
        return dataclasses.replace(plan, stop=why)
    line = f"error: {why.code}: {why.message}\n  fix: {why.fix}"
    return dataclasses.replace(
        plan, stop=Stop(errors.EXIT_PREFLIGHT, line), findings=(*plan.findings, why)
    )


def _search_batch(plan: RunPlan, fraction: float):
    """Measures batches until one is chosen: an autobatch.Search, or a Stop / Finding."""
    from train import envinfo
    from train.launch import autobatch, runner

    options = plan.options
    folder = autobatch.probe_dir(options.model_dir)
    log_path = os.path.join(folder, "probe.log")
    strategy = launch_plan.strategy_spec(plan.topology)
    env = {**compat.child_environment(), "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "1"}
    host = envinfo.host_memory_bytes()
    if host is None:  # no budget for the host: every batch would "fit"
        return Stop(
            errors.EXIT_PREFLIGHT,
            "error: --batch_size auto: cannot read this machine's memory size (/proc/meminfo)"
            "\n  fix: pass --batch_size N",
        )
    _emit(
        f"batch_size auto: measuring {autobatch.PROBE_STEPS} training steps per batch size on "
        f"{plan.topology.describe()}, within {fraction:g} of the memory "
        f"({autobatch.gigabytes(host)} host{' and each GPU' if strategy.gpus else ''}); "
        f"log: {log_path}"
    )

    def measure(batch: int):
        spec = launch_plan.probe_spec(options.model_dir, batch, strategy, options.freeze)
        config = autobatch.probe_config(
            plan.resolved_config, batch, options.restore == "transplant"
        )
        # From scratch: a killed earlier probe's checkpoint there would be resumed, not measured.
        shutil.rmtree(spec.model_dir, ignore_errors=True)
        files.write_atomic(spec.pipeline_config, configfile.to_text(config))
        return runner.run_probe(spec, batch, env, log_path)

    try:
        found = autobatch.search(measure, strategy.replicas, fraction, host, log_path, _emit)
    except KeyboardInterrupt:
        return Stop(errors.EXIT_INTERRUPTED, "interrupted: nothing was trained")
    except runner.ProbeFailed as e:
        return explain_failure(plan, e.outcome, log_path)
    if found.batch is None:
        return _no_fit(plan, found)
    config_batch = plan.resolved_config.train_config.batch_size
    _emit(
        f"batch_size auto: batch {found.batch} (it ran within every budget: "
        f"{autobatch.describe_budgets(found.budgets)}); the learning rate stays as the config "
        f"has it, set for batch {config_batch}"
    )
    return found


def _no_fit(plan: RunPlan, found) -> Finding:
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


def run(options: RunOptions) -> int:
    """Runs one driver invocation and returns its exit code."""
    # Keep TensorFlow's C++ banner out of the report should anything import it; the children
    # log everything to files.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        compat.apply(with_tensorflow=False)
    except compat.CompatError as e:
        _emit(f"error: ENV: {e}")
        return errors.EXIT_PREFLIGHT
    options, stop = with_data(options)
    if stop is not None:
        return execute(RunPlan(options, stop, duties=_report_unless(options, [])))
    plan = plan_run(options)
    if options.batch_size_auto:
        plan = with_auto_batch(plan)
    return execute(plan)


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


def report_internal_error(
    options: RunOptions, error: BaseException, finding: Finding | None = None
) -> None:
    """Writes --report_json for a driver bug, when it can do so without touching an input."""
    target = options.report_json
    if not target or _report_target_problem(target):
        return
    plan = RunPlan(options, duties=_report_unless(options, []))  # never over the config
    reporter = _Reporter(plan)
    if finding is not None:
        reporter.extra.append(finding)
    reporter.write("failed", errors.EXIT_INTERNAL, f"internal error: {errors.one_line(error)}")
