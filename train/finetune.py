"""Fine-tune a TF2 Object Detection API model: preflight, rewrite, train.

    python -m train.finetune --pipeline_config PATH --model_dir DIR [--checkpoint CKPT]
        [--label_map MAP] [--num_train_steps N] [--batch_size B] [--preflight_only] [...]

Exit codes: 0 ok, 2 usage error (flags, --pipeline_config or --report_json not a usable
file), 3 preflight (or restore dry run) failed, 4 training failed, 5 stopped by a signal
(resume with the same command), 6 trained, but the final evaluation or an export failed or
disagrees with its checkpoint, 70 internal error (README "Exit codes").
"""

from __future__ import annotations

import sys
import traceback

from absl import app
from absl import flags as absl_flags

from train import cli, errors
from train import flags as driver_flags


def _parse_flags(argv: list[str]) -> list[str]:
    """The shared command-line rules (train/cli.py), then the driver's required flags."""
    rest = cli.parse(argv)
    missing = [
        f"--{name}" for name in driver_flags.REQUIRED if absl_flags.FLAGS[name].value is None
    ]
    if missing:
        print(f"error: missing required flag(s): {', '.join(missing)}", file=sys.stderr)
        sys.exit(errors.EXIT_USAGE)
    if len(rest) > 1:
        print(f"error: unexpected arguments: {' '.join(rest[1:])}", file=sys.stderr)
        sys.exit(errors.EXIT_USAGE)
    return rest


def main(argv: list[str]) -> int:
    """Runs the driver on the parsed flags."""
    del argv  # everything comes from flags
    from train import driver, outcomes
    from train.contracts import ContractError

    options = driver_flags.options_from_flags()
    try:
        return driver.run(options)
    except ContractError as e:  # two sides of a process boundary disagree: a bug, named
        finding = outcomes.contract_finding(e)
        print(finding.printed(), file=sys.stderr)
        driver.report_internal_error(options, e, finding)
        return errors.EXIT_INTERNAL
    except Exception as e:  # noqa: BLE001 - a bug in the driver, not a user mistake
        traceback.print_exc()
        print(
            "error: internal error in tfod-finetune (a bug: please report it with the "
            "traceback above)",
            file=sys.stderr,
        )
        driver.report_internal_error(options, e)
        return errors.EXIT_INTERNAL
    except KeyboardInterrupt:  # Ctrl-C before training (the training saves on its own Ctrl-C)
        print("interrupted before training started", file=sys.stderr)
        return errors.EXIT_INTERRUPTED


def run() -> None:
    """Console-script entry point (`tfod-finetune`); `--help` lists the driver's flags."""
    main_module = sys.modules["__main__"]
    main_module.__doc__ = main_module.__doc__ or __doc__
    for holder in driver_flags.holders():  # absl's --help shows the main module's key flags
        absl_flags.FLAGS.register_key_flag_for_module(sys.argv[0], absl_flags.FLAGS[holder.name])
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
