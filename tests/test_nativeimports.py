"""ENV.import: a compiled module the training child imports that cannot load its system library.

The failure is real: a `cv2` extension module compiled here against a shared library that is
then deleted, put first on PYTHONPATH, fails in the dynamic loader exactly as opencv-python
does without libGL.so.1 ("cannot open shared object file").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from tests.conftest import DEMO_CONFIG, ROOT
from train import errors, nativeimports

_LIBRARY = "libtfodgone.so.1"
_EXTENSION = """
#include <Python.h>
extern int tfod_gone(void);
static PyObject *gone(PyObject *self, PyObject *args) { return PyLong_FromLong(tfod_gone()); }
static PyMethodDef methods[] = {{"gone", gone, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "cv2", NULL, -1, methods};
PyMODINIT_FUNC PyInit_cv2(void) { return PyModule_Create(&module); }
"""


@pytest.fixture(scope="module")
def broken_cv2(tmp_path_factory) -> str:
    """A folder holding a `cv2` extension whose shared library no longer exists."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler to build the broken extension")
    folder = tmp_path_factory.mktemp("broken_cv2")
    lib_dir = tmp_path_factory.mktemp("gone_lib")
    (lib_dir / "gone.c").write_text("int tfod_gone(void) { return 7; }\n")
    (folder / "cv2.c").write_text(_EXTENSION)
    library = lib_dir / _LIBRARY
    subprocess.run(
        [gcc, "-shared", "-fPIC", f"-Wl,-soname,{_LIBRARY}", "-o", str(library), "gone.c"],
        cwd=lib_dir,
        check=True,
    )
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    include = sysconfig.get_paths()["include"]
    subprocess.run(
        [gcc, "-shared", "-fPIC", f"-I{include}", "-o", f"cv2{suffix}", "cv2.c", str(library)],
        cwd=folder,
        check=True,
    )
    library.unlink()  # what a slim image is: the wheel's library dependency is not there
    return str(folder)


def _env(folder: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": folder, "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_the_probe_names_the_module_the_library_and_the_fix(broken_cv2):
    failures = nativeimports.probe(_env(broken_cv2))
    cv2 = [f for f in failures if f["failing"] == "cv2"]
    assert cv2 and cv2[0]["library"] == _LIBRARY, failures
    found = nativeimports.finding(cv2[0])
    assert found.code == "ENV.import" and found.severity == "error"
    assert "cannot import cv2" in found.message and _LIBRARY in found.message
    assert f"apt-file search {_LIBRARY}" in found.fix


def test_the_probe_finds_nothing_on_the_installed_stack():
    assert nativeimports.probe() == []


def test_a_known_library_gets_its_system_package_and_opencv_the_headless_wheel():
    failure = {
        "module": "lvis",
        "failing": "cv2",
        "error": "ImportError: libGL.so.1: cannot open shared object file: No such file",
        "path": None,
    }
    found = nativeimports.finding({**nativeimports._described(failure), "package": "opencv-python"})
    assert "cannot import cv2 (package opencv-python), imported through lvis" in found.message
    assert "libGL.so.1 is missing" in found.message
    assert "opencv-python-headless" in found.fix and "apt-get install -y libgl1" in found.fix


def test_the_preflight_stops_before_training_with_one_line(broken_cv2, demo_assets, tmp_path):
    report = tmp_path / "report.json"
    model_dir = tmp_path / "m"
    argv = [
        sys.executable,
        "-m",
        "train.finetune",
        f"--pipeline_config={DEMO_CONFIG}",
        f"--model_dir={model_dir}",
        f"--checkpoint={demo_assets['zoo']}",
        f"--label_map={demo_assets['label_map']}",
        f"--train_input_path={demo_assets['train']}",
        f"--eval_input_path={demo_assets['eval']}",
        f"--report_json={report}",
        "--preflight_only",
    ]
    done = subprocess.run(
        argv, env=_env(broken_cv2), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == errors.EXIT_PREFLIGHT, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "ENV.import" in line]
    assert len(lines) == 1 and "cv2" in lines[0] and _LIBRARY in lines[0], done.stderr
    codes = [f["code"] for f in json.loads(report.read_text())["findings"]]
    assert "ENV.import" in codes


@pytest.mark.slow
def test_a_child_that_dies_importing_reports_the_module_and_library(broken_cv2, tmp_path):
    from train.contracts import FAILED, Outcome, TrainSpec

    spec = TrainSpec(
        pipeline_config=DEMO_CONFIG,
        model_dir=str(tmp_path / "m"),
        num_train_steps=1,
        checkpoint_every_n=1,
        checkpoint_max_to_keep=1,
        num_steps_per_iteration=1,
        restore_report=str(tmp_path / "restore.json"),
        outcome=str(tmp_path / "outcome.json"),
    )
    spec_path = tmp_path / "train_spec.json"
    spec.write(str(spec_path))
    done = subprocess.run(
        [sys.executable, "-m", "train.tf.child", str(spec_path)],
        env=_env(broken_cv2),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == errors.EXIT_TRAINING, done.stdout + done.stderr
    outcome = Outcome.read(spec.outcome)
    assert outcome.status == FAILED and outcome.code == "ENV.import" and outcome.phase == "import"
    assert outcome.failed_import["failing"] == "cv2"
    assert outcome.failed_import["library"] == _LIBRARY
    found = nativeimports.finding(outcome.failed_import, "logs/train.log")
    assert "cannot import cv2" in found.message and found.fix.endswith("(log: logs/train.log)")


_MAPPED = """
import os, sys
{imports}
site = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
found = set()
for line in open("/proc/self/maps"):
    path = line.split()[-1]
    for root in site:
        if path.startswith(root + "/") and ".so" in path:
            found.add(path[len(root) + 1:].split("/")[0])
print(" ".join(sorted(found)))
"""


def _mapped_package_folders(imports: str) -> set[str]:
    code = _MAPPED.format(imports=imports)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return set(done.stdout.split())


@pytest.mark.slow
def test_the_probe_loads_every_compiled_library_the_childs_imports_load_but_tensorflows():
    """The list in nativeimports stays what importing the OD API's training module loads."""
    child = _mapped_package_folders(
        "from train import compat\ncompat.apply()\nfrom object_detection import model_lib_v2"
    )
    probed = _mapped_package_folders(
        "import importlib\nfrom train import nativeimports\n"
        "for name in nativeimports.CHILD_NATIVE_IMPORTS:\n    importlib.import_module(name)"
    )
    tensorflow_own = {folder for folder in child if folder.startswith("tensorflow")}
    assert "cv2" in child and "scipy" in child  # the libraries this is about are seen
    assert child - tensorflow_own <= probed, sorted(child - tensorflow_own - probed)


def test_a_passed_probe_is_remembered_and_a_changed_setup_probed_again(
    broken_cv2, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    env = dict(os.environ)
    assert nativeimports.probe_cached(env) == []
    (marker,) = os.listdir(nativeimports.cache_dir())
    assert nativeimports._cache_key(env, sys.executable) == marker  # noqa: SLF001
    assert nativeimports.probe_cached(env) == []  # answered by the marker
    # Another PYTHONPATH (here: a cv2 whose library is gone) is another setup: probed.
    failures = nativeimports.probe_cached({**env, "PYTHONPATH": broken_cv2})
    assert [f["failing"] for f in failures] == ["cv2"]
    assert os.listdir(nativeimports.cache_dir()) == [marker]  # a failure is never remembered
