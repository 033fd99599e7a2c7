"""--batch_size auto: the largest batch that fits, measured before the run is planned again."""

from __future__ import annotations

import dataclasses
import os
import shutil

from train import compat, errors, files
from train.launch import specs
from train.outcomes import explain_failure, no_fit
from train.pipeline import configfile
from train.preflight.findings import Finding
from train.reporting import emit
from train.runplan import RunPlan, Stop

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


def with_auto_batch(plan: RunPlan, replan) -> RunPlan:
    """--batch_size auto: the plan again with the batch measured to fit (or a Stop).

    Runs after a preflight that passed (with the config's batch) and before anything is
    written but model_dir/batch_probe: a few short training processes at growing batch sizes
    (train.launch.autobatch), then the whole plan at the chosen batch, so the preflight's
    findings and the resolved config are those of the batch that trains. A run being resumed
    keeps its batch. `replan(options)` is train.driver.plan_run.
    """
    options = plan.options
    if plan.stop is not None and not (options.preflight_only and plan.stop.code == errors.EXIT_OK):
        return plan
    if options.rehearse:
        note = "batch_size auto: not measured (--rehearse trains nothing)"
        return dataclasses.replace(plan, lines=(*plan.lines, note))
    batch = previous_batch(plan)
    if batch is not None:
        emit(f"batch_size auto: {batch}, as the run being resumed ({plan.resolved_path})")
        record = {"batch": batch, "resumed_run": plan.resolved_path}
    else:
        fraction = options.memory_fraction or DEFAULT_MEMORY_FRACTION
        found = _search_batch(plan, fraction)
        if isinstance(found, Stop | Finding):
            return _stopped(plan, found)
        batch, record = found.batch, found.to_report()
    replanned = replan(dataclasses.replace(options, batch_size=batch))
    stop = replanned.stop
    if stop is not None and options.preflight_only and stop.code == errors.EXIT_OK:
        stop = Stop(stop.code, f"{stop.line}; --batch_size auto: batch {batch}")
    return dataclasses.replace(replanned, auto_batch=record, stop=stop)


def _stopped(plan: RunPlan, why) -> RunPlan:
    """The plan ending with `why` (a Stop, or a Finding that stops it before training)."""
    if isinstance(why, Stop):
        return dataclasses.replace(plan, stop=why)
    line = why.printed()
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
    strategy = specs.strategy_spec(plan.topology)
    env = {**compat.child_environment(), "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "1"}
    host = envinfo.host_memory_bytes()
    if host is None:  # no budget for the host: every batch would "fit"
        return Stop(
            errors.EXIT_PREFLIGHT,
            "error: --batch_size auto: cannot read this machine's memory size (/proc/meminfo)"
            "\n  fix: pass --batch_size N",
        )
    emit(
        f"batch_size auto: measuring {autobatch.PROBE_STEPS} training steps per batch size on "
        f"{plan.topology.describe()}, within {fraction:g} of the memory "
        f"({autobatch.gigabytes(host)} host{' and each GPU' if strategy.gpus else ''}); "
        f"log: {log_path}"
    )

    def measure(batch: int):
        spec = specs.probe_spec(options, batch, strategy)
        config = autobatch.probe_config(
            plan.resolved_config, batch, options.restore == "transplant"
        )
        # From scratch: a killed earlier probe's checkpoint there would be resumed, not measured.
        shutil.rmtree(spec.model_dir, ignore_errors=True)
        files.write_atomic(spec.pipeline_config, configfile.to_text(config))
        return runner.run_probe(spec, batch, env, log_path)

    try:
        found = autobatch.search(measure, strategy.replicas, fraction, host, log_path, emit)
    except KeyboardInterrupt:
        return Stop(errors.EXIT_INTERRUPTED, "interrupted: nothing was trained")
    except runner.ProbeFailed as e:
        return explain_failure(plan, e.outcome, log_path)
    if found.batch is None:
        return no_fit(plan, found)
    config_batch = plan.resolved_config.train_config.batch_size
    emit(
        f"batch_size auto: batch {found.batch} (it ran within every budget: "
        f"{autobatch.describe_budgets(found.budgets)}); the learning rate stays as the config "
        f"has it, set for batch {config_batch}"
    )
    return found
