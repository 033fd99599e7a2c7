"""What `python -m train.evaluate` and `python -m train.export` share: spec, run, report.

Both work on any run, including one trained without this driver: the config is
`--pipeline_config` or model_dir's own pipeline.config, the checkpoint `--checkpoint` or the
newest in model_dir (always pinned by prefix, never "whatever the state file says" inside the
child). `spec_of` is pure apart from reading the config and checkpoint index; `run` executes.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from train import envinfo, errors, exportformats, files, results
from train.contracts import FinishSpec


@dataclasses.dataclass(frozen=True)
class Request:
    """One evaluate / export invocation (flags, frozen once by the entry point)."""

    model_dir: str
    checkpoint: str | None = None
    pipeline_config: str | None = None
    eval_input_path: tuple[str, ...] = ()
    label_map: str | None = None
    report_json: str | None = None
    evaluate: bool = False
    formats: tuple[str, ...] = ()
    input_type: str = "image_tensor"
    tflite_quantize: str = "none"
    verify_images: int = results.DEFAULT_VERIFY_IMAGES
    out: str | None = None


def spec_of(request: Request) -> tuple[FinishSpec, str | None]:
    """(the FinishSpec, the derived config text to write or None); UsageError on bad input."""
    from train.checkpoint import identify, resolve
    from train.pipeline import configfile

    model_dir = os.path.abspath(request.model_dir)
    if not os.path.isdir(model_dir):
        raise results.UsageError(f"--model_dir {request.model_dir} is not a folder")
    if request.report_json and (problem := files.report_target_problem(request.report_json)):
        raise results.UsageError(f"--report_json {request.report_json} {problem}")
    if request.out and (problem := exportformats.out_problem(request.out)):
        raise results.UsageError(f"--out {request.out} {problem}")
    config_path = request.pipeline_config or os.path.join(model_dir, "pipeline.config")
    try:
        source = configfile.load(config_path)
    except configfile.ConfigError as e:
        raise results.UsageError(
            f"--pipeline_config {e} (fix: pass --pipeline_config, the config the run trained "
            "with; model_main_tf2 does not copy it into model_dir)"
        ) from None
    config = source.proto
    memory = envinfo.host_memory_bytes()
    for _, (code, _, message, fix) in exportformats.problems(config, request.formats, memory):
        raise results.UsageError(f"{code}: {config_path}: {message}\n  fix: {fix}")
    if request.checkpoint:
        found = resolve.resolve(request.checkpoint)
        if found.prefix is None:
            raise results.UsageError(f"--checkpoint {found.message or request.checkpoint}")
        checkpoint = found.prefix
    else:
        checkpoint = resolve.latest_in_dir(model_dir)
        if checkpoint is None:
            raise results.UsageError(
                f"--model_dir {request.model_dir} holds no checkpoint (no *.index); pass "
                "--checkpoint PREFIX"
            )
    derived = None
    if request.eval_input_path or request.label_map:
        if not config.eval_input_reader:
            config.eval_input_reader.add().CopyFrom(config.train_input_reader)
        reader = config.eval_input_reader[0]
        if request.eval_input_path:
            reader.tf_record_input_reader.ClearField("input_path")
            reader.tf_record_input_reader.input_path.extend(request.eval_input_path)
        if request.label_map:
            reader.label_map_path = request.label_map
            config.train_input_reader.label_map_path = request.label_map
        derived = configfile.to_text(config)
        config_path = os.path.join(model_dir, "logs", "finish.pipeline.config")
    if request.evaluate and not results.eval_paths(config):
        raise results.UsageError(
            f"{config_path} has no eval records (eval_input_reader); pass --eval_input_path"
        )
    step = identify.inspect(checkpoint).global_step or 0
    spec = results.finish_spec(
        model_dir,
        config_path,
        config,
        checkpoint,
        step,
        evaluate=request.evaluate,
        formats=request.formats,
        input_type=request.input_type,
        tflite_quantize=request.tflite_quantize,
        verify_images=request.verify_images,
        export_dir=request.out,
        label_map=request.label_map,
    )
    return spec, derived


def run(request: Request) -> int:
    """Plans, runs train/tf/finish.py, prints, writes --report_json; the exit code."""
    from train import compat
    from train.launch import runner

    def emit(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    compat.quiet_tensorflow()
    compat.apply(with_tensorflow=False)
    try:
        spec, derived = spec_of(request)
    except results.UsageError as e:
        emit(f"error: {errors.clip(str(e))}")
        return errors.EXIT_USAGE
    if derived is not None:
        os.makedirs(os.path.dirname(spec.pipeline_config), exist_ok=True)
        files.write_atomic(spec.pipeline_config, derived)
    ended = runner.finish(spec, emit)
    code, report = ended.code, ended.report
    if request.report_json:
        import json

        document = {
            "outcome": {"status": "ok" if code == 0 else "failed", "exit_code": code},
            "findings": [ended.finding.as_dict()] if ended.finding else [],
            "eval": {"final": report.eval} if report and report.eval else None,
            "export": report.export if report else None,
            "contact_sheet": report.contact_sheet if report else None,
        }
        files.write_atomic(request.report_json, json.dumps(document, indent=2, sort_keys=True))
    return code


def best_checkpoint(model_dir: str | None) -> str | None:
    """model_dir/best's checkpoint when the run kept one (train.export's default)."""
    from train.checkpoint import resolve

    return resolve.latest_in_dir(results.best_dir(model_dir)) if model_dir else None


def parse_flags(argv: list[str]) -> list[str]:
    """The shared command-line rules (train/cli.py)."""
    from train import cli

    return cli.parse(argv)
