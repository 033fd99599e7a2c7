"""Shared fixtures.

Third-party fixtures (../shared/fixtures: real zoo configs and checkpoint indexes) are read at
run time from $TFOD_SHARED_FIXTURES, which .ci/run sets; tests that need them skip with the
reason when it is unset (a user's clone has no ../shared). Everything else uses data the tests
generate. In CI (.ci/run sets TFOD_REQUIRE_ALL=1) a test that cannot run for want of the
fixtures or of root fails instead: CI must not pass while skipping the evidence.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CONFIG = os.path.join(ROOT, "configs", "ssd_mobilenet_v2_fpnlite_320x320.config")


# The slowest files first (docs/measurements.md): `make test` runs two workers that each take
# a whole file at a time (--dist loadfile), so a long file started last would run alone at
# the end while the other worker idles. Longest first keeps both busy to the end. xdist keeps
# this order only with --no-loadscope-reorder (the Makefile passes it): by default it hands
# out the files with the most tests first, which put the container and the demo at the end.
SLOWEST_FIRST = (  # by CI's --durations=0 on this stop's code (a fresh machine's order)
    "test_demo.py",
    "test_container.py",  # ~7 min on a fresh machine: podman, the base image's packages
    "test_export_standins.py",
    "test_zoo_standins.py",  # ~4 min on a fresh machine: the 40 stand-ins' variable lists
    "test_restore.py",
    "test_slurm.py",
    "test_rehearsal.py",
    "test_oom.py",
    "test_finish.py",
    "test_autobatch_train.py",
    "test_faults.py",
    "test_freeze.py",
    "test_tracing.py",
    "test_bifpn.py",
    "test_nan_guard.py",
    "test_data_driver.py",
    "test_preemption.py",
    "test_user_configs_train.py",
)


def pytest_collection_modifyitems(config, items):
    """Orders the files slowest first; the tests inside a file keep their order."""
    del config
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.path)), len(rank)))


def pytest_configure(config):
    # Tests import TensorFlow directly; on Keras-3 stacks the legacy-Keras switch must come first.
    from train import compat

    compat.apply(with_tensorflow=False)
    config.addinivalue_line("markers", "slow: trains or builds models (tens of seconds)")
    config.addinivalue_line("markers", "stack: run on every supported TF stack in CI")
    config.addinivalue_line("markers", "data: annotation conversion and record checks")


def skip_unless_required(reason: str) -> None:
    """Skips the test with `reason`; in CI (TFOD_REQUIRE_ALL=1) fails it instead."""
    if os.environ.get("TFOD_REQUIRE_ALL") == "1":
        pytest.fail(f"{reason} (CI runs every test: TFOD_REQUIRE_ALL=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_fixtures() -> str:
    """Path of ../shared/fixtures, or skip (fail in CI)."""
    path = os.environ.get("TFOD_SHARED_FIXTURES")
    if not path or not os.path.isdir(path):
        skip_unless_required(
            "third-party fixtures absent: set TFOD_SHARED_FIXTURES to ../shared/fixtures"
        )
    return path


@pytest.fixture(scope="session")
def demo_assets(tmp_path_factory) -> dict[str, str]:
    """Synthetic dataset + the inert stand-in FPNLite zoo folder (built once per session).

    Inert: these runs are about the driver, and a stand-in that learns can diverge at batch 1
    (tests/test_demo.py runs the demo's learnable one).
    """
    from train.demo import __main__ as demo

    out = tmp_path_factory.mktemp("demo_assets")
    paths = demo.prepare(str(out), learnable=False)
    paths["prefix"] = os.path.join(paths["zoo"], "checkpoint", "ckpt-0")
    return paths


def run_python(code_or_args, env_extra=None, timeout=600):
    """Runs a fresh Python (so import-time shims start clean); returns CompletedProcess.

    `env_extra` values of None remove the variable.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env_extra or {})}
    env = {k: v for k, v in env.items() if v is not None}
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else list(code_or_args)
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout
    )


def preflight(config_path, model_dir, topology=None, **kwargs):
    """The preflight report for a config file and RunOptions fields, in-process."""
    from train.options import RunOptions
    from train.pipeline import configfile, rewrite
    from train.preflight import Context, run_preflight

    options = RunOptions(pipeline_config=str(config_path), model_dir=str(model_dir), **kwargs)
    source = configfile.load(str(config_path))
    config, _ = rewrite.apply_overrides(source.proto, options)
    return run_preflight(Context(options=options, source=source, config=config, topology=topology))


@pytest.fixture
def good_options(demo_assets):
    return dict(
        checkpoint=demo_assets["prefix"],
        label_map=demo_assets["label_map"],
        train_input_path=(demo_assets["train"],),
        eval_input_path=(demo_assets["eval"],),
        num_train_steps=10,
        batch_size=2,
    )


@pytest.fixture
def good_config(tmp_path, demo_assets, good_options):
    """The demo config with every fix applied: the correct setup."""
    from train.options import RunOptions
    from train.pipeline import configfile, rewrite
    from train.preflight import Context, run_preflight

    source = configfile.load(DEMO_CONFIG)
    options = RunOptions(pipeline_config=DEMO_CONFIG, model_dir=str(tmp_path / "m"), **good_options)
    config, _ = rewrite.apply_overrides(source.proto, options)
    report = run_preflight(Context(options=options, source=source, config=config))
    fixed, _ = rewrite.apply_fixes(config, [f for f in report.findings if f.fixable])
    path = tmp_path / "good.config"
    path.write_text(configfile.to_text(fixed))
    return path
