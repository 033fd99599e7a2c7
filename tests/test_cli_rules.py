"""The command-line rules every entry point shares (train/cli.py), unit and end to end."""

from __future__ import annotations

import hashlib

import pytest
from absl import flags

from tests.conftest import run_python
from train import cli, errors


@pytest.fixture
def registry():
    """A flag registry of its own, shaped like the commands' flags."""
    values = flags.FlagValues()
    flags.DEFINE_string("checkpoint", None, "", flag_values=values)
    flags.DEFINE_list("export", [], "", flag_values=values)
    flags.DEFINE_multi_string("eval_input_path", [], "", flag_values=values)
    flags.DEFINE_float("min_delta", 0.0, "", lower_bound=0.0, flag_values=values)
    flags.DEFINE_bool("eval", False, "", flag_values=values)
    return values


def _problem(registry, *args):
    registry(["prog", *args])  # absl's own parse first, as cli.parse does
    return cli.problems(list(args), registry)


def test_what_absl_lets_through_is_refused(registry):
    assert _problem(registry, "--checkpoint=a", "--export=tflite", "--eval") is None
    assert _problem(registry, "--checkpoint=a", "--checkpoint", "b") == (
        "--checkpoint is given more than once: give it once (the last would win silently)"
    )
    assert "--export is given more than once" in _problem(
        registry, "--export=saved_model", "--export=tflite"
    )
    assert "--eval is given more than once" in _problem(registry, "--eval", "--noeval")
    assert _problem(registry, "--eval_input_path=a", "--eval_input_path=b") is None  # multi
    assert _problem(registry, "--checkpoint=") == (
        "--checkpoint= is empty: give a value, or leave the flag out for its default"
    )
    assert "is empty" in _problem(registry, "--checkpoint", " ")
    assert _problem(registry, "--export=saved_model,,tflite") == (
        "--export=saved_model,,tflite has an empty item: separate the values with single commas"
    )
    assert "has an empty item" in _problem(registry, "--export=,,")
    for value in ("nan", "inf"):  # NaN passes any bound; inf a lower one
        assert _problem(registry, f"--min_delta={value}") == (
            f"--min_delta={float(value)} is not a finite number"
        ), value


def _run(module: str, *args):
    result = run_python(["-m", module, *[str(a) for a in args]], timeout=120)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def test_every_entry_point_applies_them(tmp_path):
    config, model_dir = tmp_path / "pipeline.config", tmp_path / "m"
    driver = ["train.finetune", f"--pipeline_config={config}", f"--model_dir={model_dir}"]
    cases = [
        (driver + ["--eval", "--min_delta=nan"], "--min_delta=nan is not a finite number"),
        (driver + ["--checkpoint="], "--checkpoint= is empty"),
        (driver + ["--train_input_path="], "--train_input_path= is empty"),
        (driver + ["--export=saved_model", "--export=tflite"], "--export is given more than once"),
        (driver + ["--export=saved_model,,tflite"], "has an empty item"),
        (["train.data", "convert", tmp_path, "--out=x", "--val_fraction=nan"], "not a finite"),
        (["train.data", "convert", tmp_path, "--out="], "--out= is empty"),
        (["train.export", f"--model_dir={tmp_path}", "--export=,,"], "has an empty item"),
        (["train.evaluate", f"--model_dir={tmp_path}", "--checkpoint="], "is empty"),
    ]
    for args, expected in cases:
        result = _run(*args)
        assert result.returncode == errors.EXIT_USAGE, (args, result.stderr[-2000:])
        assert expected in result.stderr.splitlines()[0], (args, result.stderr[-2000:])


def test_eval_only_flags_need_eval_and_the_metric_must_exist(tmp_path):
    driver = ["train.finetune", f"--pipeline_config={tmp_path}/c", f"--model_dir={tmp_path}/m"]
    for flag in ("--best_metric=Loss/total_loss", "--min_delta=0.01", "--patience=2"):
        result = _run(*driver, flag)
        assert result.returncode == errors.EXIT_USAGE, flag
        assert "needs --eval (it applies to the evaluations during training)" in result.stderr
    result = _run(*driver, "--eval", "--best_metric=DetectionBoxes_Precision/mAP@50IOU")
    assert result.returncode == errors.EXIT_USAGE
    assert "is not a metric the evaluation reports (did you mean " in result.stderr
    assert "DetectionBoxes_Precision/mAP@.50IOU?" in result.stderr


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_no_command_writes_a_report_or_export_over_an_input(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    config = model_dir / "pipeline.config"
    config.write_text("model { ssd { num_classes: 3 } }\n")
    before = _digest(config)
    for module in ("train.evaluate", "train.export"):
        result = _run(module, f"--model_dir={model_dir}", f"--report_json={config}")
        assert result.returncode == errors.EXIT_USAGE, result.stderr[-2000:]
        assert f"--report_json {config} exists and is not a JSON report" in result.stderr
    assert _digest(config) == before
    result = _run(
        "train.finetune",
        f"--pipeline_config={config}",
        f"--model_dir={tmp_path / 'other'}",
        f"--report_json={config}",
    )
    assert result.returncode == errors.EXIT_USAGE and _digest(config) == before
    out = tmp_path / "exports"
    out.write_text("mine")
    result = _run("train.export", f"--model_dir={model_dir}", f"--out={out}")
    assert result.returncode == errors.EXIT_USAGE
    assert f"--out {out} is a file" in result.stderr and out.read_text() == "mine"
    zoo = tmp_path / "zoo_download"  # a zoo folder: its saved_model/ would be replaced
    (zoo / "saved_model").mkdir(parents=True)
    (zoo / "saved_model" / "saved_model.pb").write_bytes(b"theirs")
    result = _run("train.export", f"--model_dir={model_dir}", f"--out={zoo}")
    assert result.returncode == errors.EXIT_USAGE
    assert f"--out {zoo} holds files that no export of this tool wrote" in result.stderr
    assert (zoo / "saved_model" / "saved_model.pb").read_bytes() == b"theirs"
