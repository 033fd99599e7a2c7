"""The TF-free readers agree with TensorFlow's own on real files."""

from __future__ import annotations

import glob
import os

import pytest

from train import records
from train.checkpoint import bundle


def _tf_list(prefix):
    import tensorflow as tf

    return [(n, list(s)) for n, s in tf.train.list_variables(prefix)]


def test_index_reader_matches_tensorflow_on_generated_checkpoints(tmp_path, demo_assets):
    from tests.helpers import write_checkpoint

    prefix = write_checkpoint(
        str(tmp_path / "c"),
        {"model/a/kernel": [3, 3, 3, 8], "model/b/bias": [5]},
        step=42,
        optimizer="momentum",
    )
    assert bundle.list_variables(prefix) == _tf_list(prefix)
    assert bundle.read_int64(prefix, "step/.ATTRIBUTES/VARIABLE_VALUE") == 42
    assert bundle.list_variables(demo_assets["prefix"]) == _tf_list(demo_assets["prefix"])
    assert bundle.truncated_shards(demo_assets["prefix"]) == []


def test_index_reader_matches_tensorflow_on_real_zoo_indexes(shared_fixtures):
    indexes = glob.glob(
        os.path.join(shared_fixtures, "zoo_checkpoints*", "**", "*.index"), recursive=True
    )
    assert len(indexes) >= 20  # several of them Snappy-compressed (older TF writers)
    for index in indexes:
        prefix = index[: -len(".index")]
        assert bundle.list_variables(prefix) == _tf_list(prefix), index


def test_index_reader_rejects_other_files(tmp_path):
    (tmp_path / "x.index").write_bytes(b"\0" * 100)
    with pytest.raises(bundle.UnsupportedIndex, match="no table magic"):
        bundle.read_index(str(tmp_path / "x"))


def test_snappy_roundtrip_of_overlapping_copies():
    # literal "ab" then a 2-byte-offset copy of length 6 that overlaps its own output
    compressed = bytes([8, (2 - 1) << 2]) + b"ab" + bytes([((6 - 1) << 2) | 2, 2, 0])
    assert bundle._snappy(compressed) == b"abababab"


def test_record_reader_matches_tensorflow(tmp_path):
    import tensorflow as tf

    path = str(tmp_path / "r.record")
    payloads = [b"", b"x" * 10, os.urandom(5000)]
    with tf.io.TFRecordWriter(path) as writer:
        for payload in payloads:
            writer.write(payload)
    assert list(records.read_records(path, 10)) == payloads
    assert list(records.read_records(path, 2)) == payloads[:2]
    with open(path, "rb") as f:
        data = f.read()
    (tmp_path / "cut.record").write_bytes(data[:-100])
    with pytest.raises(records.RecordError, match="truncated"):
        list(records.read_records(str(tmp_path / "cut.record"), 10))
    (tmp_path / "junk.record").write_bytes(b"not a record file at all")
    with pytest.raises(records.RecordError, match="checksum"):
        list(records.read_records(str(tmp_path / "junk.record"), 10))
    # The driver's own framing (its TensorBoard summaries) is byte for byte TensorFlow's.
    assert b"".join(records.frame(p) for p in payloads) == data
    flipped = bytearray(data)
    flipped[-10] ^= 0x40  # inside the last payload: only its data checksum can tell
    (tmp_path / "flipped.record").write_bytes(bytes(flipped))
    with pytest.raises(records.RecordError, match="record 2: bad data checksum"):
        list(records.read_records(str(tmp_path / "flipped.record"), 10))


def test_fast_crc_matches_the_python_reference():
    for data in (b"", b"a", b"123456789", os.urandom(100_003)):
        assert records.crc32c(data) == records.crc32c_python(data)
    assert records.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value


def test_read_new_records_resumes_and_waits_for_partial_records(tmp_path):
    import tensorflow as tf

    path = str(tmp_path / "grow.record")
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(b"one")
        writer.write(b"two")
    with open(path, "rb") as f:
        whole = f.read()
    (tmp_path / "partial.record").write_bytes(whole[:-5])  # second record still being written
    partial = str(tmp_path / "partial.record")
    payloads, offset = records.read_new_records(partial, 0)
    assert payloads == [b"one"] and offset == 12 + 3 + 4
    (tmp_path / "partial.record").write_bytes(whole)  # the writer finished it
    payloads, offset = records.read_new_records(partial, offset)
    assert payloads == [b"two"] and offset == len(whole)
    assert records.read_new_records(partial, offset) == ([], len(whole))
