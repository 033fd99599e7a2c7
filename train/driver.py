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
import os
import sys

from train import compat, errors, files, records, rendering, results
from train.launch import claim, cluster, runner, specs
from train.options import RunOptions
from train.pipeline import configfile, fields, rewrite
from train.preflight import Context, run_preflight
from train.preflight.findings import ERROR, Finding
from train.reporting import Reporter, emit, end, status_of
from train.runplan import Duties, RunPlan, Stop
from train.stages import batchsize, finishing, training
from train.stages import prepare as preparing

# --- planning (reads, never writes) -----------------------------------------------------------


def _report_target_problem(path: str | None) -> str | None:
    """Why --report_json cannot be written (None when it can, or is not asked)."""
    return None if path is None else files.report_target_problem(path)


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


def _usage_problem(options: RunOptions) -> str | None:
    """Flag combinations no run can honour (exit 2 before anything is read)."""
    try:
        results.parse_formats(options.export)
    except results.UsageError as e:
        return f"--export: {e}"
    defaults = RunOptions(options.pipeline_config, options.model_dir)
    for name in ("best_metric", "min_delta", "patience"):
        if getattr(options, name) != getattr(defaults, name) and not options.eval:
            return f"--{name} needs --eval (it applies to the evaluations during training)"
    unknown = results.unknown_metric(options.best_metric)
    if unknown:
        return unknown
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
        data = use.prepare(use.resolve(options.data, options.model_dir), emit)
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


def _load(options: RunOptions) -> configfile.PipelineFile | RunPlan:
    """The user's config, or the plan that stops before reading it (a usage or parse error)."""
    usage = _usage_problem(options)
    if usage:
        return RunPlan(
            options, Stop(errors.EXIT_USAGE, f"error: {usage}"), duties=Duties(report=False)
        )
    problem = _report_target_problem(options.report_json)
    if problem:
        line = errors.clip(f"error: --report_json {options.report_json} {problem}")
        return RunPlan(options, Stop(errors.EXIT_USAGE, line), duties=Duties(report=False))
    try:
        return configfile.load(options.pipeline_config)
    except configfile.ConfigFileError as e:
        line = f"error: --pipeline_config {e}\n  fix: {e.fix}"
        return RunPlan(options, Stop(errors.EXIT_USAGE, line), duties=_report_unless(options, []))
    except configfile.ConfigParseError as e:
        finding = Finding("PARSE", ERROR, str(e), e.fix, file=e.path, line=e.line)
        return RunPlan(
            options,
            Stop(errors.EXIT_PREFLIGHT, finding.printed()),
            findings=(finding,),
            duties=_report_unless(options, []),
        )


def _topology(options, source, duties, environ, visible_gpus) -> cluster.Topology | RunPlan:
    """Who this process is in the run (workers, GPUs), or the plan that stops: a usage error."""
    try:
        topology = cluster.choose_topology(options.gpus, visible_gpus, environ)
    except cluster.ClusterError as e:
        return RunPlan(
            options, Stop(errors.EXIT_USAGE, f"error: {e}"), source=source, duties=duties
        )
    if options.report_json and not duties.report and topology.is_chief:
        line = (
            f"error: --report_json {options.report_json} is one of this run's inputs; "
            "writing the report there would destroy it\n  fix: name another file, e.g. "
            f"{os.path.join(options.model_dir, 'report.json')}"
        )
        return RunPlan(options, Stop(errors.EXIT_USAGE, line), duties=duties)
    if options.batch_size_auto and topology.num_workers > 1:
        line = (
            f"error: --batch_size auto measures one machine; with {topology.num_workers} "
            "workers pass --batch_size N (find N on one node: the same command with "
            "--batch_size auto --preflight_only, times the number of workers)"
        )
        return RunPlan(options, Stop(errors.EXIT_USAGE, line), source=source, duties=duties)
    return topology


