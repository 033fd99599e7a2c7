"""Annotations to checked TFRecords, and a full check of existing TFRecords.

    python -m train.data convert SRC --out DIR [--format auto|voc|coco|yolo|csv]
        [--val_fraction 0.1] [--shards N] [--label_map PATH] [--skip_empty]
    python -m train.data check GLOB... [--label_map PATH]

Exit codes: 0 ok (skipped or changed items are listed, not failures), 2 usage error (flags,
an unreadable source, an unusable --out), 3 nothing usable converted / the check found errors.
"""

from __future__ import annotations

import sys

from absl import app, flags

from train import cli, errors

OUT = flags.DEFINE_string("out", None, "convert: the output folder (new, or an earlier output).")
FORMAT = flags.DEFINE_enum("format", "auto", ["auto", "voc", "coco", "yolo", "csv"], "Source.")
VAL_FRACTION = flags.DEFINE_float(
    "val_fraction", 0.1, "Share of images for eval (by a hash of each path).", 0.0, 1.0
)
SHARDS = flags.DEFINE_integer("shards", 0, "Files per split (0: ~150 MB each).", lower_bound=0)
LABEL_MAP = flags.DEFINE_string(
    "label_map", None, "An existing label map: its ids are kept, other classes are errors."
)
SKIP_EMPTY = flags.DEFINE_bool("skip_empty", False, "Drop images without boxes.")
JOBS = flags.DEFINE_integer("jobs", 0, "Worker processes (0: one per CPU).", lower_bound=0)


def _usage(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return errors.EXIT_USAGE


def main(argv: list[str]) -> int:
    """Runs `convert` or `check`."""
    from train.data import checkcmd, convert, sources

    command, args = (argv[1], argv[2:]) if len(argv) > 1 else ("", [])
    if command == "convert":
        if len(args) != 1 or not OUT.value:
            return _usage("usage: python -m train.data convert SRC --out DIR")
        options = convert.ConvertOptions(
            args[0],
            OUT.value,
            FORMAT.value,
            VAL_FRACTION.value,
            SHARDS.value,
            LABEL_MAP.value,
            SKIP_EMPTY.value,
            JOBS.value,
        )
        try:
            summary = convert.convert(options, emit=lambda line: print(line, flush=True))
        except (sources.SourceError, convert.ConvertError) as e:
            return _usage(str(e))
        if not sum(split["records"] for split in summary["splits"].values()):
            print("error: no usable image was converted (see the lines above)", file=sys.stderr)
            return errors.EXIT_PREFLIGHT
        return errors.EXIT_OK
    if command == "check":
        if not args:
            return _usage("usage: python -m train.data check GLOB... [--label_map PATH]")
        return checkcmd.check(args, LABEL_MAP.value, JOBS.value)
    return _usage(f"unknown command {command!r}: use convert or check")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse)
