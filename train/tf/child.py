"""The training process: the real `object_detection.model_lib_v2.train_loop`, plus a final save.

Run as `python -m train.tf.child model_dir/train_spec.json` (a contracts.TrainSpec) by the
runner, never by users; it ends by writing a contracts.Outcome the runner reads. It is a
separate process so that the OD API's TensorFlow state, GPU memory and global absl flags never
mix with the driver's.

What it adds to `train_loop`: `train_loop` saves only at step 0 and whenever
`checkpoint_every_n` steps have passed since the last save, so the last
`num_steps % checkpoint_every_n` steps are lost (tensorflow/models#9650). The child records the
CheckpointManager that `train_loop` creates and saves once more at the end if the final step is
not saved yet; and on SIGTERM, SIGUSR2 (Slurm preemption warnings) or SIGINT it stops between
training iterations, saves the current step, and exits with errors.EXIT_INTERRUPTED, so the
same command resumes from model_dir.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import traceback

from train.tf import guards, harness

STOP_SIGNALS = ("SIGTERM", "SIGUSR2", "SIGINT")  # kill/Slurm preemption, Slurm --signal, Ctrl-C


class Stopped(BaseException):
    """Raised in the training thread by a stop signal (a BaseException: nothing swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SignalGuard:
    """Turns the first stop signal into `Stopped`, never in the middle of a checkpoint write.

    Python runs signal handlers in the main thread between bytecodes, so a handler that raises
    interrupts `train_loop` between TensorFlow calls: after a training iteration has returned,
    the variables and the step counter agree, and saving then loses no step. While a checkpoint
    is being written the signal is held and raised when the write is done; signals after the
    first are ignored (a terminal's Ctrl-C reaches both the driver, which forwards it, and this
    process).

    With several workers (`agreed=True`) a save is a collective operation (reading
    sync-on-read variables such as batch-norm statistics all-reduces them), so every worker
    must stop after the same iteration: the signal is only recorded, and `at_iteration_end`,
    called by every worker after each iteration, all-reduces "has anyone been signalled" and
    stops them all together.
    """

    def __init__(self, agreed: bool = False):
        self.saving = 0
        self.pending: int | None = None
        self.stopping = False
        self.agreed = agreed

    def handler(self, signum, frame) -> None:  # noqa: D102, ARG002
        if self.stopping:
            return
        if self.saving or self.agreed:
            self.pending = self.pending or signum
            return
        self.stopping = True
        raise Stopped(signum)

    def at_iteration_end(self, signalled_anywhere) -> None:
        """Multi-worker: stops every worker once any of them has been signalled."""
        if self.stopping:
            return
        if signalled_anywhere(self.pending is not None):
            self.stopping = True
            raise Stopped(self.pending or signal.SIGTERM)

    @contextlib.contextmanager
    def writing_checkpoint(self):
        """Holds stop signals for the duration of a checkpoint write."""
        self.saving += 1
        try:
            yield
        finally:
            self.saving -= 1
            if (
                not self.saving
                and self.pending is not None
                and not self.stopping
                and not self.agreed
            ):
                self.stopping = True
                raise Stopped(self.pending)

    def install(self) -> None:
        """Handles every stop signal (call from the main thread)."""
        for name in STOP_SIGNALS:
            signal.signal(getattr(signal, name), self.handler)


@contextlib.contextmanager
def _recording_checkpoint_managers(tf, created: list, guard: SignalGuard, model_dir: str = ""):
    """Records every tf.train.CheckpointManager created inside the block into `created`.

    Their saves hold stop signals until the checkpoint is written (see SignalGuard).

    They also create the optimizer's slots before the step's first call (tracing.create_slots:
    the step traced once, not twice): train_loop creates its manager once the model is built
    and restored, then restores the run's latest checkpoint in `model_dir` or saves step 0,
    then steps. When resuming, the slots are created at once (the restore fills them); on a
    new run, after the step-0 save, which keeps the layout the OD API writes (no slots). A
    step-0 checkpoint with slots broke the OD API's evaluator (ours too): its first restore,
    before its model is built, defers the slots' restore to its next one, which then reads the
    first file, gone by then when it was a copy (tests/test_finish.py found it). The decision
    reads `model_dir` as train_loop does, not the manager's own folder (a temporary one on
    the other workers): creating variables is collective across workers, so every worker must
    create them at the same point (test_slurm's resumed two-worker job found it). A model not
    built by then (no fine-tune restore built it) is built by the step, which creates its
    slots as the OD API does.
    """
    from train.tf import tracing

    original = tf.train.CheckpointManager

    class RecordingCheckpointManager(original):
        def __init__(self, checkpoint, *args, **kwargs):
            super().__init__(checkpoint, *args, **kwargs)
            created.append(self)
            self.slots_created = False
            if model_dir and tf.train.latest_checkpoint(model_dir):
                self._create_slots()

        def _create_slots(self) -> None:
            self.slots_created = True
            model = getattr(self._checkpoint, "model", None)
            if model is None or not hasattr(self._checkpoint, "optimizer"):
                return
            try:
                variables = model.trainable_variables
            except ValueError:  # Keras: "Weights for model ... have not yet been created"
                return
            tracing.create_slots(self._checkpoint.optimizer, variables)

        def save(self, *args, **kwargs):
            guards.check_finite_state(tf, self._checkpoint)
            with guard.writing_checkpoint():
                path = super().save(*args, **kwargs)
            self.saved_step = int(self._checkpoint.step.numpy())
            if not self.slots_created:
                self._create_slots()
            return path

    tf.train.CheckpointManager = RecordingCheckpointManager
    tf.compat.v2.train.CheckpointManager = RecordingCheckpointManager
    try:
        yield created
    finally:
        tf.train.CheckpointManager = original
        tf.compat.v2.train.CheckpointManager = original


def _saved_step(tf, manager) -> int | None:
    latest = manager.latest_checkpoint
    if not latest:
        return None
    try:
        return int(tf.train.load_variable(latest, "step/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.OpError, ValueError):
        return None


def save_final(tf, managers) -> str | None:
    """Saves the training state unless the latest checkpoint already holds the final step.

    The decision uses the step this process's manager last saved (the same on every worker,
    which matters: a multi-worker save is collective), else the checkpoint on disk.
    """
    if not managers:
        return None
    manager = managers[-1]
    step = int(manager.checkpoint.step.numpy())
    saved = getattr(manager, "saved_step", None)
    if saved is None:
        saved = _saved_step(tf, manager)
    if saved == step:
        return None
    return manager.save()


@contextlib.contextmanager
def _iteration_end_hook(model_lib_v2, callback):
    """Calls `callback()` after every training iteration of train_loop, on every worker.

    train_loop has no hook; the one call it makes once per iteration, after the distributed
    step returns and outside any tf.function, is its `steps_per_sec` summary.
    """
    summary = model_lib_v2.tf.compat.v2.summary
    original = summary.scalar

    def scalar(name, *args, **kwargs):
        result = original(name, *args, **kwargs)
        if name == "steps_per_sec":
            callback()
        return result

    summary.scalar = scalar
    try:
        yield
    finally:
        summary.scalar = original


@contextlib.contextmanager
def thinned_input_images(model_lib_v2, every: int):
    """Records train_loop's input-image summary only at steps that are multiples of `every`.

    train_loop records its summaries at the end of each iteration; with one step per
    iteration (short CPU runs, train/launch/specs.py) that would be three PNG images a step, ~100 kB
    (6.4 MB for 60 steps of the demo against 0.5 MB). The scalars stay at every step.
    """
    summary = model_lib_v2.tf.compat.v2.summary
    original = summary.image
    tf = model_lib_v2.tf

    def image(name, data, step=None, *args, **kwargs):
        if name != "train_input_images" or every <= 1 or step is None:
            return original(name, data, step, *args, **kwargs)
        recording = summary.should_record_summaries()  # train_loop's own condition
        at_cadence = tf.equal(tf.math.floormod(tf.cast(step, tf.int64), every), 0)
        with summary.record_if(lambda: tf.logical_and(recording, at_cadence)):
            return original(name, data, step, *args, **kwargs)

    summary.image = image
    try:
        yield
    finally:
        summary.image = original


@contextlib.contextmanager
def tracking_phases(model_lib_v2, phase: harness.Phase):
    """Sets `phase` around train_loop's model build and its input pipeline's construction.

    The build is its MODEL_BUILD_UTIL_MAP entry; the pipeline is built by `inputs.train_input`
    (the decoder and augmentation builders run there; decoding itself runs in the first step).
    """
    builders = model_lib_v2.MODEL_BUILD_UTIL_MAP
    original_build = builders["detection_model_fn_base"]
    original_input = model_lib_v2.inputs.train_input

    def build(*args, **kwargs):
        phase.name = "model"
        model = original_build(*args, **kwargs)
        phase.name = "first_step"
        return model

    def train_input(*args, **kwargs):
        before, phase.name = phase.name, "input"
        dataset = original_input(*args, **kwargs)
        phase.name = before
        return dataset

    builders["detection_model_fn_base"] = build
    model_lib_v2.inputs.train_input = train_input
    try:
        yield
    finally:
        builders["detection_model_fn_base"] = original_build
        model_lib_v2.inputs.train_input = original_input


class NothingToTrain(RuntimeError):
    """The freeze rule leaves no variable to train."""


@contextlib.contextmanager
def applying_freeze(model_lib_v2, config, freeze: str, report_path: str = ""):
    """Makes the model's `trainable_variables` what the freeze rule leaves (see freezing).

    train_loop's step trains `detection_model.trainable_variables`; the built model's class is
    swapped for a subclass whose property filters that list, decided once, the first time
    the variables exist (when the step is traced), and reported in `report_path` (when given).
    `freeze` is --freeze, canonical (train.pipeline.freezing.parse_flag).
    """
    from train.contracts import TrainingFreeze
    from train.pipeline import freezing

    the_rule = freezing.rule(config.train_config, freeze)
    builders = model_lib_v2.MODEL_BUILD_UTIL_MAP
    original_build = builders["detection_model_fn_base"]

    def build(*args, **kwargs):
        model = original_build(*args, **kwargs)
        decided: dict[int, bool] = {}
        base = type(model)

        def trainable_variables(self):
            every = super(frozen_class, self).trainable_variables
            if every and any(id(v) not in decided for v in every):
                _decide(self, every, decided)
            return [v for v in every if decided.get(id(v), True)]

        frozen_class = type(
            base.__name__, (base,), {"trainable_variables": property(trainable_variables)}
        )
        model.__class__ = frozen_class
        return model

    def _decide(model, every, decided):
        from train.tf import restore

        keys = {id(v): k for k, v in restore.model_variables(model).items()}
        named = [(v.name, keys.get(id(v), ""), int(v.shape.num_elements() or 0)) for v in every]
        trains, unmatched = freezing.decide(the_rule, [(n, k) for n, k, _ in named])
        decided.update({id(v): keep for v, keep in zip(every, trains, strict=True)})
        measured = freezing.report(the_rule, named, trains, unmatched)
        if report_path:
            TrainingFreeze(measured).write(report_path)
        print(f"[tfod-finetune] freeze: {measured['summary']}", flush=True)
        if not any(trains):
            raise NothingToTrain(
                f"FREEZE.everything: {the_rule.describe()} leaves no variable to train"
            )

    if the_rule.active or report_path:
        builders["detection_model_fn_base"] = build
    try:
        yield
    finally:
        builders["detection_model_fn_base"] = original_build


def _signalled_anywhere(tf, strategy):
    """A function: True on every worker when any worker passes True (one tiny all-reduce)."""

    def count(flag):
        context = tf.distribute.get_replica_context()
        return context.all_reduce(tf.distribute.ReduceOp.SUM, flag)

    def signalled(local: bool) -> bool:
        # Eager: inside a tf.function MWMS fails to place this all-reduce ("destinations can
        # not be empty"); eagerly it costs a few milliseconds per iteration.
        total = strategy.run(count, args=(tf.constant(1.0 if local else 0.0),))
        return float(strategy.experimental_local_results(total)[0]) > 0

    return signalled


def seed_everything(tf, seed: int) -> None:
    """Seeds what a training draws from: TensorFlow's ops, Keras' initializers, Python, NumPy.

    tf.random.set_seed alone is not enough for --seed's promise: Keras' unseeded initializers
    (the new layers' initial values) take their seeds from Python's `random`, so the same
    --seed gave different heads run to run. Keras' own set_random_seed covers all four.
    """
    tf.keras.utils.set_random_seed(seed)


class RestoreFailed(RuntimeError):
    """The fine-tune restore raised or left part of its own scope unfilled."""


@contextlib.contextmanager
def _measured_fine_tune_restore(
    model_lib_v2, report_path: str, num_classes: int | None, phase: harness.Phase
):
    """Makes train_loop's fine-tune restore measure itself and write `report_path`.

    The model is built first as the OD API does before a restore (its dummy computation on
    one training batch, run eagerly: restore.build_on_batch), so the measurement costs no
    extra model build.
    """
    from train.checkpoint import components
    from train.contracts import TrainingRestore
    from train.tf import restore

    original = model_lib_v2.load_fine_tune_checkpoint

    def measured(model, path, checkpoint_type, version, run_on_dummy_input, dataset, unpad):
        phase.name = "first_step"  # the dummy computation reads the first batch
        if run_on_dummy_input:
            restore.build_on_batch(model, dataset, unpad)
        phase.name = "restore"

        def od_api_restore():
            original(model, path, checkpoint_type, version, False, dataset, unpad)

        if not run_on_dummy_input:  # variables not built yet: restored lazily, not measurable
            od_api_restore()
            report = {"summary": "not measured (run_fine_tune_checkpoint_dummy_computation: false)"}
        else:
            report = restore.measure(model, checkpoint_type, od_api_restore, num_classes)
        TrainingRestore(path, report).write(report_path)
        reason = components.failure(report) if run_on_dummy_input else None
        if reason:
            raise RestoreFailed(f"fine-tune restore from {path}: {reason}")
        phase.name = "first_step"

    model_lib_v2.load_fine_tune_checkpoint = measured
    try:
        yield
    finally:
        model_lib_v2.load_fine_tune_checkpoint = original


def make_strategy(tf, spec):
    """The tf.distribute strategy the driver chose (train.launch.cluster).

    GPUs not chosen with --gpus are hidden from TensorFlow with `set_visible_devices`, which
    keeps it from taking their memory, and leaves CUDA_VISIBLE_DEVICES as Slurm or the user
    set it.
    """
    physical = tf.config.list_physical_devices("GPU")
    chosen = [physical[i] for i in spec.gpus if i < len(physical)]
    if len(chosen) != len(physical):
        tf.config.set_visible_devices(chosen, "GPU")
    kind = spec.kind
    if kind == "multi_worker":  # reads TF_CONFIG; worker 0 is the chief
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=spec.communication_timeout_s
        )
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _remove_worker_scratch(tf, managers, model_dir: str) -> None:
    """Removes the temp_worker_N checkpoints a non-chief worker's final save wrote."""
    for manager in managers:
        directory = manager.directory
        if os.path.abspath(directory) != os.path.abspath(model_dir) and tf.io.gfile.isdir(
            directory
        ):
            tf.io.gfile.rmtree(directory)


def _stopped(tf, spec, managers: list, guard, signal: str, step: int | None):
    """The Outcome of a run a signal stopped: the current step saved when it was not yet."""
    from train.contracts import STOPPED, Outcome

    poisoned = None
    try:
        with guard.writing_checkpoint():
            saved = save_final(tf, managers) if managers else None
    except guards.NonFiniteState as e:
        saved, poisoned = None, e  # never saved: the newest checkpoint stays the last good one
    _remove_worker_scratch(tf, managers, spec.model_dir)
    rank = spec.strategy.rank
    if poisoned:
        what = f"step {step} was not saved: {poisoned}"
    elif saved and rank:
        saved = None  # its copy went to a scratch folder; worker 0 saved the real one
        what = f"worker {rank} stopped with worker 0, which saved step {step}"
    elif saved:
        what = f"saved {saved} at step {step}"
    else:
        what = f"step {step} was already saved" if managers else "no training step had run"
    return Outcome(STOPPED, step=step, checkpoint=saved, signal=signal, detail=what)


def _failed(tf, e: Exception, step: int | None, latest: str | None, phase: str, spec, config):
    """The Outcome of a failed run: TRAIN.disk_full, .oom, .nan, or the line with its code."""
    from train.contracts import DISK_FULL, FAILED, Outcome

    model_dir = spec.model_dir
    if guards.disk_full(e):
        for partial in tf.io.gfile.glob(os.path.join(model_dir, "*_temp")):  # a save cut short
            tf.io.gfile.rmtree(partial)
        disk = guards.disk_line(e, model_dir, latest)
        return Outcome(
            FAILED, step=step, checkpoint=latest, error=disk, phase=phase, code=DISK_FULL
        )
    oom = guards.memory_line(tf, e)
    if oom:
        return Outcome(FAILED, step=step, error=oom, phase=phase, code="TRAIN.oom")
    nan = guards.nan_line(e, step, latest)
    if nan:
        return Outcome(
            FAILED, step=step, checkpoint=latest, error=nan, phase=phase, code=guards.NAN_TAG
        )
    error, code = guards.failure_line(tf, e, config)
    return Outcome(FAILED, step=step, error=error, phase=phase, code=code)


def _train(spec, phase: harness.Phase):
    """Runs train_loop as the TrainSpec says; the Outcome of its end, whatever it was."""
    import tensorflow as tf
    from object_detection import model_lib_v2

    from train.contracts import OK, Outcome
    from train.options import RunOptions
    from train.pipeline import configfile, fields
    from train.tf import memory, offline_build

    options = spec.options or RunOptions(spec.pipeline_config, spec.model_dir)  # the defaults
    config = configfile.load(spec.pipeline_config).proto
    classes_path = fields.num_classes_path(config)
    num_classes = fields.get(config, classes_path) if classes_path else None
    managers: list = []
    multi_worker = spec.strategy.kind == "multi_worker"
    guard = SignalGuard(agreed=multi_worker)
    guard.install()

    def step() -> int | None:
        return int(managers[-1].checkpoint.step.numpy()) if managers else None

    if options.seed is not None:  # before anything random is built: the OD API seeds nothing
        seed_everything(tf, options.seed)
    try:
        strategy = make_strategy(tf, spec.strategy)
        agree = (
            functools.partial(guard.at_iteration_end, _signalled_anywhere(tf, strategy))
            if multi_worker
            else None
        )

        def iteration_end() -> None:
            phase.iteration_done()
            if agree:
                agree()

        with (
            _recording_checkpoint_managers(tf, managers, guard, spec.model_dir),
            _measured_fine_tune_restore(model_lib_v2, spec.restore_report, num_classes, phase),
            tracking_phases(model_lib_v2, phase),
            applying_freeze(model_lib_v2, config, options.freeze, spec.freeze_report),
            guards.nan_guard(tf, model_lib_v2, spec.nan_guard),
            _iteration_end_hook(model_lib_v2, iteration_end),
            thinned_input_images(model_lib_v2, spec.input_images_every),
            offline_build.no_downloads(bool(config.train_config.fine_tune_checkpoint)),
            strategy.scope(),
        ):
            model_lib_v2.train_loop(
                pipeline_config_path=spec.pipeline_config,
                model_dir=spec.model_dir,
                train_steps=spec.num_train_steps,
                use_tpu=False,
                checkpoint_every_n=spec.checkpoint_every_n,
                checkpoint_max_to_keep=spec.checkpoint_max_to_keep,
                record_summaries=True,
                num_steps_per_iteration=spec.num_steps_per_iteration,
            )
            saved = save_final(tf, managers)
        _remove_worker_scratch(tf, managers, spec.model_dir)
        latest = managers[-1].latest_checkpoint if managers else None
        detail = f"saved final checkpoint {saved}" if saved else f"final step in {latest}"
        outcome = Outcome(OK, step=step(), checkpoint=latest, detail=detail)
    except Stopped as stop:  # the guard is stopping: further signals are ignored
        outcome = _stopped(tf, spec, managers, guard, str(stop), step())
    except Exception as e:  # noqa: BLE001 - one line for the driver; the traceback in the log
        traceback.print_exc()
        latest = managers[-1].latest_checkpoint if managers else None
        outcome = _failed(tf, e, step(), latest, phase.name, spec, config)
    return dataclasses.replace(outcome, memory=memory.measured(tf, spec.gpu_limits))


def main(argv: list[str]) -> int:
    """Runs the training described by the TrainSpec at argv[1]; writes its Outcome."""
    from train.contracts import TrainSpec

    return harness.main(argv, TrainSpec, _train)


if __name__ == "__main__":
    harness.run_module(main)
