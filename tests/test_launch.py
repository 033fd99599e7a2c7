"""Launch plan (pure) and progress reporting from real TensorBoard event files."""

from __future__ import annotations

import dataclasses
import glob
import json
import sys

import pytest

from train import errors
from train.contracts import TrainSpec
from train.launch import deaths, progress, specs
from train.options import RunOptions


@pytest.mark.parametrize(
    "remaining,every,expected",
    [
        (20, 10, 1),  # short run: one summary point per step
        (50000, 1000, 100),  # long run: as many steps per call as model_main_tf2, no overshoot
        (2500, 1000, 100),
        (997, 1000, 1),  # prime: only 1 divides it
        (600, 250, 25),  # divides both the remaining steps and the cadence
        (0, 10, 1),
    ],
)
def test_summary_cadence(remaining, every, expected):
    chosen = specs.summary_cadence(remaining, every)
    assert chosen == expected
    if remaining:
        assert remaining % chosen == 0 and every % chosen == 0


def test_steps_per_iteration_are_the_cadence_but_one_on_short_cpu_runs(tmp_path):
    from train.launch import cluster

    options = RunOptions(pipeline_config="in.config", model_dir=str(tmp_path / "m"))
    config = str(tmp_path / "m" / "pipeline.config")
    gpu = cluster.Topology(kind=cluster.MIRRORED, gpus=(0, 1))

    def chosen(steps, topology, opts=options):
        train = specs.build_launch(opts, config, steps, 0, {}, topology=topology).train
        return train.num_steps_per_iteration, train.input_images_every

    assert chosen(300, gpu) == (10, 10)  # divides 300 and the cadence of 1000
    # One step per call (the step traced once), the input images still every 10 steps.
    assert chosen(300, None) == (1, 10)
    assert chosen(specs.CPU_SINGLE_STEP_CALLS, None)[0] == 1
    assert chosen(50000, None) == chosen(50000, gpu) == (100, 100)  # the trace amortised
    asked = dataclasses.replace(options, num_steps_per_iteration=5)
    assert chosen(300, gpu, asked) == chosen(300, None, asked) == (5, 5)


def test_build_launch_is_pure_and_complete(tmp_path):
    options = RunOptions(
        pipeline_config="in.config",
        model_dir=str(tmp_path / "m"),
        checkpoint_every_n=5,
        train_input_path=("a.record", "b.record"),
        freeze="backbone",
    )
    built = specs.build_launch(
        options,
        str(tmp_path / "m" / "pipeline.config"),
        30,
        10,
        {"TF_USE_LEGACY_KERAS": "1"},
        python="/py",
    )
    spec_path = str(tmp_path / "m" / "train_spec.json")
    assert built.argv == ("/py", "-m", "train.tf.child", spec_path)
    assert built.env["TF_USE_LEGACY_KERAS"] == "1"
    assert built.train.num_steps_per_iteration == 1  # 20 remaining steps -> at least 20 points
    record = json.loads(specs.launch_json(built))
    assert record["train"]["num_train_steps"] == 30 and record["start_step"] == 10
    # The child reads back exactly the spec the driver wrote (the same class on both sides).
    assert TrainSpec.from_json(built.train.to_json()) == built.train
    assert built.train.options == options  # the user's flags reach the child whole
    assert not (tmp_path / "m").exists()  # building a plan writes nothing


def _write_events(directory, steps):
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(directory))
    with writer.as_default():
        for step in steps:
            tf.summary.scalar("steps_per_sec", 2.0, step=step)
            tf.summary.scalar("Loss/total_loss", 1.0 / step, step=step)
            tf.summary.scalar("Loss/classification_loss", 0.5, step=step)
            tf.summary.scalar("learning_rate", 0.01, step=step)
        writer.flush()


