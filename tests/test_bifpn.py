"""MODEL.bifpn_size: the EfficientDet input sizes the BiFPN cannot take, found from the config
and checked against the real model build (D0-D7, sizes on both sides of the condition)."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from train.options import RunOptions
from train.pipeline import configfile
from train.preflight import Context, checks_pyramid, run_preflight


def _efficientdets(shared_fixtures) -> list[str]:
    found = sorted(
        glob.glob(os.path.join(shared_fixtures, "zoo_tf2", "ssd_efficientdet_d*.config"))
    )
    assert len(found) == 8  # D0-D7
    return found


def _findings(path: str, side: int | None = None, pad_to_max: bool = True, multiple: int = 0):
    source = configfile.load(path)
    config = source.proto
    keep = config.model.ssd.image_resizer.keep_aspect_ratio_resizer
    if side is not None:
        keep.min_dimension = keep.max_dimension = side
    keep.pad_to_max_dimension = pad_to_max
    if multiple:
        config.model.ssd.feature_extractor.pad_to_multiple = multiple
    ctx = Context(options=RunOptions(path, "unused"), source=source, config=config)
    report = run_preflight(ctx, checks=(checks_pyramid.check_bifpn_input_size,))
    return [f for f in report.findings if f.code == "MODEL.bifpn_size"]


def test_the_level_rule():
    assert checks_pyramid.level_mismatch(300, 3, 7) == (6, 5, 6)  # the D7 case: (5, 5) vs (6, 6)
    assert checks_pyramid.level_mismatch(200, 3, 7) == (5, 7, 8)
    assert checks_pyramid.level_mismatch(250, 3, 7) is None  # not a multiple of 128, and fine
    assert all(checks_pyramid.level_mismatch(128 * k, 3, 7) is None for k in range(1, 13))
    assert checks_pyramid.level_mismatch(320, 3, 7) == (6, 5, 6)
    assert checks_pyramid.level_mismatch(320, 3, 5) is None  # fewer levels, weaker rule
    assert checks_pyramid.nearest_working(300, 3, 7) == (256, 377)
    assert checks_pyramid.nearest_working(200, 3, 7) == (None, 249)  # none from 129 up


def test_every_zoo_efficientdet_as_shipped_passes_and_300_px_is_named(shared_fixtures):
    for path in _efficientdets(shared_fixtures):
        assert _findings(path) == [], path  # 512 ... 1536: all fit
        (finding,) = _findings(path, 300)
        assert finding.severity == "error" and finding.line is not None, path
        assert "an input side of 300 px does not fit the BiFPN levels 3-7: level 6 is 5 px" in (
            finding.message
        )
        assert "(5, 5, ...) and (6, 6, ...)" in finding.message
        assert finding.fix.startswith("use an input size of 256 or 377 px (the nearest that fit)")
        assert _findings(path, 256) == [] and _findings(path, 377) == []
        assert _findings(path, 300, multiple=128) == []  # padded to 384


def test_a_varying_input_size_needs_padding(shared_fixtures):
    path = _efficientdets(shared_fixtures)[0]
    (finding,) = _findings(path, pad_to_max=False)
    assert "without pad_to_max_dimension gives each image its own size" in finding.message
    assert "pad_to_multiple: 128" in finding.fix
    assert _findings(path, pad_to_max=False, multiple=128) == []


@pytest.mark.slow
def test_the_rule_agrees_with_the_real_build_from_d0_to_d7(shared_fixtures):
    """Each of D0-D7 built at 300 px (fails), D0 and D7 at sides on both sides of the rule."""
    configs = _efficientdets(shared_fixtures)
    cases = [f"{path}:300" for path in configs]
    cases += [f"{configs[0]}:{side}" for side in (190, 200, 250, 256, 377)]
    cases += [f"{configs[-1]}:256"]
    done = subprocess.run(
        [sys.executable, "-m", "tests.bifpn_builds", *cases],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == len(cases)
    for result in results:
        mismatch = checks_pyramid.level_mismatch(result["side"], 3, 7)
        assert result["ok"] == (mismatch is None), result
        if mismatch:
            assert result["layer"] == f"1_dn_lvl_{mismatch[0]}/combine", result