def plan_run(options: RunOptions, environ=None, visible_gpus: int | None = None) -> RunPlan:
    """Plans one invocation (see the module docstring). Reads inputs; writes nothing.

    `environ` (the scheduler's variables) and `visible_gpus` default to this process's.
    """
    from train import envinfo

    loaded = _load(options)
    if isinstance(loaded, RunPlan):
        return loaded
    source = loaded
    config, overrides = rewrite.apply_overrides(source.proto, options)
    duties = _report_unless(options, _inputs(options, config))
    topology = _topology(
        options,
        source,
        duties,
        os.environ if environ is None else environ,
        envinfo.visible_gpus() if visible_gpus is None else visible_gpus,
    )
    if isinstance(topology, RunPlan):
        return topology
    duties = dataclasses.replace(duties, report=duties.report and topology.is_chief)
    preflight = run_preflight(
        Context(options=options, source=source, config=config, topology=topology)
    )
    blocking = preflight.blocking(options.fix)
    fixes = [f for f in preflight.findings if f.fixable] if options.fix == "auto" else []
    fixed_config, fix_changes = rewrite.apply_fixes(config, fixes)
    resolved_config, changes = fixed_config, overrides + fix_changes
    if options.restore == "transplant" and not blocking:
        resolved_config, transplant_changes = rewrite.restore_from_transplant(
            resolved_config, specs.transplant_prefix(options.model_dir)
        )
        changes += transplant_changes
    common = dict(
        options=options,
        lines=(rendering.render_text(preflight, options.fix, changes),),
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
    return _training_plan(common, topology, duties, fixed_config)


def _training_plan(common: dict, topology, duties: Duties, fixed_config) -> RunPlan:
    """The plan of a run that trains: where it writes, what it prepares, how it launches."""
    options, preflight = common["options"], common["preflight"]
    resolved_config = common["resolved_config"]
    previous_run = preflight.previous_run
    fresh = options.fresh and previous_run is not None
    if fresh:
        previous_run = None  # moved aside before training: the run starts from step 0
    work_dir = topology.work_dir(options.model_dir)
    resolved_path = _resolved_path(options, work_dir)
    warning = (
        _config_change_warning(options, resolved_config, resolved_path) if previous_run else None
    )
    prepare, prepare_spec = preparing.prepare_duty(
        options,
        fixed_config,
        resolved_config,
        common["resolved_text"],
        resolved_path,
        topology.is_chief,
    )
    launch = None
    if not options.rehearse:
        launch = specs.build_launch(
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
    return RunPlan(
        **{**common, "lines": common["lines"] + ((warning,) if warning else ())},
        resolved_path=resolved_path,
        previous_run=preflight.previous_run,
        topology=topology,
        duties=duties,
        prepare=prepare_spec,
        launch=launch,
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


def execute(plan: RunPlan) -> int:
    """Carries out a RunPlan and returns the exit code."""
    reporter = Reporter(plan)
    for line in plan.lines:
        emit(line)
    if plan.stop is not None:
        return end(reporter, plan.stop.code, plan.stop.line)
    options, duties = plan.options, plan.duties
    from train.launch import rundir

    if duties.move_aside:
        emit(f"--fresh: moved the earlier run aside to {rundir.move_aside(options.model_dir)}")
    elif duties.wait_for_move and not rundir.wait_until(
        lambda: not os.path.exists(plan.previous_run.prefix + ".index"), timeout_s=600
    ):
        return end(
            reporter,
            errors.EXIT_PREFLIGHT,
            f"error: --fresh: worker 0 did not move {options.model_dir} aside",
        )
    _set_aside_damaged(plan)
    os.makedirs(plan.work_dir, exist_ok=True)
    diff_path = rewrite.write_resolved(plan.resolved_path, plan.source, plan.resolved_text)
    reporter.write("started")
    emit(f"resolved config: {plan.resolved_path} (diff: {diff_path})")
    code = preparing.prepare(plan, reporter)
    if code != errors.EXIT_OK:
        return end(reporter, code, "nothing was trained")
    if options.rehearse:
        return end(reporter, errors.EXIT_OK, "rehearsal passed (--rehearse: not training)")
    trained = training.train(plan, reporter)
    code, ended, launch = trained.code, trained.outcome, plan.launch
    if code == errors.EXIT_OK and ended.memory:
        emit(finishing.memory_line(ended.memory.get("peaks") or {}, plan.auto_batch))
        reporter.results["memory"] = ended.memory
    if code == errors.EXIT_OK and launch.is_chief:
        code = finishing.finish(plan, reporter)
        step = ended.step if ended.step is not None else launch.num_train_steps
        early = " (stopped early)" if "early_stop" in reporter.results else ""
        line = (
            f"done{early}: checkpoints in {launch.model_dir} (ckpt-* at step {step}); "
            f"resolved config {plan.resolved_path}; TensorBoard logs in "
            f"{os.path.join(launch.model_dir, 'train')} (tensorboard --logdir {launch.model_dir})"
        )
        if code != errors.EXIT_OK:
            line = "trained and saved, but the end of the run failed (above)"
        return end(reporter, code, line)
    reporter.write(status_of(code), code, ended.error or ended.detail)
    reporter.page(announce=False)
    return code


def _set_aside_damaged(plan: RunPlan) -> None:
    """MODEL_DIR.damaged (a warning): worker 0 moves the damaged checkpoints aside.

    The OD API then resumes from the newest intact one.
    """
    from train.launch import rundir

    run = plan.previous_run
    if run is None or not run.damaged or run.info is None or plan.options.fresh:
        return
    if plan.launch is None or not plan.launch.is_chief:
        return
    folder = rundir.set_aside_damaged(plan.options.model_dir, run.damaged, run.prefix)
    emit(f"moved the damaged checkpoint(s) to {folder}; resuming from {run.prefix}")


def run(options: RunOptions) -> int:
    """Runs one driver invocation and returns its exit code."""
    # Keep TensorFlow's C++ banner out of the report should anything import it; the children
    # log everything to files.
    compat.quiet_tensorflow()
    try:
        compat.apply(with_tensorflow=False)
    except compat.CompatError as e:
        emit(f"error: ENV: {e}")
        return errors.EXIT_PREFLIGHT
    held, stop = _claimed(options)
    try:
        if stop is None:
            options, stop = with_data(options)
        if stop is not None:
            return execute(RunPlan(options, stop, duties=_report_unless(options, [])))
        plan = plan_run(options)
        if options.batch_size_auto:
            plan = with_auto_batch(plan)
        return execute(plan)
    finally:
        if held is not None:
            claim.release(held)


def _rank() -> int:
    """This process's worker index (0 alone; an invalid cluster is planning's usage error)."""
    try:
        return cluster.choose_topology("none", 0, os.environ).rank
    except cluster.ClusterError:
        return 0


def _claimed(options: RunOptions) -> tuple[claim.Claim | None, Stop | None]:
    """Claims model_dir before anything is written there (launch/claim.py).

    A second run is refused (RUN.in_use); the claim of a driver on this host that was killed
    is held by its training child while that saves and ends, so the driver waits for it.
    --preflight_only takes nothing: it only reports a claim held by another run.
    """
    if _usage_problem(options):
        return None, None  # the usage error is reported as it was
    mine = claim.me(os.environ, sys.argv)
    if options.preflight_only or _rank() != 0:  # worker 0 holds the claim for its run
        holder = claim.probe(options.model_dir)
        if holder is None or (not options.preflight_only and claim.same_run(holder, mine)):
            return None, None
        return None, Stop(errors.EXIT_PREFLIGHT, claim.refusal(options.model_dir, holder).printed())
    taken = claim.take(options.model_dir, mine)
    if taken.refused and (claim.orphaned(taken.holder, mine) or claim.same_run(taken.holder, mine)):
        wait_s = runner.STOP_GRACE_S + 30
        emit(
            f"{options.model_dir}: the run of {taken.holder.named()} was stopped or killed; "
            f"waiting up to {wait_s} s for the training it started to save and end"
        )
        taken = claim.take(options.model_dir, mine, wait_s=wait_s)
    if taken.refused:
        return None, Stop(
            errors.EXIT_PREFLIGHT, claim.refusal(options.model_dir, taken.holder).printed()
        )
    if taken.unsupported:
        emit(
            f"warning: RUN.claim_unsupported: {taken.path}: {taken.unsupported}; nothing stops "
            "a second run on this model_dir"
        )
    elif taken.took_over:
        emit(
            f"{options.model_dir}: taking over the claim of {taken.holder.named()}, which ended "
            "without releasing it (killed)"
        )
    return taken, None


def report_internal_error(
    options: RunOptions, error: BaseException, finding: Finding | None = None
) -> None:
    """Writes --report_json for a driver bug, when it can do so without touching an input."""
    target = options.report_json
    if not target or _report_target_problem(target):
        return
    plan = RunPlan(options, duties=_report_unless(options, []))  # never over the config
    reporter = Reporter(plan)
    if finding is not None:
        reporter.extra.append(finding)
    reporter.write("failed", errors.EXIT_INTERNAL, f"internal error: {errors.one_line(error)}")


def with_auto_batch(plan: RunPlan) -> RunPlan:
    """--batch_size auto (train/stages/batchsize.py), planning again with plan_run."""
    return batchsize.with_auto_batch(plan, plan_run)
