"""Benchmark: the full record scan (--scan_records all) against a plain read of the same files.

    python scripts/bench_scan.py [--out bench_out/scan] [--shards 8] [--per_shard 100]

Writes shards of photo-sized records (640x480 JPEGs, ~150 KB, through the converter's own
Example writer), then times, alternately and `--repeats` times each: a plain sequential
read of every file in 1 MB chunks (one process: what `cat` does), and train.data.scan over
every record (framing, both CRC-32C, Example parse, image header, labels, boxes), in one
process and in one per CPU. Prints MB/s and the scan / plain-read ratio (goal >= 0.5), twice:
from the page cache ("warm": memory speed, the scan's CPU cost laid bare) and, where this
process may drop the page cache (root on Linux), from the disk ("cold": what a first scan of
a dataset meets).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write_shards(out: str, shards: int, per_shard: int) -> list[str]:
    import numpy as np
    from PIL import Image

    from train import records
    from train.data import convert, images, sources

    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    payloads = []
    for n in range(16):  # distinct photo-like images: smooth shading plus sensor noise
        ramp = np.linspace(0, 255, 640)[None, :, None] * np.ones((480, 1, 3))
        pixels = np.clip(ramp + rng.normal(0, 18, (480, 640, 3)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        data = buffer.getvalue()
        prepared = images.Prepared(data, "jpeg", 640, 480, 640, 480, 1, ())
        boxes = [
            (sources.Box("cat", 0, 0, 1, 1, "x"), (0.1, 0.1, 0.4, 0.5)),
            (sources.Box("dog", 0, 0, 1, 1, "x"), (0.5, 0.2, 0.9, 0.8)),
        ]
        payloads.append(convert.example_bytes(f"img{n}.jpg", prepared, boxes, {"cat": 1, "dog": 2}))
    paths = []
    for shard in range(shards):
        path = os.path.join(out, convert.shard_name("train", shard, shards))
        with open(path, "wb") as f:
            for i in range(per_shard):
                f.write(records.frame(payloads[(shard + i) % len(payloads)]))
        paths.append(path)
    return paths


def _plain_read(paths: list[str]) -> int:
    total = 0
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(1 << 20):
                total += len(chunk)
    return total


def main() -> int:
    """Writes the shards, times both reads, prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench_out/scan")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--per_shard", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from train.data import scan
    from train.preflight import checks_data

    paths = _write_shards(args.out, args.shards, args.per_shard)
    size = sum(os.path.getsize(p) for p in paths)
    expect = scan.Expect(
        frozenset({"cat", "dog"}), 2, checks_data.ReaderNeeds(False, None, 0, False)
    )
    cpus = os.cpu_count() or 1
    runs = {
        "plain read": lambda: _plain_read(paths),
        "scan, 1 process": lambda: scan.scan_files(paths, expect, None, jobs=1),
        f"scan, {cpus} processes": lambda: scan.scan_files(paths, expect, None, jobs=cpus),
    }
    found = runs["scan, 1 process"]()
    assert found.records == args.shards * args.per_shard and not found.tallies, found
    print(
        f"{len(paths)} files, {found.records} records, {size / 1e6:.0f} MB "
        f"({size / found.records / 1e3:.0f} KB per record), median of {args.repeats}, {cpus} CPUs"
    )
    print("| cache | read | MB/s | ratio to plain read |")
    print("|---|---|---|---|")
    for cache in ("warm", "cold"):
        if cache == "cold" and not _drop_cache():
            print("| cold | (skipped: dropping the page cache needs root) | | |")
            continue
        timings: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, run in runs.items():
                if cache == "cold":
                    _drop_cache()
                start = time.perf_counter()
                run()
                timings[name].append(time.perf_counter() - start)
        plain = statistics.median(timings["plain read"])
        for name, values in timings.items():
            seconds = statistics.median(values)
            print(f"| {cache} | {name} | {size / 1e6 / seconds:.0f} | {plain / seconds:.2f} |")
    return 0


def _drop_cache() -> bool:
    """Empties the page cache so the next read comes from the disk (False when not allowed)."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
