"""The tree shows what imports TensorFlow: train/tf/ does, nothing else does.

Outside train/tf/ no module imports TensorFlow or the OD API's model code, at import time or
inside a function; a function that needs them calls into train/tf/ (a visible door, e.g.
compat.apply -> train.tf.shims, demo.prepare -> train.tf.standin).
"""

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


def _imports_inside_functions(path: str) -> list[tuple[int, str, str]]:
    """(line, function, module) of every absolute import in a function body."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                found.extend((node.lineno, function.name, a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.append((node.lineno, function.name, node.module or ""))
    return found


def _heavy(module: str) -> bool:
    return module.split(".")[0] in HEAVY and not module.startswith(ALLOWED)


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
            if _heavy(module) or module.startswith("train.tf"):
                offenders.append(f"{os.path.relpath(path, ROOT)}:{line}: import {module}")
    assert offenders == []


def test_no_function_outside_train_tf_imports_tensorflow():
    offenders = [
        f"{os.path.relpath(path, ROOT)}:{line}: {function}() imports {module}"
        for path in _modules_outside_tf()
        for line, function, module in _imports_inside_functions(path)
        if _heavy(module)
    ]
    assert offenders == []


def test_the_layout_check_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f():\n    if True:\n        import tensorflow as tf\n"
        "def g():\n    from object_detection.protos import pipeline_pb2\n"
        "    from object_detection.builders import model_builder\n"
    )
    heavy = [(line, fn, m) for line, fn, m in _imports_inside_functions(str(sample)) if _heavy(m)]
    assert heavy == [(3, "f", "tensorflow"), (6, "g", "object_detection.builders")]


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
        "shims.py",
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


def test_modules_and_functions_stay_small():
    """The style's limits: a module past ~600 lines or a function past 80 wants a new room."""
    too_long = []
    for directory, _, names in os.walk(TRAIN):
        for name in [n for n in names if n.endswith(".py")]:
            path = os.path.join(directory, name)
            text = open(path, encoding="utf-8").read()
            where = os.path.relpath(path, ROOT)
            if text.count("\n") > 600:
                too_long.append(f"{where}: {text.count(chr(10))} lines")
            for node in ast.walk(ast.parse(text, path)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > 80:
                        too_long.append(f"{where}:{node.lineno}: {node.name}() {length} lines")
    assert too_long == []
