"""The one prepared GPU check: every GPU-only path of the driver, one JSON line of results.

    python scripts/gpu_smoke.py [--steps 200] [--out bench_out/gpu] [--allow_cpu]

Run by scripts/gpu_smoke.sh (`make gpu-smoke`) with the GPU stack's Python. Each check is a
real driver run on the demo (stand-in FPNLite, synthetic shapes), time-boxed, and records what
it saw; a failing check does not stop the others:

- overhead: driver vs raw train_loop steady-state steps/s, MirroredStrategy over the GPUs
  (scripts/bench_overhead.py, one pair);
- batch_auto: --batch_size auto on GPU memory (--preflight_only: the measuring only);
- oom: an absurd batch must end in TRAIN.oom (exit 4) with a batch that fits;
- eval_on_gpu: --eval --eval_on_gpu beside a short training;
- export: a GPU-trained checkpoint exported (SavedModel, TFLite) and verified.

`--allow_cpu` runs the same checks on a machine without a GPU (each at its smallest), to test
this script itself; the results then say "device": "cpu".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CHECK_TIMEOUT_S = 240


def _devices() -> dict:
    code = (
        "from train import compat; compat.apply()\n"
        "import json, tensorflow as tf\n"
        "gpus = tf.config.list_physical_devices('GPU')\n"
        "names = [tf.config.experimental.get_device_details(g).get('device_name') for g in gpus]\n"
        "print(json.dumps({'tensorflow': tf.__version__, 'gpus': names}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _address_limit(limit: int):
    """A preexec_fn: the driver and its children get an address-space limit (`ulimit -v`)."""
    import resource

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def _driver(assets: dict, model_dir: str, *flags: str, limit: int | None = None):
    """Runs the driver on the demo; (exit code, its JSON report, the tail of its stderr).

    `limit` (bytes) caps the address space, so an out-of-memory check on a CPU fails the
    allocation instead of waking the kernel's OOM killer on a shared machine.
    """
    from train.demo import __main__ as demo

    report = os.path.join(os.path.dirname(model_dir), os.path.basename(model_dir) + ".json")
    argv = [
        a
        for a in demo.driver_argv(assets, model_dir, 20)
        if not a.startswith(("--export", "--report_json", "--num_train_steps", "--batch_size"))
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        done = subprocess.run(
            [*argv, f"--report_json={report}", *flags],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=CHECK_TIMEOUT_S,
            preexec_fn=_address_limit(limit) if limit else None,
        )
    except subprocess.TimeoutExpired:
        return -1, {}, f"timed out after {CHECK_TIMEOUT_S} s"
    try:
        with open(report, encoding="utf-8") as f:
            document = json.load(f)
    except (OSError, ValueError):
        document = {}
    return done.returncode, document, done.stderr[-600:]


def _codes(report: dict) -> list[str]:
    return [f["code"] for f in report.get("findings", []) if f.get("severity") == "error"]


def check_overhead(out: str, steps: int) -> dict:
    """Driver vs raw train_loop steps/s (bench_overhead.py's own comparison)."""
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "scripts", "bench_overhead.py"),
            "--steps",
            str(steps),
            "--pairs",
            "1",
            "--out",
            os.path.join(out, "overhead"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=4 * CHECK_TIMEOUT_S,
    )
    results = os.path.join(out, "overhead", "results.json")
    if done.returncode != 0 or not os.path.isfile(results):
        return {"ok": False, "error": (done.stderr or done.stdout)[-600:]}
    with open(results, encoding="utf-8") as f:
        found = json.load(f)
    return {
        "ok": True,
        "steps_per_s": found["steps_per_s"],  # raw, child, guarded (NaN guard), driver
        "ratio": found["ratio"],
        "first_step_s": found["first_step_s"],
    }


def check_batch_auto(assets: dict, out: str, fraction: float) -> dict:
    """--batch_size auto measuring on the GPUs' memory (and the host's), within `fraction`."""
    code, report, tail = _driver(
        assets,
        os.path.join(out, "batch_auto"),
        "--batch_size=auto",
        f"--memory_fraction={fraction}",
        "--num_train_steps=2",
        "--preflight_only",
    )
    found = report.get("batch_auto") or {}
    ok = code == 0 and bool(found.get("batch"))
    result = {"ok": ok, "exit": code, "batch": found.get("batch")}
    return result | {"budgets": found.get("budgets")} | ({} if ok else {"error": tail})


