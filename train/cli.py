"""The command-line rules every entry point shares: one layer, not one copy per command.

absl parses the flags; on top of it, for `train.finetune`, `train.data`, `train.evaluate` and
`train.export` alike:
- a usage error is one line and exit 2 (absl would print a traceback-like block and exit 1);
- a single-valued flag given twice is an error (absl keeps the last one silently), as is an
  empty value (`--checkpoint=`, `--out=`: absl takes "" and the command then uses its default
  or the current folder) or an empty item of a list (`--export=saved_model,,tflite`);
- a float flag must be finite: absl's float parser accepts "nan" and "inf", which compare
  false with every bound and would flow into the run.
`problems` is pure (the arguments and the flag registry in, the first problem out) and tested
on its own; `parse` is what the entry points call.
"""

from __future__ import annotations

import math
import sys

from train import errors

HELP_FLAGS = ("-?", "-h", "--help", "--helpshort", "--helpfull", "--helpxml")


def _given(args: list[str], flag_values) -> list[tuple[str, str | None]]:
    """(flag name, its value or None for a boolean form) for each flag on the command line."""
    given, index = [], 0
    while index < len(args):
        token = args[index]
        index += 1
        if token == "--":
            break
        if not token.startswith("-") or token == "-":
            continue
        name, eq, value = token.lstrip("-").partition("=")
        if name not in flag_values and name.startswith("no") and name[2:] in flag_values:
            given.append((name[2:], None))
            continue
        if name not in flag_values:
            continue  # absl has refused it already
        flag = flag_values[name]
        if flag.boolean:
            given.append((flag.name, value if eq else None))
        elif eq:
            given.append((flag.name, value))
        elif index < len(args):
            given.append((flag.name, args[index]))
            index += 1
    return given


def problems(args: list[str], flag_values) -> str | None:
    """The first problem with a parsed command line that absl lets through, or None."""
    from absl import flags

    seen: set[str] = set()
    for name, value in _given(args, flag_values):
        flag = flag_values[name]
        if name in seen and not isinstance(flag, flags.MultiFlag):
            return f"--{name} is given more than once: give it once (the last would win silently)"
        seen.add(name)
        if value is None or flag.boolean:
            continue
        if not value.strip():
            return f"--{name}= is empty: give a value, or leave the flag out for its default"
        if isinstance(flag.parser, flags.ListParser) and any(
            not item.strip() for item in value.split(",")
        ):
            return f"--{name}={value} has an empty item: separate the values with single commas"
    for name in seen:
        flag = flag_values[name]
        if isinstance(flag.parser, flags.FloatParser):
            values = flag.value if isinstance(flag.value, list) else [flag.value]
            bad = [v for v in values if v is not None and not math.isfinite(v)]
            if bad:
                return f"--{name}={bad[0]} is not a finite number"
    return None


def parse(argv: list[str]) -> list[str]:
    """Parses with absl, then the shared rules above; exits 2 with one line on a usage error."""
    from absl import flags

    try:
        rest = flags.FLAGS(argv)
    except SystemExit as e:  # absl exits 1 after printing --help: asking for help succeeded
        helped = any(a.split("=")[0] in HELP_FLAGS for a in argv[1:])
        sys.exit(errors.EXIT_OK if helped and e.code == 1 else e.code)
    except flags.Error as e:
        usage(str(e), argv[0])
    problem = problems(argv[1:], flags.FLAGS)
    if problem:
        usage(problem, argv[0])
    return rest


def usage(message: str, program: str | None = None):
    """Prints the one-line usage error (and where the flags are listed) and exits 2."""
    see = f"\n  see: {program} --helpshort" if program else ""
    print(f"error: {message}{see}", file=sys.stderr)
    sys.exit(errors.EXIT_USAGE)