def test_event_tail_reads_incrementally(tmp_path):
    tail = progress.EventTail(str(tmp_path))
    assert tail.poll() == []
    _write_events(tmp_path, [1, 2])
    first = tail.poll(final=True)
    assert [r.step for r in first] == [1, 2]
    assert first[1].values["Loss/total_loss"] == pytest.approx(0.5)
    _write_events(tmp_path, [3])
    assert [r.step for r in tail.poll(final=True)] == [3]


def test_printer_cadence_short_and_long_runs():
    lines = []
    short = progress.ProgressPrinter(total=20, start=0, every_s=30, emit=lines.append)
    records = [
        progress.StepRecord(s, {"Loss/total_loss": 1.0, "steps_per_sec": 2.0}) for s in range(1, 21)
    ]
    short.feed(records, now=0.0)
    assert [line.split()[1] for line in lines] == [f"{s}/20" for s in (1, *range(2, 21, 2))]
    lines.clear()
    long = progress.ProgressPrinter(total=50000, start=0, every_s=30, emit=lines.append)
    long.feed(records[:5], now=0.0)  # only the first step of a long run, until time passes
    long.feed([progress.StepRecord(6, records[0].values)], now=31.0)
    assert [line.split()[1] for line in lines] == ["1/50000", "6/50000"]
    assert "eta 06:56:37" in lines[-1]  # 49994 steps at 2 steps/s


def test_config_changes_ignore_what_continuing_a_run_may_change():
    from tests.conftest import DEMO_CONFIG
    from train.launch import rundir
    from train.pipeline import configfile

    previous = configfile.load(DEMO_CONFIG).proto
    longer = configfile.load(DEMO_CONFIG).proto
    longer.train_config.num_steps += 1000
    longer.train_config.fine_tune_checkpoint = "/elsewhere/ckpt-0"
    assert rundir.config_changes(previous, longer) == []
    other = configfile.load(DEMO_CONFIG).proto
    other.train_config.batch_size = 3
    other.model.ssd.num_classes = 5
    assert rundir.config_changes(previous, other) == ["model", "train_config"]


def test_aside_path_is_a_sibling_and_inputs_inside_are_found(tmp_path):
    from train.launch import rundir

    assert rundir.aside_path(str(tmp_path / "m") + "/", "T") == str(tmp_path / "m.moved-T")
    inside = rundir.inputs_inside(str(tmp_path / "m"), [str(tmp_path / "m" / "a"), "/x", None])
    assert inside == [str(tmp_path / "m" / "a")]


_WRITE_OUTCOME = (
    "import sys; from train.contracts import Outcome; "
    "spec = sys.argv[1]; outcome = Outcome(**{fields!r}); "
    "from train.contracts import TrainSpec; "
    "outcome.write(TrainSpec.from_json(open(spec).read()).outcome); sys.exit({code})"
)


@pytest.mark.parametrize(
    "outcome,code,expected_exit,expected",
    [
        (
            {"status": "failed", "error": "ValueError: boom"},
            4,
            4,
            "error: training failed: ValueError: boom (full log:",
        ),
        (None, 4, 4, "error: training failed: the training process ended with exit status 4"),
        (None, 0, 4, "error: training failed: the training process ended with exit status 0"),
        (
            {"status": "stopped", "signal": "SIGTERM", "detail": "saved /m/ckpt-2 at step 3"},
            5,
            5,
            "stopped by SIGTERM: saved /m/ckpt-2 at step 3; rerun the same command",
        ),
    ],
)
def test_runner_maps_the_child_outcome_to_exit_code_and_one_line(
    tmp_path, outcome, code, expected_exit, expected
):
    from train.launch import runner

    options = RunOptions(pipeline_config="in.config", model_dir=str(tmp_path / "m"))
    built = specs.build_launch(options, str(tmp_path / "m" / "pipeline.config"), 10, 0, {})
    # A stand-in child process that ends the way the real one does on that outcome: it writes
    # its Outcome (or dies without one) and exits with the code.
    if outcome is None:
        script = f"import sys; print('Traceback (most recent call last):'); sys.exit({code})"
    else:
        script = _WRITE_OUTCOME.format(fields=outcome, code=code)
    child = dataclasses.replace(built, argv=(sys.executable, "-c", script, built.train_spec_path))
    lines: list[str] = []
    assert runner.run(child, 30.0, lines.append).code == expected_exit
    assert any(expected in line for line in lines), lines
    assert not any("Traceback" in line for line in lines)  # stack frames stay in the log