def check_oom(assets: dict, out: str, batch: int, limit: int | None) -> dict:
    """An absurd batch: TRAIN.oom, exit 4, with a smaller batch in the fix."""
    code, report, tail = _driver(
        assets,
        os.path.join(out, "oom"),
        f"--batch_size={batch}",
        "--num_train_steps=2",
        "--nofinal_eval",
        limit=limit,
    )
    ok = code == 4 and "TRAIN.oom" in _codes(report)
    return {"ok": ok, "exit": code, "batch": batch, "codes": _codes(report)} | (
        {} if ok else {"error": tail}
    )


def check_eval_on_gpu(assets: dict, out: str) -> dict:
    """--eval --eval_on_gpu beside a short training."""
    model_dir = os.path.join(out, "eval_on_gpu")
    code, report, tail = _driver(
        assets,
        model_dir,
        "--num_train_steps=20",
        "--batch_size=2",
        "--checkpoint_every_n=10",
        "--eval",
        "--eval_on_gpu",
        "--nofinal_eval",
    )
    events = os.path.isdir(os.path.join(model_dir, "eval"))
    ok = code == 0 and events
    return {"ok": ok, "exit": code, "eval_events": events} | ({} if ok else {"error": tail})


def check_export(assets: dict, out: str) -> dict:
    """A checkpoint trained on the GPUs, exported and verified (the export runs on CPU)."""
    code, report, tail = _driver(
        assets,
        os.path.join(out, "export"),
        "--num_train_steps=20",
        "--batch_size=2",
        "--export=saved_model,tflite",
    )
    exported = report.get("export") or {}
    verdicts = {
        name: "verified" if e.get("verified") else e.get("problem") or "inconclusive"
        for name, e in exported.items()
    }
    ok = code == 0 and set(verdicts) == {"saved_model", "tflite"}
    return {"ok": ok, "exit": code, "exports": verdicts} | ({} if ok else {"error": tail})


def main() -> int:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench_out", "gpu"))
    parser.add_argument("--allow_cpu", action="store_true")
    args = parser.parse_args()
    from train import envinfo
    from train.demo import __main__ as demo

    start = time.monotonic()
    out = os.path.abspath(args.out)
    devices = _devices()
    results: dict = {"device": "gpu" if devices["gpus"] else "cpu", **devices}
    if not devices["gpus"] and not args.allow_cpu:
        print("gpu_smoke: " + json.dumps({**results, "error": "TensorFlow sees no GPU"}))
        return 1
    assets = demo.prepare(os.path.join(out, "assets"))
    gpus = bool(devices["gpus"])
    fraction = 0.1 if gpus else round(2.2e9 / envinfo.host_memory_bytes(), 4)
    steps = args.steps if gpus else min(args.steps, 40)  # a CPU run tests the script only
    checks = (
        ("overhead", lambda: check_overhead(out, steps)),
        # A budget of a few measuring runs: a tenth of a GPU; on a CPU, 2.2 GB of the host
        # (TensorFlow's own ~1.1 GB and a few demo images, as tests/test_autobatch_train.py).
        ("batch_auto", lambda: check_batch_auto(assets, out, fraction)),
        # On a GPU the batch overflows the GPU's memory; on a CPU, batch 48 overflows a 4 GB
        # address space (as tests/test_oom.py).
        ("oom", lambda: check_oom(assets, out, *((4096, None) if gpus else (48, 4_400_000 << 10)))),
        ("eval_on_gpu", lambda: check_eval_on_gpu(assets, out)),
        ("export", lambda: check_export(assets, out)),
    )
    for name, check in checks:
        began = time.monotonic()
        try:
            results[name] = check()
        except Exception as e:  # noqa: BLE001 - one check's crash is its result, not the end
            results[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        results[name]["seconds"] = round(time.monotonic() - began, 1)
        print(f"gpu_smoke: {name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
    results["seconds"] = round(time.monotonic() - start, 1)
    results["ok"] = all(results[name]["ok"] for name, _ in checks)
    print("gpu_smoke: " + json.dumps(results, sort_keys=True), flush=True)
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
