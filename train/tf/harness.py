"""The one skeleton of every TensorFlow child process: spec in, Outcome out, one exit rule.

The training child (and its --batch_size auto points), the evaluator, the rehearsal/prepare
and the finish each run as `python -m train.tf.<name> SPEC.json` and end with
`sys.exit(harness.main(argv, SpecClass, body))`. The harness does what they all need, the
same way for each:

1. reads the spec strictly: a field renamed on one side is a ContractError, not a default.
   The child then writes an INTERNAL Outcome (to the spec's `outcome` path when it can find
   one) and exits errors.EXIT_INTERNAL; the driver reports it as an INTERNAL finding naming
   the spec file (train/launch/runner.ChildRun);
2. applies the compatibility layer and imports TensorFlow and the OD API's training module,
   so that a missing module or system library is the ENV.import Outcome
   (train/nativeimports.py) whichever child meets it first; then has AutoGraph leave the
   OD API's TF1-style functions as written (train/tf/tracing.py: half of a child's start);
3. runs `body(spec, phase)`, which returns the child's Outcome (a failure it recognises
   carries its finding code, e.g. TRAIN.nan); an exception it lets through becomes a FAILED
   Outcome at the `phase` it had reached;
4. writes the Outcome (atomically: the driver never reads half of it) and exits 0 when OK,
   errors.EXIT_INTERRUPTED when stopped by a signal, errors.EXIT_TRAINING when failed;
   once Python's shutdown has run, without the interpreter's teardown (~1 s of every
   child's end: `_end_without_teardown`).

The driver reads the Outcome, never the exit status or the log, to learn how a child ended.
"""

from __future__ import annotations

import os
import sys
import traceback


class Phase:
    """What the child is doing, for the Outcome of a failure (train/failures.py reads it).

    Training: "model" (the build), "restore", "input" (the input pipeline), "first_step"
    (until the first iteration returns), "train". Prepare: "model", "restore", "input",
    "loss". Finish: "eval", "reference", "export_FORMAT", "verify_FORMAT". Evaluator: "eval".
    """

    def __init__(self, name: str = "model"):
        self.name = name

    def iteration_done(self) -> None:
        """A training iteration has returned: the first step is behind."""
        self.name = "train"


def main(argv: list[str], spec_cls, body, first_phase: str = "model") -> int:
    """Runs `body(spec, phase) -> Outcome` for the spec at argv[1]; writes the Outcome."""
    from train import compat, errors, nativeimports
    from train.contracts import FAILED, OK, STOPPED, Outcome

    spec = _read_spec(argv[1], spec_cls)
    if spec is None:
        return errors.EXIT_INTERNAL
    try:
        compat.apply()
        import tensorflow  # noqa: F401 - its shared libraries load here, or fail here
        from object_detection import model_lib_v2  # noqa: F401 - lvis, cv2, pycocotools
    except (ImportError, OSError) as e:  # a module or a system library it needs is missing
        return nativeimports.outcome_for(e, spec.outcome)
    from train.tf import tracing

    tracing.limit_autograph()  # half of a child's start is AutoGraph rewriting the OD API
    phase = Phase(first_phase)
    try:
        outcome = body(spec, phase)
    except Exception as e:  # noqa: BLE001 - one line for the driver, the traceback in the log
        traceback.print_exc()
        outcome = Outcome(FAILED, error=errors.one_line(e), phase=phase.name)
    name = spec_cls.__name__.removesuffix("Spec").lower()
    print(f"[tfod-finetune] {name} {outcome.status}: {outcome.error or outcome.detail}", flush=True)
    outcome.write(spec.outcome)
    return {OK: 0, STOPPED: errors.EXIT_INTERRUPTED}.get(outcome.status, errors.EXIT_TRAINING)


def _read_spec(path: str, spec_cls):
    """The spec at `path`, or None after reporting a malformed one (see step 1 above)."""
    import json

    from train.contracts import FAILED, INTERNAL, ContractError, Outcome

    try:
        spec = spec_cls.read(path)
        if spec is None:
            raise ContractError(f"{spec_cls.__name__}: no such file", path)
        return spec
    except ContractError as e:
        print(f"[tfod-finetune] cannot read the spec {e}", file=sys.stderr, flush=True)
        try:
            with open(path, encoding="utf-8") as f:
                where = json.load(f).get("outcome")
        except (OSError, ValueError, AttributeError):
            where = None
        if isinstance(where, str) and where:
            error = str(e).removeprefix(f"{path}: ")  # the driver names the file itself
            Outcome(FAILED, error=error, code=INTERNAL).write(where)
        return None


def run_module(main_fn) -> None:
    """The `if __name__ == "__main__"` of a child module."""
    import atexit
    import faulthandler

    # Registered before TensorFlow's and the OD API's imports, so it runs after their own
    # exit handlers (atexit runs the last registered first).
    atexit.register(_end_without_teardown)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    faulthandler.enable()  # a crash in native code leaves the Python stack in the child's log
    try:
        _exit_status[0] = main_fn(sys.argv)
    except SystemExit as e:
        _exit_status[0] = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
        raise
    sys.exit(_exit_status[0])


# The status the child exits with: Python's 1 for an exception nothing caught, until main
# returns (or exits) with its own.
_exit_status = [1]


def _end_without_teardown() -> None:
    """Ends the child once Python's own shutdown has run, skipping the interpreter teardown.

    By the time exit handlers run, the Outcome is written, every checkpoint and file the
    child wrote is closed, non-daemon threads are joined, and the other handlers registered
    after this one (TensorFlow's, absl's) have run. What is left is the teardown of every
    module's objects and TensorFlow's native destructors: 1.1-1.45 s of each child's end on
    2 CPU cores (docs/measurements.md), paid by every training run, evaluation, rehearsal and
    finish, and of no use to the driver, which reads the Outcome. Before leaving: a garbage
    collection (a resource kept alive only by reference cycles, such as a summary writer, is
    closed and so flushed, as teardown would), logging's shutdown (a no-op when its own exit
    handler already ran) and the streams' flush.
    """
    import gc
    import logging

    gc.collect()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken: nothing more can be said there
            pass
    os._exit(_exit_status[0])
