"""Every record verified: --scan_records all and `python -m train.data check` find what the
bounded sample cannot, naming the file and the record."""

from __future__ import annotations

import glob
import os

import pytest

from tests import datasets
from tests.conftest import DEMO_CONFIG, run_python
from train import errors, records

pytestmark = pytest.mark.data

_SHARDS, _PER_SHARD = 3, 120  # 360 records: more than the preflight's 200-record sample


def _payloads(folder: str) -> list[bytes]:
    found = []
    for path in sorted(glob.glob(os.path.join(folder, "*.record"))):
        found += list(records.read_records(path, 10**6))
    return found


def _example(payload: bytes):
    from train import wireprotos

    return wireprotos.example().FromString(payload)


def _write(path: str, payloads: list[bytes]) -> str:
    with open(path, "wb") as f:
        for payload in payloads:
            f.write(records.frame(payload))
    return path


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """360 records in 3 shards, built from converted images; then three faults put in.

    - shard 0, record 1: one payload byte flipped (its CRC no longer matches);
    - shard 1, record 5: class text removed and label 7 (the label map has 3 classes);
    - shard 2, last record: a box with xmin == xmax.
    """
    root = tmp_path_factory.mktemp("scan")
    source = datasets.write_csv(str(root / "csv"), datasets.specs(8, start=50))
    converted = root / "converted"
    result = run_python(
        ["-m", "train.data", "convert", source, f"--out={converted}", "--val_fraction=0"]
    )
    assert result.returncode == 0, result.stderr[-2000:]
    good = [p for p in _payloads(str(converted)) if len(_example(p).features.feature)]
    clean, faulty = root / "clean", root / "faulty"
    clean.mkdir()
    faulty.mkdir()
    names = []
    for shard in range(_SHARDS):
        payloads = [good[(shard * _PER_SHARD + i) % len(good)] for i in range(_PER_SHARD)]
        name = f"train-{shard:05d}-of-{_SHARDS:05d}.record"
        _write(str(clean / name), payloads)
        if shard == 1:
            example = _example(payloads[5])
            del example.features.feature["image/object/class/text"]
            example.features.feature["image/object/class/label"].int64_list.value[0] = 7
            payloads[5] = example.SerializeToString()
        if shard == 2:
            example = _example(payloads[-1])
            feature = example.features.feature
            xmin = feature["image/object/bbox/xmin"].float_list.value[0]
            feature["image/object/bbox/xmax"].float_list.value[0] = xmin
            payloads[-1] = example.SerializeToString()
        _write(str(faulty / name), payloads)
        names.append(name)
    # The flipped byte: inside record 1's payload (after its 12-byte header), not its framing.
    path = faulty / names[0]
    data = bytearray(path.read_bytes())
    at = 12 + len(payloads_of(clean / names[0])[0]) + 4 + 12 + 40
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    return {
        "clean": str(clean),
        "faulty": str(faulty),
        "names": names,
        "label_map": str(converted / "label_map.pbtxt"),
    }


def payloads_of(path) -> list[bytes]:
    return list(records.read_records(str(path), 10**6))


def _preflight(shards, folder, *extra):
    return run_python(
        [
            "-m",
            "train.finetune",
            f"--pipeline_config={DEMO_CONFIG}",
            f"--model_dir={os.path.join(folder, 'model')}",
            f"--train_input_path={os.path.join(folder, 'train-*.record')}",
            f"--label_map={shards['label_map']}",
            "--preflight_only",
            *extra,
        ]
    )


def test_scan_all_finds_each_fault_with_file_and_record(shards):
    result = _preflight(shards, shards["faulty"], "--scan_records=all")
    out = result.stderr
    assert result.returncode == errors.EXIT_PREFLIGHT, out[-3000:]
    first, second, third = (os.path.join(shards["faulty"], n) for n in shards["names"])
    assert f"{first}: record 1: bad data checksum" in out
    assert "labels [7] outside 1..3" in out and f"(first: {second} record 5)" in out
    assert f"min >= max, zero or negative area (first: {third} record {_PER_SHARD - 1})" in out
    assert "scanned every record:" in out


def test_the_default_sample_says_what_it_read_and_misses_the_last_record(shards):
    result = _preflight(shards, shards["faulty"])
    out = result.stderr
    assert "bad data checksum" in out and "labels [7]" in out
    assert "zero or negative area" not in out  # the last record is past the sample
    assert "scanned a sample: the first" in out and "--scan_records all" in out


def test_clean_records_pass_the_full_scan(shards):
    result = _preflight(shards, shards["clean"], "--scan_records=all")
    assert f"scanned every record: {_SHARDS * _PER_SHARD} records" in result.stderr
    assert "INPUT_DATA.boxes" not in result.stderr and "INPUT_DATA.corrupt" not in result.stderr


def _check(shards, pattern: str):
    return run_python(["-m", "train.data", "check", pattern, f"--label_map={shards['label_map']}"])


