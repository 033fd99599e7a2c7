"""The tree shows what imports TensorFlow: train/tf/ does, nothing else does at import time."""

from __future__ import annotations

import ast
import os

from tests.conftest import ROOT, run_python
from tests.helpers import demo_driver_args

TRAIN = os.path.join(ROOT, "train")
HEAVY = ("tensorflow", "object_detection", "tf_slim", "keras", "tf_keras")
ALLOWED = ("object_detection.protos",)  # generated protobuf classes: no TensorFlow behind them


def _module_level_imports(path: str) -> list[tuple[int, str]]:
    """(line, module) of every import that runs when the module is imported."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = []

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.Import):
                found.extend((node.lineno, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.append((node.lineno, node.module or ""))
            elif isinstance(node, (ast.If, ast.Try, ast.With)):  # still module level
                visit(node.body)
                visit(getattr(node, "orelse", []))
                visit(getattr(node, "finalbody", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    return found


def _modules_outside_tf() -> list[str]:
    paths = []
    for directory, _, names in os.walk(TRAIN):
        if os.path.join(TRAIN, "tf") in (directory, os.path.dirname(directory)):
            continue
        paths += [os.path.join(directory, n) for n in names if n.endswith(".py")]
    return sorted(paths)


def test_no_module_outside_train_tf_imports_tensorflow_at_import_time():
    offenders = []
    modules = _modules_outside_tf()
    assert len(modules) > 20  # the walk found the package
    for path in modules:
        for line, module in _module_level_imports(path):
            heavy = module.split(".")[0] in HEAVY and not module.startswith(ALLOWED)
            if heavy or module.startswith("train.tf"):
                offenders.append(f"{os.path.relpath(path, ROOT)}:{line}: import {module}")
    assert offenders == []


def test_the_tf_subpackage_is_where_tensorflow_is_imported():
    tf_dir = os.path.join(TRAIN, "tf")
    importing = {
        name
        for name in os.listdir(tf_dir)
        if name.endswith(".py")
        and "import tensorflow" in open(os.path.join(tf_dir, name), encoding="utf-8").read()
    }
    assert {
        "child.py",
        "prepare.py",
        "finish.py",
        "exporting.py",
        "restore.py",
        "standin.py",
    } <= importing


def test_the_driver_process_never_imports_tensorflow(demo_assets, tmp_path):
    args = demo_driver_args(demo_assets, tmp_path / "m", "--preflight_only", "--batch_size=2")
    code = (
        "import sys\n"
        "from train import driver, flags\n"
        "from absl import flags as absl_flags\n"
        f"absl_flags.FLAGS({['prog', *args[2:]]!r})\n"
        "code = driver.run(flags.options_from_flags())\n"
        "from train.launch import board\n"  # what the driver writes before training starts
        f"board.write_run_summaries({str(tmp_path / 'events')!r}, {{'t': 'x'}}, {{'h': 1}}, 0)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{HEAVY!r} and not m.startswith({ALLOWED!r}) and m != 'object_detection')\n"
        "print('LOADED', loaded, 'CODE', code)\n"
    )
    result = run_python(code)
    # Only the OD API's (empty) package and its protos: no TensorFlow, no model code.
    assert "LOADED [] CODE 0" in result.stdout, result.stdout + result.stderr[-3000:]
