"""The CLI contract: exit codes, one-line errors, reports, and the input never modified."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from tests.conftest import DEMO_CONFIG, run_python
from tests.helpers import demo_driver_args
from train import errors

CLI = ["-m", "train.finetune"]


def _digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _assert_no_traceback(result):
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        ([], "missing required flag(s): --pipeline_config, --model_dir"),
        (
            ["--pipeline_config=x", "--model_dir=y", "--bogus=1"],
            "Unknown command line flag 'bogus'",
        ),
        (["--pipeline_config=x", "--model_dir=y", "--fix=sometimes"], "--fix"),
        (["--pipeline_config=x", "--model_dir=y", "--num_train_steps=0"], "num_train_steps"),
        (["--pipeline_config=x", "--model_dir=y", "stray"], "unexpected arguments: stray"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, needle):
    result = run_python(CLI + args)
    assert result.returncode == errors.EXIT_USAGE
    assert needle in result.stderr.splitlines()[0]
    _assert_no_traceback(result)


def test_missing_config_is_a_usage_error(tmp_path):
    result = run_python(
        CLI + [f"--pipeline_config={tmp_path}/nope.config", f"--model_dir={tmp_path}/m"]
    )
    assert result.returncode == errors.EXIT_USAGE
    assert f"error: --pipeline_config {tmp_path}/nope.config does not exist" in result.stderr
    _assert_no_traceback(result)


def test_parse_error_names_file_line_column(tmp_path):
    config = tmp_path / "bad.config"
    config.write_text("model {\n  ssd {\n    num_clases: 3\n  }\n}\n")
    result = run_python(CLI + [f"--pipeline_config={config}", f"--model_dir={tmp_path}/m"])
    assert result.returncode == errors.EXIT_PREFLIGHT
    assert f"PARSE: {config}:3:5:" in result.stderr
    _assert_no_traceback(result)


def test_zoo_config_without_paths_fails_preflight_and_starts_nothing(tmp_path):
    before = _digest(DEMO_CONFIG)
    report = tmp_path / "report.json"
    result = run_python(
        CLI
        + [
            f"--pipeline_config={DEMO_CONFIG}",
            f"--model_dir={tmp_path}/m",
            f"--report_json={report}",
        ]
    )
    assert result.returncode == errors.EXIT_PREFLIGHT
    assert result.stderr.count("PLACEHOLDER:") == 5
    assert not (tmp_path / "m").exists()
    codes = [f["code"] for f in json.loads(report.read_text())["findings"]]
    assert codes.count("PLACEHOLDER") == 5
    assert _digest(DEMO_CONFIG) == before
    _assert_no_traceback(result)


def _demo_args(assets, model_dir, *extra, **kwargs):
    return demo_driver_args(assets, model_dir, "--batch_size=2", *extra, **kwargs)


def test_preflight_only_json_report(demo_assets, tmp_path):
    report = tmp_path / "r.json"
    result = run_python(
        _demo_args(
            demo_assets,
            tmp_path / "m",
            "--preflight_only",
            "--num_train_steps=5",
            f"--report_json={report}",
        )
    )
    assert result.returncode == errors.EXIT_OK, result.stderr
    assert "[fixed in the resolved config]" in result.stderr
    document = json.loads(report.read_text())
    assert set(document) >= {"findings", "checkpoint", "config", "versions"}
    for finding in document["findings"]:
        assert set(finding) >= {"code", "severity", "message", "fix", "fixable"}
    assert {f["code"] for f in document["findings"] if f["severity"] == "error"} == {
        "CKPT_PATH.tarball_root",
        "CKPT_TYPE",
        "NUM_CLASSES",
    }
    assert document["checkpoint"]["kind"] == "detection"
    assert document["config"]["num_classes"] == 3
    assert "model.ssd.num_classes" in {c["field"] for c in document["config"]["changes"]}
    assert document["versions"]["tf-models-research-object-detection"] == "2.8.0.post1"
    assert not (tmp_path / "m").exists()


def test_fix_never_turns_fixable_findings_into_a_failure(demo_assets, tmp_path):
    result = run_python(
        _demo_args(demo_assets, tmp_path / "m", "--fix=never", "--num_train_steps=5")
    )
    assert result.returncode == errors.EXIT_PREFLIGHT
    assert "[fixable: --fix=auto]" in result.stderr
    assert "cannot fix" in result.stderr.splitlines()[-1]
    _assert_no_traceback(result)


@pytest.mark.slow
def test_resolved_config_never_overwrites_the_input(demo_assets, tmp_path):
    # Tutorial layout: models/my_ssd/pipeline.config with --model_dir models/my_ssd.
    model_dir = tmp_path / "my_ssd"
    model_dir.mkdir()
    config = model_dir / "pipeline.config"
    shutil.copy(DEMO_CONFIG, config)
    before = _digest(config)
    result = run_python(_demo_args(demo_assets, model_dir, "--dry_run", config=config))
    assert result.returncode == errors.EXIT_OK, result.stderr[-3000:]
    resolved = model_dir / "pipeline.resolved.config"
    assert f"resolved config: {resolved}" in result.stderr
    assert "num_classes: 3" in resolved.read_text()
    assert _digest(config) == before  # still the zoo text: 90 classes, placeholders


def test_gpus_flag_naming_an_absent_gpu_is_a_usage_error(demo_assets, tmp_path):
    from train import envinfo

    absent = envinfo.visible_gpus()  # indices run 0..N-1 on any machine, GPU or not
    result = run_python(_demo_args(demo_assets, tmp_path / "m", f"--gpus={absent}"))
    assert result.returncode == errors.EXIT_USAGE
    expected = f"--gpus={absent}: GPU {absent} is not visible ({absent} visible"
    assert expected in result.stderr.splitlines()[-1]
    assert not (tmp_path / "m").exists()


def _earlier_run(assets, model_dir):
    from tests.helpers import model_variables, write_checkpoint

    variables = model_variables(assets["prefix"])
    head = (
        "model/_box_predictor/_prediction_heads/class_predictions_with_background/"
        "_class_predictor_layers/0/bias"
    )
    variables[head] = [24]  # the demo's 3-class head
    write_checkpoint(str(model_dir), variables, step=4, optimizer="momentum")


def test_noresume_refuses_and_fresh_moves_the_earlier_run_aside(demo_assets, tmp_path):
    model_dir = tmp_path / "m"
    _earlier_run(demo_assets, model_dir)
    before = sorted(os.listdir(model_dir))

    refused = run_python(_demo_args(demo_assets, model_dir, "--noresume"))
    assert refused.returncode == errors.EXIT_PREFLIGHT
    assert "MODEL_DIR.exists" in refused.stderr and "--fresh" in refused.stderr
    assert sorted(os.listdir(model_dir)) == before

    fresh = run_python(_demo_args(demo_assets, model_dir, "--fresh", "--dry_run"))
    assert fresh.returncode == errors.EXIT_OK, fresh.stderr[-3000:]
    moved = [p for p in os.listdir(tmp_path) if p.startswith("m.moved-")]
    assert len(moved) == 1 and f"moved the earlier run aside to {tmp_path / moved[0]}" in (
        fresh.stderr
    )
    assert sorted(os.listdir(tmp_path / moved[0])) == before  # nothing lost, nothing added
    assert not (model_dir / "checkpoint").exists()


def test_dry_run_says_the_model_does_not_build_instead_of_blaming_the_checkpoint(
    demo_assets, tmp_path
):
    # Anchors for levels 3-6 on an FPN of levels 3-7: the OD API would fail building the model;
    # the preflight mirrors the rule, so --dry_run (--rehearse) stops before any build.
    config = tmp_path / "anchors.config"
    text = open(DEMO_CONFIG).read()
    anchors = text.index("multiscale_anchor_generator")
    config.write_text(text[:anchors] + text[anchors:].replace("max_level: 7", "max_level: 6", 1))
    result = run_python(_demo_args(demo_assets, tmp_path / "m", "--dry_run", config=config))
    assert result.returncode == errors.EXIT_PREFLIGHT, result.stderr[-3000:]
    _assert_no_traceback(result)
    line = [x for x in result.stderr.splitlines() if "error   MODEL.anchor_layers:" in x][0]
    assert "multiscale_anchor_generator levels 3-6" in line and "FPN levels 3-7" in line
    assert "preflight found 1 error(s) it cannot fix" in result.stderr  # this one, not the ckpt
    assert "error: RESTORE" not in result.stderr
    assert not (tmp_path / "m" / "logs" / "prepare.log").exists()  # stopped before any build


def test_a_malformed_contract_file_is_an_internal_finding_naming_it(demo_assets, tmp_path):
    """A file between the driver and its children that does not hold its class: INTERNAL."""
    import json

    from tests.helpers import demo_driver_args
    from train.contracts import ContractError, TransplantSource

    model_dir = tmp_path / "m"
    source = model_dir / "transplant" / "source.json"
    source.parent.mkdir(parents=True)
    source.write_text(json.dumps({"checkpoint": "x", "config_sha": "renamed on one side"}))
    with pytest.raises(ContractError, match="config_sha"):
        TransplantSource.read(str(source))
    assert TransplantSource.read(str(tmp_path / "absent.json")) is None  # absent is not an error
    report = tmp_path / "report.json"
    result = run_python(
        demo_driver_args(
            demo_assets,
            model_dir,
            "--restore=transplant",  # planning reads the transplant's record: a malformed one
            "--num_train_steps=1",
            f"--report_json={report}",
        )
    )
    assert result.returncode == errors.EXIT_INTERNAL, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: INTERNAL")]
    assert str(source) in line and "config_sha" in line
    (finding,) = [f for f in json.loads(report.read_text())["findings"] if f["code"] == "INTERNAL"]
    assert finding["file"] == str(source)
