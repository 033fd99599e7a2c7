"""Compiled modules the training child imports: checked before training, named when they fail.

Why this exists: the OD API imports `lvis`, which imports `cv2`. The `opencv-python` wheel
needs X11/OpenGL system libraries (libGL.so.1, libglib-2.0.so.0) that server and container
images lack, the official TensorFlow GPU images included, so a run there died at the training
child's first import (`ImportError: libGL.so.1: cannot open shared object file`) after the
preflight had said "go", and the driver said only "exit status 1". Any wheel with native code
can fail the same way (a system library missing, a build for another platform).

So: the preflight imports, in a fresh interpreter with the children's environment, every
third-party module with compiled code that the training child loads besides TensorFlow itself
(`probe`); a child that still dies on an import reports what failed in its Outcome
(`outcome_for`). Both become the one ENV.import finding built here (`finding`). TF-free.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import subprocess
import sys
import threading

from train import compat

CODE = "ENV.import"

# What importing object_detection.model_lib_v2 (the training child) loads from compiled
# third-party code, TensorFlow's own libraries aside: tests/test_nativeimports.py checks that
# importing these loads every such library that import loads. cv2 before lvis, so that a
# failure names the module that has the library, not the one that imports it.
CHILD_NATIVE_IMPORTS = (
    "numpy",
    "google.protobuf.message_factory",
    "h5py",
    "ml_dtypes",
    "wrapt",
    "yaml",
    "charset_normalizer",
    "PIL.Image",
    "scipy.linalg",
    "scipy.ndimage",
    "scipy.optimize",
    "scipy.sparse.linalg",
    "scipy.spatial",
    "scipy.special",
    "scipy.stats",
    "kiwisolver",
    "matplotlib.pyplot",
    "pycocotools.mask",
    "cv2",
    "lvis",
)

# System packages (Debian/Ubuntu names) for the libraries wheels most often miss on servers.
SYSTEM_PACKAGES = {
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
    "libXext.so.6": "libxext6",
    "libXrender.so.1": "libxrender1",
    "libX11.so.6": "libx11-6",
    "libgomp.so.1": "libgomp1",
}

_LIBRARY = re.compile(r"([\w.+-]+\.so(?:\.[\w.]+)?): cannot open shared object file")

PROBE_TIMEOUT_S = 120

# Runs in the probe interpreter: imports each module, prints one JSON list of failures.
_PROBE = """
import importlib, json, sys
failed = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except (ImportError, OSError) as e:
        failed.append({"module": name, "error": f"{type(e).__name__}: {e}",
                       "failing": getattr(e, "name", None) or name,
                       "path": getattr(e, "path", None)})
