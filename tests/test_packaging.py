"""The Dockerfile and shell scripts: hadolint, shellcheck, and what the image installs.

Lint, and that the image installs the same lock file through the same installer as CI; the
image itself is built and run by tests/test_container.py (podman, a stand-in base).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

BIN = os.path.dirname(sys.executable)


def _tool(name: str) -> str:
    path = shutil.which(name, path=BIN) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: make setup installs it (constraints/dev.txt)")
    return path


def _shell_scripts() -> list[str]:
    found = [os.path.join(ROOT, ".ci", "run")]
    for pattern in ("scripts/**/*.sh", "scripts/**/*.sbatch", "tests/**/*.sh"):
        found += glob.glob(os.path.join(ROOT, pattern), recursive=True)
    return sorted(found)


def test_every_shell_script_is_shellcheck_clean():
    scripts = _shell_scripts()
    names = {os.path.relpath(p, ROOT) for p in scripts}
    assert {"scripts/slurm/run_step.sh", "scripts/gpu_smoke.sh", ".ci/run"} <= names
    result = subprocess.run([_tool("shellcheck"), *scripts], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_dockerfile_is_hadolint_clean():
    for name in ("Dockerfile", os.path.join("scripts", "container", "standin.Containerfile")):
        result = subprocess.run(
            [_tool("hadolint"), os.path.join(ROOT, name)], capture_output=True, text=True
        )
        assert result.returncode == 0, name + ": " + result.stdout + result.stderr


def _dockerfile() -> str:
    with open(os.path.join(ROOT, "Dockerfile"), encoding="utf-8") as f:
        return f.read()


def test_image_uses_the_primary_stack_lock_and_ci_installer():
    dockerfile = _dockerfile()
    base = re.search(r"^FROM tensorflow/tensorflow:(\S+)-gpu$", dockerfile, re.M)
    with open(os.path.join(ROOT, "constraints", "tf215-cpu.txt"), encoding="utf-8") as f:
        pinned = re.search(r"^tensorflow-cpu==(\S+)$", f.read(), re.M).group(1)
    assert base and base.group(1) == pinned  # the image's TF is the lock's TF
    assert "bash scripts/setup_env.sh tf215-image" in dockerfile
    with open(os.path.join(ROOT, "scripts", "setup_env.sh"), encoding="utf-8") as f:
        installer = f.read()
    assert re.search(r'tf215-image\) lock="\$root/constraints/tf215-cpu\.txt"', installer)
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, re.M):
        for path in source.split():
            assert os.path.exists(os.path.join(ROOT, path.rstrip("/"))), path


def test_image_runs_the_driver_as_a_non_root_user():
    dockerfile = _dockerfile()
    users = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert re.search(r'^ENTRYPOINT \["python", "-m", "train.finetune"\]$', dockerfile, re.M)
    with open(os.path.join(ROOT, ".dockerignore"), encoding="utf-8") as f:
        ignored = f.read().split()
    assert {".venv", ".git"} <= set(ignored)


def test_slurm_scripts_request_signal_and_requeue_and_log_per_job():
    for name in ("single_node.sbatch", "multi_node.sbatch"):
        with open(os.path.join(ROOT, "scripts", "slurm", name), encoding="utf-8") as f:
            text = f.read()
        assert re.search(r"^#SBATCH --signal=B:USR2@\d+$", text, re.M), name
        assert "#SBATCH --requeue" in text and "#SBATCH --open-mode=append" in text
        assert re.search(r"^#SBATCH --output=\S*%j\S*$", text, re.M), name
