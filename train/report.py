"""Build a run's one-page report: model_dir/report.html, for any run, interrupted ones too.

    python -m train.report MODEL_DIR [--out PATH]

The driver writes the same page at the end of every run; this rebuilds it (after a run that
was stopped, or one trained by model_main_tf2), drawing the training curves from the event
files when the run did not. Exit codes: 0 ok, 2 usage error (no such folder, --out over a
file that is not a report).
"""

from __future__ import annotations

import os
import sys
import tempfile

from absl import app, flags

from train import errors, evalcurves

OUT = flags.DEFINE_string("out", None, "Where to write the page (default MODEL_DIR/report.html).")


def main(argv: list[str]) -> int:  # noqa: D103
    from train import files, runreport

    if len(argv) != 2:
        print("error: give one run folder: python -m train.report MODEL_DIR", file=sys.stderr)
        return errors.EXIT_USAGE
    model_dir = os.path.abspath(argv[1])
    if not os.path.isdir(model_dir):
        print(f"error: {argv[1]}: no such folder (give the run's model_dir)", file=sys.stderr)
        return errors.EXIT_USAGE
    out = os.path.abspath(OUT.value or os.path.join(model_dir, runreport.REPORT))
    if os.path.isfile(out) and not out.endswith(".html"):
        print(f"error: --out {OUT.value} is a file that is not a report", file=sys.stderr)
        return errors.EXIT_USAGE
    with tempfile.TemporaryDirectory() as scratch:
        drawn = _training_curves(model_dir, scratch)
        files.write_atomic(out, runreport.build(model_dir, drawn))
    print(f"report: {out}")
    return errors.EXIT_OK


def _training_curves(model_dir: str, scratch: str) -> str | None:
    """The run's own plot when it drew one, else one drawn from its event files now."""
    if os.path.isfile(
        os.path.join(model_dir, evalcurves.PLOTS_DIR, evalcurves.TRAINING_CURVES_FILE)
    ):
        return None
    from train import compat

    compat.quiet_tensorflow()
    compat.apply()
    from train import plots
    from train.tf import runviews

    scalars = runviews.run_scalars(model_dir)
    if not scalars:
        return None
    path = os.path.join(scratch, evalcurves.TRAINING_CURVES_FILE)
    plots.training_curves(scalars, path)
    return path


def run() -> None:
    """The console entry point."""
    from train import cli

    app.run(main, flags_parser=cli.parse)


if __name__ == "__main__":
    run()
