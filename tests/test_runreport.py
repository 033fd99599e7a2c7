"""The run report on a hand-made run folder: what it says, what it escapes, how it renders.

The pages of a trained run and of an interrupted one are tested on real runs in
tests/test_finish.py and tests/test_preemption.py.
"""

from __future__ import annotations

import json

from tests.conftest import run_python
from tests.test_evalcurves import _known
from train import errors, plots, runreport


def _folder(tmp_path, with_plots: bool = True):
    """A run folder with a run.json (one hostile finding) and, optionally, its plots."""
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    run = {
        "outcome": {"status": "ok", "exit_code": 0, "message": "done"},
        "findings": [
            {
                "severity": "warning",
                "code": "DATA.test",
                "message": "a label named <script>alert(1)</script>",
                "fix": "rename it",
            }
        ],
        "command": ["python", "-m", "train.finetune", "--model_dir=m"],
        "versions": {"tensorflow": "2.15.1"},
        "machine": {"cpus": 2},
        "eval": {"final": {"step": 7, "checkpoint": "m/ckpt-1", "metrics": {}, "per_class": {}}},
    }
    (model_dir / "run.json").write_text(json.dumps(run))
    if with_plots:
        found = plots.evaluation_plots(_known(), str(model_dir / "plots"))
        run["curves"] = found
        (model_dir / "run.json").write_text(json.dumps(run))
    return model_dir


def test_the_page_escapes_what_it_shows_and_says_what_is_missing(tmp_path):
    model_dir = _folder(tmp_path, with_plots=False)
    page = runreport.build(str(model_dir))
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "training curves: not drawn for this run." in page
    assert "Nothing was exported." in page
    assert "python -m train.finetune --model_dir=m" in page


def test_a_folder_without_a_driver_report_still_gets_a_page(tmp_path):
    page = runreport.build(str(tmp_path))
    assert "no run.json: not run by the driver" in page


def test_the_page_renders_every_image_without_a_request_out(tmp_path):
    from tests.helpers import render_in_chromium

    model_dir = _folder(tmp_path)
    done = run_python(["-m", "train.report", str(model_dir)])
    assert done.returncode == 0, done.stderr[-2000:]
    seen = render_in_chromium(str(model_dir / runreport.REPORT))
    assert seen["errors"] == []
    assert all(url.startswith(("file:", "data:")) for url in seen["requests"]), seen["requests"]
    loaded = {alt for alt, complete, width in seen["images"] if complete and width > 0}
    assert loaded == {"pr curves", "f1 threshold", "confusion matrix"}
    assert seen["title"] == "m: run report"


def test_report_usage_errors_are_one_line_exit_2(tmp_path):
    done = run_python(["-m", "train.report", str(tmp_path / "absent")])
    assert done.returncode == errors.EXIT_USAGE
    assert (
        done.stderr.strip()
        == f"error: {tmp_path / 'absent'}: no such folder (give the run's model_dir)"
    )


def test_the_command_reads_as_typed():
    import os

    from train import rendering

    package = os.path.dirname(rendering.__file__)
    module = os.path.join(package, "finetune.py")
    assert rendering.command([module, "--model_dir=m"]) == [
        "python",
        "-m",
        "train.finetune",
        "--model_dir=m",
    ]
    main = os.path.join(package, "demo", "__main__.py")
    assert rendering.command([main]) == ["python", "-m", "train.demo"]
    assert rendering.command(["/usr/bin/tfod-finetune", "--x"]) == ["/usr/bin/tfod-finetune", "--x"]
