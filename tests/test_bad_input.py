"""Bad input, family by family: one line, a documented exit code, no hang, no write over input.

Each family of mistakes a new user makes (issue 10's ~270 tries) gets a test: the driver must
answer with a finding or a one-line error and its exit code, never a traceback, a hang (every
CLI call here has a timeout), an accepted run, or a write over one of its inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct

import pytest

from tests.conftest import DEMO_CONFIG, preflight, run_python
from tests.helpers import demo_driver_args
from train import errors

CLI = ["-m", "train.finetune"]
TIMEOUT = 120  # a hang fails the test instead of blocking the suite


def _cli(args, **kwargs):
    result = run_python(CLI + [str(a) for a in args], timeout=TIMEOUT, **kwargs)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def _codes(report, severity=None):
    assert not [f for f in report.findings if f.code == "INTERNAL"], report.findings
    return sorted({f.code for f in report.findings if severity in (None, f.severity)})


def _digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _demo(assets, model_dir, *extra, **kwargs):
    return demo_driver_args(assets, model_dir, "--batch_size=2", *extra, **kwargs)[2:]


# --- hangs: FIFOs where files are expected --------------------------------------------------


def test_a_fifo_as_the_config_is_refused_at_once(tmp_path):
    fifo = tmp_path / "pipeline.config"
    os.mkfifo(fifo)
    result = _cli([f"--pipeline_config={fifo}", f"--model_dir={tmp_path / 'm'}"])
    assert result.returncode == errors.EXIT_USAGE
    assert result.stderr.splitlines()[0] == (
        f"error: --pipeline_config {fifo} is a named pipe (FIFO), not a file"
    )


def test_fifos_as_label_map_checkpoint_and_records_are_findings(good_config, demo_assets, tmp_path):
    labels, records = tmp_path / "labels.pbtxt", tmp_path / "train.record"
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    os.mkfifo(labels)
    os.mkfifo(records)
    os.mkfifo(checkpoint / "ckpt-0.index")
    shutil.copy(demo_assets["prefix"] + ".data-00000-of-00001", checkpoint)
    report = preflight(
        good_config,
        tmp_path / "m",
        label_map=str(labels),
        train_input_path=(str(records),),
        checkpoint=str(checkpoint / "ckpt-0"),
    )
    assert {"LABEL_MAP", "INPUT_DATA.not_a_file", "CKPT_UNREADABLE"} <= set(_codes(report))
    messages = " ".join(f.message for f in report.findings)
    assert messages.count("is a named pipe (FIFO), not a file") == 3
    shard_dir = tmp_path / "shard"
    shard_dir.mkdir()
    shutil.copy(demo_assets["prefix"] + ".index", shard_dir / "ckpt-0.index")
    os.mkfifo(shard_dir / "ckpt-0.data-00000-of-00001")
    report = preflight(good_config, tmp_path / "m", checkpoint=str(shard_dir / "ckpt-0"))
    assert _codes(report, "error") == ["CKPT_UNREADABLE.not_a_file"]


# --- tracebacks and exit 70 for user mistakes ----------------------------------------------


@pytest.mark.parametrize(
    "flag",
    ["--num_train_steps=4294967296", "--batch_size=99999999999", "--num_classes=2147483648"],
)
def test_numbers_beyond_the_proto_range_are_usage_errors(flag, tmp_path):
    result = _cli([f"--pipeline_config={DEMO_CONFIG}", f"--model_dir={tmp_path}", flag])
    assert result.returncode == errors.EXIT_USAGE
    assert "is not an integer in the range [1, " in result.stderr.splitlines()[0]


@pytest.mark.parametrize("where", ["a_folder", "under_a_file"])
def test_report_json_that_cannot_be_written_is_a_usage_error(where, tmp_path):
    target = tmp_path if where == "a_folder" else tmp_path / "file.txt" / "r.json"
    (tmp_path / "file.txt").write_text("x")
    result = _cli(
        [
            f"--pipeline_config={DEMO_CONFIG}",
            f"--model_dir={tmp_path / 'm'}",
            f"--report_json={target}",
        ]
    )
    assert result.returncode == errors.EXIT_USAGE
    assert result.stderr.splitlines()[0].startswith(f"error: --report_json {target} ")
    assert (tmp_path / "file.txt").read_text() == "x"


@pytest.mark.parametrize(
    "model_dir,reason",
    [
        ("FILE", "is a file, not a folder"),
        ("/dev/null", "is a device, not a folder"),
        ("FILE/sub/run", "cannot be created: FILE is a file"),
        ("/proc/sys/kernel/tfod_run", "is not writable (its existing parent /proc/sys/kernel)"),
        ("LOOP", "is a symbolic link loop"),
    ],
)
def test_model_dir_must_be_a_folder_we_can_write(good_config, tmp_path, model_dir, reason):
    file = tmp_path / "a_file"
    file.write_text("mine")
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    model_dir = model_dir.replace("FILE", str(file)).replace("LOOP", str(loop))
    report = preflight(good_config, model_dir)
    unusable = [f for f in report.findings if f.code == "MODEL_DIR.unusable"]
    assert len(unusable) == 1 and unusable[0].severity == "error"
    assert reason.replace("FILE", str(file)) in unusable[0].message
    assert file.read_text() == "mine"


def test_empty_flags_are_usage_errors_not_silent_defaults(tmp_path):
    base = [f"--pipeline_config={DEMO_CONFIG}", f"--model_dir={tmp_path / 'm'}"]
    for flag in ("--model_dir=", "--label_map=", "--gpus=", "--checkpoint=", "--report_json="):
        args = base[:1] + [flag] if flag == "--model_dir=" else base + [flag]
        result = _cli(args)
        assert result.returncode == errors.EXIT_USAGE, flag
        assert f"{flag} is empty: give a value" in result.stderr.splitlines()[0], result.stderr
    assert not (tmp_path / "m").exists()


# --- checks that crashed ---------------------------------------------------------------------


def test_nul_byte_directory_shard_and_undecodable_label_map_are_findings(good_config, tmp_path):
    latin1 = tmp_path / "labels.pbtxt"
    latin1.write_bytes("item { id: 1 name: 'caf\xe9' }\n".encode("latin-1"))
    folder = tmp_path / "records"
    folder.mkdir()
    report = preflight(
        good_config,
        tmp_path / "m",
        label_map=str(latin1),
        train_input_path=("data/train\0.record",),
        eval_input_path=(str(folder),),
    )
    codes = _codes(report, "error")
    assert {"LABEL_MAP", "INPUT_DATA.bad_path", "INPUT_DATA.not_a_file"} <= set(codes)
    text = " ".join(f.message for f in report.findings)
    assert "is not UTF-8 text (byte 23" in text and f"{folder} is a directory" in text


# --- bad input that was accepted ------------------------------------------------------------


@pytest.mark.parametrize(
    "items,fragment",
    [
        ("item { id: 1 name: 'a' }\nitem { id: -2 name: 'b' }\n", "negative ids [-2]"),
        ("item { id: -1 name: 'a' }\nitem { id: -2 name: 'b' }\n", "negative ids [-2, -1]"),
        ("item { id: 1 name: 'a' }\nitem { id: 2147483647 name: 'b' }\n", "ids above 10000"),
    ],
)
def test_label_map_ids_outside_1_to_n_are_refused_not_fixed(good_config, tmp_path, items, fragment):
    labels = tmp_path / "labels.pbtxt"
    labels.write_text(items)
    report = preflight(good_config, tmp_path / "m", label_map=str(labels))
    range_findings = [f for f in report.findings if f.code == "LABEL_MAP.id_range"]
    assert len(range_findings) == 1 and fragment in range_findings[0].message
    # num_classes is never "fixed" to -1 or 2147483647.
    assert not [e for f in report.findings for e in f.edits if e.path.endswith("num_classes")]


@pytest.mark.parametrize(
    "old,new,code",
    [
        ("num_classes: 3", "num_classes: 0", "NUM_CLASSES.range"),
        ("num_classes: 3", "num_classes: -4", "NUM_CLASSES.range"),
        ("num_classes: 3", "num_classes: 50000", "NUM_CLASSES.range"),
        ("batch_size: 2", "batch_size: 0", "BATCH.zero"),
    ],
)
def test_impossible_sizes_without_a_label_map(good_config, tmp_path, demo_assets, old, new, code):
    text = good_config.read_text()
    text = text.replace(f'label_map_path: "{demo_assets["label_map"]}"', 'label_map_path: ""')
    good_config.write_text(text.replace(old, new, 1))
    report = preflight(good_config, tmp_path / "m")
    assert code in _codes(report, "error")


def _corrupt_index_block(source_prefix, out_dir):
    """A copy of the checkpoint whose index has one data-block byte flipped (length kept)."""
    out_dir.mkdir()
    shutil.copy(source_prefix + ".data-00000-of-00001", out_dir / "ckpt-0.data-00000-of-00001")
    data = bytearray(open(source_prefix + ".index", "rb").read())
    data[40] ^= 0x01  # inside the first data block
    (out_dir / "ckpt-0.index").write_bytes(bytes(data))
    return str(out_dir / "ckpt-0")


def test_checkpoint_with_corrupted_index_or_missing_shard_is_refused(
    good_config, tmp_path, demo_assets
):
    import tensorflow as tf

    corrupt = _corrupt_index_block(demo_assets["prefix"], tmp_path / "corrupt")
    with pytest.raises(Exception, match="block checksum mismatch"):  # as TensorFlow's reader
        tf.train.list_variables(corrupt)
    report = preflight(good_config, tmp_path / "m", checkpoint=corrupt)
    assert _codes(report, "error") == ["CKPT_UNREADABLE"]
    assert "block checksum mismatch" in report.errors()[0].message

    two = tmp_path / "two_shards"
    two.mkdir()
    from train.checkpoint import bundle

    shards, _ = bundle.read_index(demo_assets["prefix"])
    assert shards == 1
    shutil.copy(demo_assets["prefix"] + ".index", two / "ckpt-0.index")
    shutil.copy(demo_assets["prefix"] + ".data-00000-of-00001", two / "ckpt-0.data-00000-of-00002")
    report = preflight(good_config, tmp_path / "m", checkpoint=str(two / "ckpt-0"))
    assert _codes(report, "error") == ["CKPT_UNREADABLE.shard_count"]
    assert "expects 1 data shard(s) but ckpt-0.data-00000-of-00001 is missing" in (
        report.errors()[0].message
    )


def test_report_json_naming_an_input_is_refused_and_the_input_kept(demo_assets, tmp_path):
    config = tmp_path / "mine.config"
    shutil.copy(DEMO_CONFIG, config)
    labels = tmp_path / "labels.pbtxt"
    shutil.copy(demo_assets["label_map"], labels)
    for target in (config, labels):
        before = _digest(target)
        args = _demo(
            demo_assets,
            tmp_path / "m",
            "--preflight_only",
            f"--report_json={target}",
            config=config,
        )
        args = [a if not a.startswith("--label_map=") else f"--label_map={labels}" for a in args]
        result = _cli(args)
        assert result.returncode == errors.EXIT_USAGE, result.stderr[-2000:]
        assert f"--report_json {target} exists and is not a JSON report" in result.stderr
        assert _digest(target) == before


# --- failures found only in training, caught in the record sample ----------------------------


def _write_records(path, payloads, corrupt_at=None):
    """A TFRecord file; the record at `corrupt_at` gets a wrong data checksum."""
    from train import records

    with open(path, "wb") as f:
        for index, payload in enumerate(payloads):
            framed = records.frame(payload)
            if index == corrupt_at:
                framed = framed[:-4] + struct.pack("<I", struct.unpack("<I", framed[-4:])[0] ^ 1)
            f.write(framed)
    return str(path)


def _example_bytes(encoded=None, drop_image=False):
    import numpy as np

    from train.tf import synthetic

    image, boxes, labels = synthetic.make_image(np.random.default_rng(1), 32)
    example = synthetic.to_example(image, boxes, labels, "x.jpg", synthetic.CLASSES)
    if drop_image:
        del example.features.feature["image/encoded"]
    elif encoded is not None:
        example.features.feature["image/encoded"].bytes_list.value[0] = encoded
    return example.SerializeToString()


@pytest.mark.parametrize(
    "case,code,fragment",
    [
        ("crc", "INPUT_DATA.corrupt", "record 2: bad data checksum"),
        ("no_image", "INPUT_DATA.no_image", "record 1"),
        ("not_image", "INPUT_DATA.image_format", "record 1 (starts with b'GIF89a"),
    ],
)
def test_records_training_would_die_on_are_caught_in_the_sample(
    good_config, tmp_path, case, code, fragment
):
    good = _example_bytes()
    bad = {
        "crc": good,
        "no_image": _example_bytes(drop_image=True),
        "not_image": _example_bytes(encoded=b"GIF89a" + b"\0" * 30),
    }[case]
    path = _write_records(
        tmp_path / "train.record", [good, bad, good], corrupt_at=2 if case == "crc" else None
    )
    report = preflight(good_config, tmp_path / "m", train_input_path=(path,))
    found = [f for f in report.errors() if f.code == code]
    assert found and f"{path}" in found[0].message and fragment in found[0].message


def test_bmp_images_are_not_mistaken_for_bad_images(good_config, tmp_path):
    import io

    import numpy as np
    from PIL import Image

    bmp = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(bmp, format="BMP")
    path = _write_records(tmp_path / "train.record", [_example_bytes(encoded=bmp.getvalue())])
    report = preflight(good_config, tmp_path / "m", train_input_path=(path,))
    assert "INPUT_DATA.image_format" not in _codes(report)


@pytest.mark.slow
def test_a_bad_record_beyond_the_sample_fails_training_with_file_and_record(demo_assets, tmp_path):
    from train import records

    good = list(records.read_records(demo_assets["train"], 10**6))
    # 201 good records, so the preflight's 200-record sample is clean; then a corrupted one.
    payloads = [good[i % len(good)] for i in range(201)] + [good[0]]
    path = _write_records(tmp_path / "train.record", payloads, corrupt_at=201)
    result = _cli(
        _demo(demo_assets, tmp_path / "m", "--num_train_steps=400", f"--train_input_path={path}")
    )
    assert result.returncode == errors.EXIT_TRAINING, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: training failed: bad training record: {path} record 201")
    assert "(full log:" in last


# --- messages -------------------------------------------------------------------------------


def test_megabyte_values_are_cut_in_messages(tmp_path):
    config = tmp_path / "huge.config"
    config.write_text("model { ssd { " + "x" * 5_000_000 + ": 3 } }\n")
    result = _cli([f"--pipeline_config={config}", f"--model_dir={tmp_path / 'm'}"])
    assert result.returncode == errors.EXIT_PREFLIGHT
    assert "PARSE" in result.stderr and "more characters]" in result.stderr
    assert len(result.stderr) < 2000
    long_path = "/nowhere/" + "d" * 100_000 + ".config"  # the OS caps one argument at 128 KiB
    result = _cli([f"--pipeline_config={long_path}", f"--model_dir={tmp_path / 'm'}"])
    assert result.returncode == errors.EXIT_USAGE and len(result.stderr) < 2000


def test_pipeline_config_problems_each_say_what_and_share_exit_2(tmp_path):
    unreadable = tmp_path / "latin1.config"
    unreadable.write_bytes(b"model { }\n# \xe9\n")
    cases = {
        tmp_path / "nope.config": ("does not exist", "check the --pipeline_config path"),
        tmp_path: ("is a directory, not a file", "the pipeline.config file itself"),
        unreadable: ("is not UTF-8 text", "save the config as UTF-8"),
    }
    for path, (reason, fix) in cases.items():
        result = _cli([f"--pipeline_config={path}", f"--model_dir={tmp_path / 'm'}"])
        assert result.returncode == errors.EXIT_USAGE, result.stderr
        first, second = result.stderr.splitlines()[:2]
        assert first.startswith(f"error: --pipeline_config {path} {reason}")
        assert fix in second
    bom = tmp_path / "bom.config"
    bom.write_bytes(b"\xef\xbb\xbf" + open(DEMO_CONFIG, "rb").read())
    result = _cli([f"--pipeline_config={bom}", f"--model_dir={tmp_path / 'm'}", "--preflight_only"])
    assert result.returncode == errors.EXIT_PREFLIGHT and "PARSE" not in result.stderr
    assert "PLACEHOLDER" in result.stderr  # parsed: it is the zoo config as shipped


def test_help_lists_the_drivers_flags_and_not_tensorflows():
    result = _cli(["--help"])
    assert result.returncode == 0
    for flag in ("--pipeline_config", "--model_dir", "--checkpoint", "--report_json", "--gpus"):
        assert flag in result.stdout, flag
    assert "Global batch size" in result.stdout
    assert "tensorflow" not in result.stdout.lower().replace("tensorboard", "")


# --- a JSON report on every exit -------------------------------------------------------------


def test_json_report_on_parse_errors_usage_errors_and_internal_errors(demo_assets, tmp_path):
    report = tmp_path / "r.json"
    bad = tmp_path / "bad.config"
    bad.write_text("model {\n  ssd {\n    num_clases: 3\n  }\n}\n")
    result = _cli(
        [f"--pipeline_config={bad}", f"--model_dir={tmp_path / 'm'}", f"--report_json={report}"]
    )
    assert result.returncode == errors.EXIT_PREFLIGHT
    document = json.loads(report.read_text())
    assert document["outcome"]["exit_code"] == errors.EXIT_PREFLIGHT
    assert [(f["code"], f["line"]) for f in document["findings"]] == [("PARSE", 3)]

    report.unlink()
    result = _cli(_demo(demo_assets, tmp_path / "m", "--gpus=99", f"--report_json={report}"))
    assert result.returncode == errors.EXIT_USAGE
    outcome = json.loads(report.read_text())["outcome"]
    assert outcome["exit_code"] == errors.EXIT_USAGE and "--gpus=99" in outcome["message"]

    report.unlink()  # a bug: the test breaks the driver's planning on purpose
    crash = (
        "import sys; from train import driver; "
        "driver.plan_run = lambda *a, **k: 1 / 0; "
        "from train import finetune; sys.argv = ['finetune'] + sys.argv[1:]; finetune.run()"
    )
    result = run_python(
        ["-c", crash, *_demo(demo_assets, tmp_path / "m", f"--report_json={report}")],
        timeout=TIMEOUT,
    )
    assert result.returncode == errors.EXIT_INTERNAL
    outcome = json.loads(report.read_text())["outcome"]
    assert outcome["exit_code"] == errors.EXIT_INTERNAL
    assert outcome["message"] == "internal error: ZeroDivisionError: division by zero"


# --- permission denied ------------------------------------------------------------------------


def _without_privileges(args):
    """The CLI as a user that permissions apply to (root keeps its uid, loses DAC override)."""
    prefix = []
    if os.geteuid() == 0:  # CI runs as root, which reads and writes everything
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
    import subprocess
    import sys

    return subprocess.run(
        [*prefix, sys.executable, *CLI, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


def test_unreadable_and_unwritable_paths_are_findings_or_usage_errors(demo_assets, tmp_path):
    config = tmp_path / "mine.config"
    shutil.copy(DEMO_CONFIG, config)
    locked = tmp_path / "locked"  # a checkpoint folder this user may not list or read
    locked.mkdir()
    shutil.copy(demo_assets["prefix"] + ".index", locked / "ckpt-0.index")
    labels, records = tmp_path / "labels.pbtxt", tmp_path / "train.record"
    shutil.copy(demo_assets["label_map"], labels)
    shutil.copy(demo_assets["train"], records)
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    for path, mode in ((locked, 0o000), (labels, 0o000), (records, 0o000), (read_only, 0o555)):
        os.chmod(path, mode)
    try:
        result = _without_privileges(
            _demo(
                demo_assets,
                read_only / "m",
                "--preflight_only",
                f"--checkpoint={locked / 'ckpt-0'}",
                f"--label_map={labels}",
                f"--train_input_path={records}",
                config=config,
            )
        )
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        assert result.returncode == errors.EXIT_PREFLIGHT, result.stderr[-3000:]
        for code in ("MODEL_DIR.unusable", "LABEL_MAP", "INPUT_DATA.not_a_file"):
            assert f" {code}" in result.stderr, code
        assert f"{read_only / 'm'}' is not writable (its existing parent {read_only})" in (
            result.stderr
        )
        assert f"CKPT_PATH.unreadable: {config}:" in result.stderr
        assert f"the folder {locked} cannot be read (permission denied)" in result.stderr
        assert result.stderr.count("cannot be read (permission denied)") == 3
        os.chmod(config, 0o000)
        result = _without_privileges([f"--pipeline_config={config}", f"--model_dir={tmp_path}"])
        assert result.returncode == errors.EXIT_USAGE and "Traceback" not in result.stderr
        assert f"{config} cannot be read (permission denied)" in result.stderr.splitlines()[0]
        result = _without_privileges(
            [
                f"--pipeline_config={DEMO_CONFIG}",
                f"--model_dir={tmp_path / 'm'}",
                f"--report_json={read_only / 'r.json'}",
            ]
        )
        assert result.returncode == errors.EXIT_USAGE
        assert f"--report_json {read_only / 'r.json'} cannot be written" in result.stderr
    finally:
        for path in (locked, labels, records, read_only, config):
            os.chmod(path, 0o755)


def test_ctrl_c_before_training_is_one_line_and_exit_5(tmp_path):
    interrupted = (
        "import sys; from train import driver\n"
        "def plan_run(*a, **k): raise KeyboardInterrupt\n"  # Ctrl-C while the preflight reads
        "driver.plan_run = plan_run\n"
        "from train import finetune; sys.argv = ['finetune'] + sys.argv[1:]; finetune.run()"
    )
    result = run_python(
        ["-c", interrupted, f"--pipeline_config={DEMO_CONFIG}", f"--model_dir={tmp_path / 'm'}"],
        timeout=TIMEOUT,
    )
    assert result.returncode == errors.EXIT_INTERRUPTED
    assert result.stderr.strip() == "interrupted before training started"