_GB = 1024**3
_UNLIMITED = -1  # resource.RLIM_INFINITY on Linux


@pytest.mark.parametrize(
    "returncode,tail,limit,expected",
    [
        # What TensorFlow 2.15 printed, aborting, when ulimit -v left no room for a thread.
        (
            -6,
            "F external/local_tsl/tsl/platform/default/env.cc:74] Check failed: ret == 0 "
            "(11 vs. 0)Thread tf_data_iterator_resource creation via pthread_create() failed.",
            _UNLIMITED,
            "'creation via pthread_create() failed' in its log",
        ),
        (
            -6,
            "terminate called after throwing an instance of 'std::bad_alloc'",
            _UNLIMITED,
            "'std::bad_alloc' in its log",
        ),
        # ... and when oneDNN could not allocate: failed ops, then a crash.
        (
            -11,
            "OP_REQUIRES failed at transpose_op.cc:186 : ABORTED: Operation received an "
            "exception:Status: 1, message: could not create a primitive",
            int(4.2 * _GB),
            "crashed with signal 11 under an address-space limit of 4.2 GB",
        ),
        (-11, "could not create a primitive", _UNLIMITED, None),  # a crash, no limit: a bug
        (-6, "F core/kernel.cc:1] Check failed: shape is valid", _UNLIMITED, None),
        (1, "ValueError: bad config", int(4.2 * _GB), None),  # an error exit under a limit
        (0, "std::bad_alloc", _UNLIMITED, None),  # it ended well: whatever the log says
    ],
)
def test_out_of_memory_is_read_from_how_the_child_ended_and_its_log(
    tmp_path, returncode, tail, limit, expected
):
    import resource

    assert resource.RLIM_INFINITY == _UNLIMITED
    log = tmp_path / "train.log"
    log.write_text("x" * 30000 + "\n" + tail + "\n")
    found = deaths.out_of_memory(returncode, str(log), address_limit=limit)
    if expected is None:
        assert found is None
    else:
        assert found.startswith("the training process ran out of host memory"), found
        assert expected in found and f"signal {-returncode}" in found


def test_a_sigkill_is_out_of_memory_only_when_the_kernels_oom_count_rose(tmp_path):
    import signal

    absent = str(tmp_path / "absent.log")
    now = deaths.oom_kill_count()
    assert now is not None  # Linux >= 4.13: /proc/vmstat counts OOM kills
    rose = deaths.out_of_memory(-signal.SIGKILL, absent, oom_kills_before=now - 1)
    assert "killed (SIGKILL)" in rose and "out-of-memory killer" in rose
    assert "its kill count rose by 1" in rose
    assert deaths.out_of_memory(-signal.SIGKILL, absent, oom_kills_before=now) is None
    assert deaths.out_of_memory(-signal.SIGKILL, absent) is None  # no count taken: no evidence
    assert "not for memory" in deaths.killed_detail(now)
    assert "may have been the OOM killer" in deaths.killed_detail(None)