print(json.dumps(failed))
"""


def failure_of(error: BaseException) -> dict:
    """What an import failure says: the module, the error line, the library it could not load."""
    failing = getattr(error, "name", None) or "?"
    return _described(
        {
            "module": failing,
            "failing": failing,
            "error": f"{type(error).__name__}: {error}",
            "path": getattr(error, "path", None),
        }
    )


def _described(failure: dict) -> dict:
    found = _LIBRARY.search(failure["error"])
    top = (failure.get("failing") or failure["module"]).split(".")[0]
    package = _package(top, failure.get("path"))
    return {**failure, "library": found.group(1) if found else None, "package": package}


def _package(top_module: str, path: str | None) -> str | None:
    """The installed distribution(s) that provide the module ("opencv-python" for cv2).

    By the file that failed to load when the error names it (a module of that name may come
    from elsewhere on the path), else by the module's name. Several when several claim the
    file (opencv-python installed over opencv-python-headless: the last one wrote it).
    """
    from importlib import metadata

    try:
        if path:
            real = os.path.realpath(path)
            names = {
                dist.metadata["Name"]
                for dist in metadata.distributions()
                for file in dist.files or ()
                if file.name == os.path.basename(real)
                and os.path.realpath(dist.locate_file(file)) == real
            }
        else:
            names = set(metadata.packages_distributions().get(top_module) or ())
    except Exception:  # noqa: BLE001 - a broken metadata file must not hide the real failure
        return None
    return ", ".join(sorted(names)) or None


def probe(env: dict[str, str] | None = None, python: str = sys.executable) -> list[dict]:
    """Imports CHILD_NATIVE_IMPORTS in a fresh `python` with `env`; the failures (dicts).

    A probe that crashes or hangs is a failure too: the training child would do the same.
    """
    try:
        done = subprocess.run(
            [python, "-c", _PROBE, *CHILD_NATIVE_IMPORTS],
            env=env,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        reason = f"importing them took over {PROBE_TIMEOUT_S} s"
        return [_described({"module": "?", "failing": None, "error": reason, "path": None})]
    lines = done.stdout.strip().splitlines()
    try:
        failures = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        error = f"the import process ended with exit status {done.returncode}: {tail}"
        return [_described({"module": "?", "failing": None, "error": error, "path": None})]
    first: dict[str, dict] = {}  # lvis fails where cv2 did: one finding, for cv2
    for failure in failures:
        first.setdefault(failure["failing"], failure)
    return [_described(failure) for failure in first.values()]


# What decides whether the imports load: the interpreter, the paths it searches, the dynamic
# loader's settings and cache, and each module's files. A passed probe is remembered under a
# hash of these (a failure never is: the next run shows whether the fix worked).
_LOADER_ENV = ("PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH", "LD_PRELOAD", "TF_USE_LEGACY_KERAS")
_LOADER_FILES = ("/etc/ld.so.cache",)


def _cache_key(env: dict[str, str], python: str) -> str | None:
    """A hash of what the probe's answer depends on, or None if a module cannot be found."""
    import hashlib
    import importlib.util

    parts = [os.path.realpath(python), *(f"{k}={env.get(k, '')}" for k in _LOADER_ENV)]
    for path in _LOADER_FILES:
        with contextlib.suppress(OSError):
            stat = os.stat(path)
            parts.append(f"{path}:{stat.st_mtime_ns}:{stat.st_size}")
    if env.get("PYTHONPATH", "") != os.environ.get("PYTHONPATH", "") or python != sys.executable:
        return None  # another interpreter's view: find_spec here would not see it
    for name in sorted({module.split(".")[0] for module in CHILD_NATIVE_IMPORTS}):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        origin = spec.origin
        if origin in (None, "namespace"):  # google: a namespace package, no __init__.py
            origin = next(iter(spec.submodule_search_locations or ()), None)
        if not origin:
            return None
        stat = os.stat(origin)
        parts.append(f"{name}:{origin}:{stat.st_mtime_ns}:{stat.st_size}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def cache_dir() -> str:
    """Where passed probes are remembered ($XDG_CACHE_HOME or ~/.cache, tfod-finetune/)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tfod-finetune", "native-imports")


def probe_cached(env: dict[str, str], python: str = sys.executable) -> list[dict]:
    """`probe`, skipped when the same setup passed before (a marker file per setup).

    The probe costs ~0.8 s of every preflight; a setup that changes (a package reinstalled, a
    library removed, another PYTHONPATH) gets a new key and is probed again.
    """
    key = _cache_key(env, python)
    marker = os.path.join(cache_dir(), key) if key else None
    if marker and os.path.isfile(marker):
        return []
    failures = probe(env, python)
    if marker and not failures:
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(marker), exist_ok=True)
            with open(marker, "w", encoding="utf-8") as f:
                f.write(" ".join(CHILD_NATIVE_IMPORTS) + "\n")
    return failures


_probes: dict[tuple, concurrent.futures.Future] = {}
_probes_lock = threading.Lock()


def probe_once(env: dict[str, str], python: str = sys.executable) -> concurrent.futures.Future:
    """`probe` started in a thread, once per interpreter and environment in this process.

    The preflight starts it before its other checks, which it then overlaps (the imports take
    ~0.8 s: scipy, matplotlib, OpenCV); later preflights in the same process (tests, the
    --batch_size auto re-check) reuse the answer.
    """
    key = (python, tuple(sorted(env.items())))
    with _probes_lock:
        if key not in _probes:
            future: concurrent.futures.Future = concurrent.futures.Future()

            def run() -> None:
                try:
                    future.set_result(probe_cached(env, python))
                except BaseException as e:  # noqa: BLE001 - handed to whoever waits
                    future.set_exception(e)

            threading.Thread(target=run, name="native-imports", daemon=True).start()
            _probes[key] = future
        return _probes[key]


def finding(failure: dict, log_path: str = ""):
    """The ENV.import finding for one failure (from `probe` or a child's Outcome)."""
    from train.preflight.findings import ERROR, Finding

    module, library, package = failure["module"], failure.get("library"), failure.get("package")
    failing = failure.get("failing") or module
    owner = f" (package {package})" if package else ""
    via = f", imported through {module}" if failing.split(".")[0] != module.split(".")[0] else ""
    if module == "?":
        message = f"the training process's compiled modules cannot be imported: {failure['error']}"
    elif library:
        message = (
            f"the training process cannot import {failing}{owner}{via}: the system library "
            f"{library} is missing ({failure['error']})"
        )
    else:
        message = f"the training process cannot import {failing}{owner}{via}: {failure['error']}"
    fix = _fix(library, package) + (f" (log: {log_path})" if log_path else "")
    return Finding(CODE, ERROR, message, fix, file=failure.get("path"))


def _fix(library: str | None, package: str | None) -> str:
    system = SYSTEM_PACKAGES.get(library or "")
    apt = (
        f"install the system package {system} (Debian/Ubuntu: apt-get install -y {system})"
        if system
        else f"install the system package that provides {library} (apt-file search {library})"
    )
    if "opencv-python" in (package or "").split(", "):
        version = compat.dist_version("opencv-python-headless") or compat.dist_version(
            "opencv-python"
        )
        pin = f"=={version}" if version else ""
        return (
            "pip uninstall -y opencv-python && pip install --force-reinstall --no-deps "
            f"opencv-python-headless{pin} (the same cv2 without X11/OpenGL libraries; the "
            "project's locks use it), or " + apt
        )
    if library:
        return apt
    if package and ", " not in package:
        version = compat.dist_version(package)
        pin = f"=={version}" if version else ""
        return (
            f"reinstall {package} for this Python and platform: pip install --force-reinstall "
            f"--no-deps {package}{pin} (or use a tested stack: docs/development.md#stacks)"
        )
    return (
        "use a tested stack: bash scripts/setup_env.sh tf215-cpu .venv (docs/development.md#stacks)"
    )


def outcome_for(error: BaseException, outcome_path: str) -> int:
    """A child that died importing: writes its Outcome (code ENV.import) and returns its exit.

    Called by each TensorFlow child around its imports (TensorFlow, the OD API), before any
    of them can report anything else; the traceback stays in the child's log.
    """
    import traceback

    from train import errors
    from train.contracts import FAILED, Outcome

    traceback.print_exc()
    failure = failure_of(error)
    outcome = Outcome(
        FAILED, error=errors.one_line(error), phase="import", code=CODE, failed_import=failure
    )
    print(f"[tfod-finetune] {outcome.status}: {outcome.error}", flush=True)
    outcome.write(outcome_path)  # write_atomic creates its folder
    return errors.EXIT_TRAINING