def test_check_command_reports_the_same_and_exits_3(shards):
    result = _check(shards, os.path.join(shards["faulty"], "train-*.record"))
    assert result.returncode == errors.EXIT_PREFLIGHT, result.stderr[-2000:]
    assert "INPUT_DATA.corrupt" in result.stdout and "record 1: bad data checksum" in result.stdout
    assert "INPUT_DATA.label_range" in result.stdout and "INPUT_DATA.boxes" in result.stdout
    # the scan goes on past the broken record in shard 0: shards 1 and 2 are read whole
    assert f"record {_PER_SHARD - 1})" in result.stdout
    clean = _check(shards, os.path.join(shards["clean"], "*.record"))
    assert clean.returncode == 0, clean.stdout[-2000:]
    assert f"checked {_SHARDS * _PER_SHARD} records" in clean.stdout


def test_undecodable_image_header_is_found(tmp_path):
    """A record whose image starts like a JPEG but whose header is garbage."""
    from train.data import scan

    source = datasets.write_voc(str(tmp_path / "voc"), datasets.specs(1, start=60))
    out = tmp_path / "out"
    assert run_python(["-m", "train.data", "convert", source, f"--out={out}"]).returncode == 0
    path = glob.glob(str(out / "*.record"))[0]
    example = _example(payloads_of(path)[0])
    example.features.feature["image/encoded"].bytes_list.value[0] = b"\xff\xd8\xff" + b"\0" * 64
    _write(path, [example.SerializeToString()])
    found = scan.scan_files([path], scan.Expect(), None)
    assert found.tallies["image_decode"].first == f"{path} record 0"


def test_image_headers_are_judged_like_a_decoder_would():
    """JPEG and PNG headers are parsed without Pillow: the same verdicts as Pillow + TF."""
    import io

    import numpy as np
    from PIL import Image

    from train.data import scan

    pixels = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)

    def encoded(fmt, **kw):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, fmt, **kw)
        return buffer.getvalue()

    good = [
        encoded("JPEG"),
        encoded("JPEG", progressive=True),
        encoded("JPEG", exif=Image.Exif().tobytes()),
        encoded("PNG"),
        encoded("BMP"),
    ]
    for data in good:
        assert scan.image_header_problem(data) is None
    jpeg, png = good[0], good[3]
    assert "truncated" in scan.image_header_problem(jpeg[: len(jpeg) // 2])
    assert "truncated" in scan.image_header_problem(png[:-20])
    assert scan.image_header_problem(png[:22] + bytes([png[22] ^ 1]) + png[23:]) == (
        "IHDR checksum mismatch"
    )
    assert scan.image_header_problem(b"\xff\xd8" + b"\xff\xda" + jpeg[4:]) is not None
    assert scan.image_header_problem(b"BM" + b"\0" * 10) is not None


def test_the_run_length_is_given_in_epochs(shards):
    """Past the 200-record sample the records are counted by their framing alone."""
    from train.data import scan

    paths = sorted(glob.glob(os.path.join(shards["clean"], "*.record")))
    assert scan.count_records(paths) == _SHARDS * _PER_SHARD
    result = _preflight(shards, shards["clean"], "--num_train_steps=90", "--batch_size=2")
    assert (
        f"TRAIN.epochs: 90 steps x batch 2 = 180 images, about 0.5 epochs of "
        f"{_SHARDS * _PER_SHARD} training images"
    ) in result.stderr
    cut = os.path.join(shards["clean"], "..", "cut.record")
    with open(paths[0], "rb") as f:
        data = f.read()
    with open(cut, "wb") as f:
        f.write(data[:-10])
    assert scan.count_records([cut]) is None


def test_an_empty_file_and_an_absurd_length_are_named_not_crashed(tmp_path):
    """One empty-data rule for the check command and the preflight; a length field claiming
    2^60 bytes is a corrupt record, never a 2^60-byte allocation (MemoryError)."""
    import struct

    from train import records
    from train.data import scan

    empty = tmp_path / "empty.record"
    empty.write_bytes(b"")
    result = run_python(["-m", "train.data", "check", str(empty)])
    assert result.returncode == 3, result.stderr[-2000:]
    assert "error: INPUT_DATA.empty: records: every file it matches is empty" in result.stdout
    header = struct.pack("<Q", 1 << 60)
    huge = tmp_path / "huge.record"
    huge.write_bytes(header + struct.pack("<I", records.masked_crc32c(header)) + b"x" * 20)
    result = run_python(["-m", "train.data", "check", str(huge)])
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"{huge}: record 0: bad length: the record claims 2 GiB or more" in result.stdout
    # a plausible length past the end of the file is a cut-short file
    header = struct.pack("<Q", 1000)
    cut = tmp_path / "cut.record"
    cut.write_bytes(header + struct.pack("<I", records.masked_crc32c(header)) + b"x" * 20)
    found = scan.scan_files([str(cut)], scan.Expect(None, None, None), None)
    assert "record 0: truncated (file cut short?)" in found.broken