# What TensorFlow 2.15 wrote when its allocator gave up under `ulimit -v` (then it went on
# waiting 10 s per allocation for more than 10 minutes), and the message it writes when a
# caller that can do without the memory is refused (harmless: training goes on).
_GAVE_UP = (
    "2026-12-05 23:35:50.568804: W external/local_tsl/tsl/framework/bfc_allocator.cc:485] "
    "Allocator (mklcpu) ran out of memory trying to allocate 56.25MiB (rounded to 58982400)"
    "requested by op "
)
_OP_FAILED = (
    "W tensorflow/core/framework/op_kernel.cc:1839] OP_REQUIRES failed at cwise_ops_common.cc:82"
    " : RESOURCE_EXHAUSTED: OOM when allocating tensor with shape[100,12804] and type float on "
    "/job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc"
)
_HARMLESS = (
    "W bfc_allocator.cc:296] Allocator (GPU_0_bfc) ran out of memory trying to allocate 2.30GiB "
    "with freed_by_count=0. The caller indicates that this is not a failure, but this may mean "
    "that there could be performance gains if more memory were available."
)


@pytest.mark.parametrize(
    "lines,expected",
    [
        ([_GAVE_UP], "host memory: its allocator mklcpu could not allocate 56.25MiB"),
        ([_OP_FAILED], "GPU memory: allocating a tensor of shape[100,12804]"),
        ([_HARMLESS, "step 100"], None),
    ],
    ids=["gave_up", "op_failed", "harmless"],
)
def test_the_allocator_watch_is_overdue_only_after_a_failure_and_its_grace(
    tmp_path, lines, expected
):
    log = tmp_path / "train.log"
    log.write_text(_GAVE_UP + "\n")  # an earlier child's: the watch reads only what comes
    watch = deaths.AllocatorWatch(str(log), grace_s=60)
    assert not watch.overdue(now=0.0)
    with open(log, "a") as f:
        f.write("\n".join(lines))  # the last line unfinished: not read until it ends
        f.flush()
        assert not watch.overdue(now=1.0) and watch.detail is None
        f.write("\n")
    assert not watch.overdue(now=2.0)
    assert watch.detail == expected
    assert watch.overdue(now=62.0) is (expected is not None)


@pytest.mark.parametrize(
    "line,stopped", [(_GAVE_UP, True), (_HARMLESS, False)], ids=["gave_up", "harmless"]
)
def test_a_child_whose_allocator_gave_up_is_stopped_and_ends_in_train_oom(
    tmp_path, monkeypatch, line, stopped
):
    """A stand-in child writes TensorFlow's line, then goes on like the real one (it waits)."""
    from train.launch import runner

    monkeypatch.setattr(deaths, "ALLOCATION_GRACE_S", 2.0)
    options = RunOptions(pipeline_config="in.config", model_dir=str(tmp_path / "m"))
    built = specs.build_launch(options, str(tmp_path / "m" / "pipeline.config"), 10, 0, {})
    then = _WRITE_OUTCOME.format(fields={"status": "ok", "step": 10}, code=0)
    script = f"import time; print({line!r}, flush=True); time.sleep({60 if stopped else 6}); {then}"
    child = dataclasses.replace(built, argv=(sys.executable, "-c", script, built.train_spec_path))
    lines: list[str] = []
    ended = runner.run(child, 30.0, lines.append)
    if not stopped:
        assert ended.code == 0 and ended.outcome.status == "ok", lines
        return
    assert ended.code == errors.EXIT_TRAINING and ended.outcome.code == "TRAIN.oom", lines
    assert ended.outcome.error.startswith(
        "the training process ran out of host memory (its allocator mklcpu could not allocate "
        "56.25MiB; still running 2 s later, it was stopped"
    )


class _RenamedSpec:
    """A PrepareSpec as a driver of another version would write it: a field renamed."""

    def __init__(self, spec, renamed: bool):
        self.spec, self.renamed = spec, renamed
        self.outcome = spec.outcome

    def write(self, path: str) -> None:
        from train import files

        data = self.spec.to_dict()
        data["checkpoint_path"] = data.pop("checkpoint")
        if not self.renamed:  # not even JSON: the child cannot tell where its Outcome goes
            files.write_atomic(path, "{truncated")
            return
        files.write_atomic(path, json.dumps(data))


