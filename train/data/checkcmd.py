"""`python -m train.data check`: every record of TFRecord files, with the preflight's findings."""

from __future__ import annotations

import sys
import time

from train import errors, records
from train.data import scan


def check(patterns: list[str], label_map_path: str | None, jobs: int = 0) -> int:
    """Scans every record of the files `patterns` match; prints findings; returns the exit code.

    The same scan and messages as the driver's `--scan_records all` (records read as a plain
    tf.train.Example reader would: no masks, keypoints or context features asked for).
    """
    from train.pipeline import labelmap
    from train.preflight import checks_data

    paths = []
    for pattern in patterns:
        matched = records.expand(pattern)
        if not matched:
            print(f"error: {pattern} matches no file", file=sys.stderr)
            return errors.EXIT_USAGE
        paths += matched
    label_map = None
    if label_map_path:
        try:
            label_map = labelmap.load(label_map_path)
        except labelmap.LabelMapError as e:
            print(f"error: --label_map {label_map_path} {e}", file=sys.stderr)
            return errors.EXIT_USAGE
    needs = checks_data.ReaderNeeds(False, None, 0, False)
    expect = scan.Expect(
        frozenset(label_map.names) if label_map else None,
        label_map.max_id if label_map else None,
        needs,
    )
    started = time.perf_counter()
    found = scan.scan_files(paths, expect, None, jobs)
    wall = time.perf_counter() - started
    findings = list(checks_data.record_findings("records", paths, found, needs, label_map))
    for finding in findings:
        print(finding.printed())
    megabytes = found.bytes / 1e6
    print(
        f"checked {found.records} records, {megabytes:.1f} MB in {len(paths)} file(s) in "
        f"{wall:.2f} s ({megabytes / max(wall, 1e-9):.0f} MB/s): "
        f"{sum(f.severity == 'error' for f in findings)} error(s), "
        f"{sum(f.severity == 'warning' for f in findings)} warning(s)"
    )
    return errors.EXIT_PREFLIGHT if any(f.severity == "error" for f in findings) else errors.EXIT_OK