@pytest.mark.parametrize("renamed", [True, False])
def test_a_child_that_cannot_read_its_spec_is_a_contract_error_naming_it(tmp_path, renamed):
    """The real child harness meets a spec it cannot read: INTERNAL, never 'exit status 1'."""
    import os

    from train.contracts import ContractError, Outcome
    from train.launch import paths, runner

    model_dir = str(tmp_path / "m")
    spec = specs.prepare_spec(model_dir, "p.config", "text", None, "detection", 3, False, 1)
    spec_path = paths.RunPaths(model_dir).spec(paths.PREPARE)
    child = runner.ChildRun(
        runner.module_argv("train.tf.prepare", spec_path),
        _RenamedSpec(spec, renamed),
        str(tmp_path / "prepare.log"),
        "restore dry run",
        {**os.environ, "CUDA_VISIBLE_DEVICES": "-1"},
    )
    with pytest.raises(ContractError) as raised:
        child.run()
    assert raised.value.path == spec_path
    if renamed:  # the child wrote an INTERNAL Outcome saying which field
        assert str(raised.value).startswith(f"{spec_path}: PrepareSpec: unknown fields")
        assert Outcome.read(spec.outcome).code == "INTERNAL"
    else:  # no Outcome to write: the exit status says it
        assert "could not read it" in str(raised.value)
        assert Outcome.read(spec.outcome) is None
    log = (tmp_path / "prepare.log").read_text()
    assert f"cannot read the spec {spec_path}: PrepareSpec:" in log  # the child said why


def test_input_images_are_thinned_to_their_cadence_and_every_other_summary_kept(tmp_path):
    """What TrainSpec.input_images_every does in the child: on one step per call, train_loop
    records its summaries every step, and three input images a step would be ~100 kB each.

    The summary is called as train_loop calls it (keywords, a step tensor in a tf.function).
    """
    from train import compat

    compat.apply()
    import tensorflow as tf
    from object_detection import model_lib_v2

    from train.tf import child

    writer = tf.summary.create_file_writer(str(tmp_path))
    images = tf.zeros([1, 4, 4, 3])

    @tf.function
    def step(global_step):
        for name in ("train_input_images", "other_images"):
            tf.compat.v2.summary.image(name=name, step=global_step, data=images, max_outputs=3)
        tf.compat.v2.summary.scalar("loss", 1.0, step=global_step)

    original = tf.compat.v2.summary.image
    with writer.as_default(), tf.summary.record_if(True):
        with child.thinned_input_images(model_lib_v2, 3):
            for i in range(8):
                step(tf.constant(i, tf.int64))
    writer.close()
    assert tf.compat.v2.summary.image is original  # put back for whatever runs next
    steps = {}
    for event in tf.compat.v1.train.summary_iterator(glob.glob(str(tmp_path / "*"))[0]):
        for value in event.summary.value:
            steps.setdefault(value.tag, []).append(event.step)
    assert steps == {
        "train_input_images": [0, 3, 6],
        "other_images": list(range(8)),
        "loss": list(range(8)),
    }


@pytest.mark.parametrize("ending,status", [("return 3", 3), ("raise RuntimeError('boom')", 1)])
def test_a_child_ends_with_mains_status_after_every_exit_handler(ending, status):
    """harness.run_module skips the interpreter's teardown (os._exit), never what comes before
    it: the status main returned (Python's 1 for an exception nothing caught, its traceback
    printed), the exit handlers registered after it, unflushed output."""
    import subprocess

    code = (
        "import atexit, sys\n"
        "from train.tf import harness\n"
        "def main(argv):\n"
        "    atexit.register(lambda: print('a later handler ran', flush=True))\n"
        "    sys.stdout.write('unflushed')\n"
        f"    {ending}\n"
        "harness.run_module(main)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == status, done.stderr
    assert done.stdout.startswith("unflushed") and "a later handler ran" in done.stdout
    assert ("RuntimeError: boom" in done.stderr) == (status == 1)
