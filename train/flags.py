"""Every command-line flag, and the one conversion from flags to RunOptions.

Flags keep the OD API's names where model_main_tf2 has one (`--model_dir`,
`--num_train_steps`, `--checkpoint_every_n`; `--pipeline_config_path` is an alias).
Nothing outside this module reads FLAGS.
"""

from __future__ import annotations

from absl import flags

from train.options import RunOptions

# Largest values the pipeline proto's fields hold (batch_size and num_steps are uint32,
# num_classes int32); a larger flag would crash when written into the config.
_UINT32 = 2**32 - 1
MAX_CLASSES = 10_000  # as the label-map check (pipeline.labelmap.MAX_ID) says why

PIPELINE_CONFIG = flags.DEFINE_string(
    "pipeline_config", None, "Pipeline config to fine-tune with (never modified)."
)
flags.DEFINE_alias("pipeline_config_path", "pipeline_config")
MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Where checkpoints, TensorBoard logs and the resolved config go."
)
CHECKPOINT = flags.DEFINE_string(
    "checkpoint",
    None,
    "Fine-tune checkpoint (overrides train_config.fine_tune_checkpoint); a "
    "prefix, .index file, checkpoint/ folder or extracted zoo folder.",
)
LABEL_MAP = flags.DEFINE_string(
    "label_map", None, "Label map for the train and eval readers (overrides label_map_path)."
)
TRAIN_INPUT_PATH = flags.DEFINE_multi_string(
    "train_input_path", [], "TFRecord path or glob for training (overrides input_path)."
)
EVAL_INPUT_PATH = flags.DEFINE_multi_string(
    "eval_input_path", [], "TFRecord path or glob for evaluation (overrides input_path)."
)
DATA = flags.DEFINE_string(
    "data",
    None,
    "A folder `python -m train.data convert` wrote, or annotations (VOC, COCO, YOLO, CSV) to "
    "convert into model_dir/data (reused while unchanged); sets the records and label map.",
)
SCAN_RECORDS = flags.DEFINE_enum(
    "scan_records",
    "sample",
    ["sample", "all"],
    "Preflight record check: the first 200 records per reader, or every record of every file.",
)
FREEZE = flags.DEFINE_string(
    "freeze",
    None,
    "Freeze model components: backbone, neck, backbone,neck, or none (train everything, "
    "ignoring the config's freeze_variables / update_trainable_variables). Default: the "
    "config's two fields, which the driver applies (the TF2 loop alone ignores them).",
)
NAN_RETRIES = flags.DEFINE_integer(
    "nan_retries",
    0,
    "On a non-finite loss (TRAIN.nan): continue from the last good checkpoint with the "
    "learning rate halved, at most this many times (0: stop, exit 4).",
    lower_bound=0,
)
SEED = flags.DEFINE_integer(
    "seed",
    None,
    "Seed the training's random operations (the input shuffle, augmentation, new layers' "
    "initial values), so a run repeats on the same machine and stack. Default: unseeded, as "
    "model_main_tf2.",
    lower_bound=0,
)
NUM_CLASSES = flags.DEFINE_integer(
    "num_classes",
    None,
    "Number of classes (default: the label map's highest id).",
    lower_bound=1,
    upper_bound=MAX_CLASSES,
)
NUM_TRAIN_STEPS = flags.DEFINE_integer(
    "num_train_steps",
    None,
    "Train exactly this many steps (default: train_config.num_steps).",
    lower_bound=1,
    upper_bound=_UINT32,
)


class BatchSizeParser(flags.IntegerParser):
    """A positive integer, or `auto`."""

    def __init__(self):
        super().__init__(lower_bound=1, upper_bound=_UINT32)
        self.syntactic_help += ", or auto"

    def parse(self, argument):  # noqa: D102
        if argument == AUTO:
            return AUTO
        try:
            return super().parse(argument)
        except ValueError:
            raise ValueError(f"{argument!r} is not {self.syntactic_help}") from None

    def flag_type(self) -> str:  # noqa: D102
        return "int or auto"


AUTO = "auto"
BATCH_SIZE = flags.DEFINE(
    BatchSizeParser(),
    "batch_size",
    None,
    "Global batch size (overrides train_config.batch_size), or auto: the largest that fits "
    "--memory_fraction of the memory, measured in a few short training runs before training "
    "(the learning rate stays as the config has it).",
    serializer=flags.ArgumentSerializer(),
)
MEMORY_FRACTION = flags.DEFINE_float(
    "memory_fraction",
    None,
    "With --batch_size auto: the share of each GPU's memory (and of the host's RAM or cgroup "
    "limit) a batch may use at its peak (default 0.85).",
    lower_bound=0.01,
    upper_bound=1.0,
)
CHECKPOINT_EVERY_N = flags.DEFINE_integer(
    "checkpoint_every_n",
    1000,
    "Save a checkpoint every N steps; the final step is always saved.",
    lower_bound=1,
)
CHECKPOINT_MAX_TO_KEEP = flags.DEFINE_integer(
    "checkpoint_max_to_keep", 7, "How many recent checkpoints to keep.", lower_bound=1
)
NUM_STEPS_PER_ITERATION = flags.DEFINE_integer(
    "num_steps_per_iteration",
    None,
    "Steps per tf.function call (default: the largest that "
    "divides the steps and the checkpoint cadence, at most 100).",
    lower_bound=1,
)
FIX = flags.DEFINE_enum(
    "fix",
    "auto",
    ["auto", "never"],
    "auto: apply safe fixes to the resolved config; never: report them as errors.",
)
PREFLIGHT_ONLY = flags.DEFINE_boolean(
    "preflight_only", False, "Run the checks, print the report and stop."
)
REHEARSE = flags.DEFINE_boolean(
    "rehearse",
    False,
    "After the preflight, rehearse on CPU without training: build the model for training, "
    "restore the fine-tune checkpoint (reporting what it filled per component), pull one batch "
    "through the training input pipeline and check its losses are finite. --dry_run is an alias.",
)
flags.DEFINE_alias("dry_run", "rehearse")
RESTORE = flags.DEFINE_enum(
    "restore",
    "type",
    ["type", "transplant"],
    "type: restore what fine_tune_checkpoint_type selects (the OD API's behaviour); "
    "transplant: also restore every checkpoint tensor whose path and shape match (heads, "
    "RPN, towers), fresh only where the class count differs.",
)
REPORT_JSON = flags.DEFINE_string("report_json", None, "Also write the report as JSON here.")
LOG_EVERY_S = flags.DEFINE_float(
    "log_every_s", 30.0, "Print a progress line at least this often (seconds).", lower_bound=0.0
)
RESUME = flags.DEFINE_boolean(
    "resume",
    True,
    "Resume when model_dir holds a compatible run (its weights replace the fine-tune "
    "checkpoint's); --noresume refuses to start on an existing run.",
)
FRESH = flags.DEFINE_boolean(
    "fresh",
    False,
    "Start over: move a run found in model_dir aside (renamed to DIR.moved-TIME, never "
    "deleted) and fine-tune from the checkpoint.",
)
GPUS = flags.DEFINE_string(
    "gpus",
    "all",
    "GPUs to train on: all (MirroredStrategy over every visible GPU), none (CPU), or "
    "visible indices like 0,1. Several srun tasks train as MultiWorkerMirroredStrategy.",
)
TENSORBOARD = flags.DEFINE_boolean(
    "tensorboard", False, "Serve TensorBoard for model_dir while training (rank 0)."
)
TENSORBOARD_PORT = flags.DEFINE_integer(
    "tensorboard_port", 0, "TensorBoard port (0: a free one).", lower_bound=0, upper_bound=65535
)
TENSORBOARD_BIND_ALL = flags.DEFINE_boolean(
    "tensorboard_bind_all", False, "Serve TensorBoard on every interface, not only localhost."
)
EVAL = flags.DEFINE_boolean(
    "eval",
    False,
    "Evaluate every new checkpoint beside training (the OD API's continuous evaluation, "
    "summaries under model_dir/eval); ends with the training.",
)
EVAL_ON_GPU = flags.DEFINE_boolean(
    "eval_on_gpu", False, "Let the evaluation use the GPU (default: CPU, keeping GPU memory free)."
)
BEST_METRIC = flags.DEFINE_string(
    "best_metric",
    "DetectionBoxes_Precision/mAP",
    "With --eval: keep the best checkpoint by this eval metric in model_dir/best (a loss "
    "metric: lower is better).",
)
PATIENCE = flags.DEFINE_integer(
    "patience",
    0,
    "With --eval: stop (saving the current step, exit 0) after this many evaluations without "
    "an improvement of at least --min_delta in --best_metric; 0: off.",
    lower_bound=0,
)
MIN_DELTA = flags.DEFINE_float(
    "min_delta", 0.0, "Smallest change of --best_metric that counts as better.", lower_bound=0.0
)
FINAL_EVAL = flags.DEFINE_boolean(
    "final_eval",
    True,
    "Evaluate the final checkpoint once after training (when there is eval data): mAP, AR and "
    "AP per class, in the report and model_dir/final/eval.",
)
EXPORT = flags.DEFINE_list(
    "export",
    [],
    "Export after training (the best checkpoint when there is one, else the final) to "
    "model_dir/export and verify it against the checkpoint: saved_model, tflite, onnx.",
)
INPUT_TYPE = flags.DEFINE_enum(
    "input_type",
    "image_tensor",
    ["image_tensor", "float_image_tensor", "encoded_image_string_tensor"],
    "The exported SavedModel's input.",
)
TFLITE_QUANTIZE = flags.DEFINE_enum(
    "tflite_quantize",
    "none",
    ["none", "float16", "int8"],
    "TFLite weights: float32 (none), float16, or int8 calibrated on training images.",
)
VERIFY_IMAGES = flags.DEFINE_integer(
    "verify_images",
    8,
    "Eval images each export is compared with the checkpoint on.",
    lower_bound=1,
)

REQUIRED = ("pipeline_config", "model_dir")

# An empty value (`--label_map=`) is refused for every flag by train/cli.py.


def _freeze_flag(value: str | None) -> str:
    from train.pipeline import freezing

    return freezing.parse_flag(value)


flags.register_validator(
    "freeze",
    lambda value: value is None or _valid_freeze(value),
    message="use none, or components from backbone, neck (e.g. --freeze backbone,neck)",
)


def _valid_freeze(value: str) -> bool:
    from train.pipeline import freezing

    try:
        freezing.parse_flag(value)
    except freezing.FreezeError:
        return False
    return True


def holders() -> list:
    """Every flag this module defines (the CLI's key flags, shown by --help)."""
    return [value for value in globals().values() if isinstance(value, flags.FlagHolder)]


def options_from_flags() -> RunOptions:
    """Freezes the parsed flags into RunOptions."""
    return RunOptions(
        pipeline_config=PIPELINE_CONFIG.value,
        model_dir=MODEL_DIR.value,
        checkpoint=CHECKPOINT.value,
        label_map=LABEL_MAP.value,
        train_input_path=tuple(TRAIN_INPUT_PATH.value),
        eval_input_path=tuple(EVAL_INPUT_PATH.value),
        data=DATA.value,
        scan_records=SCAN_RECORDS.value,
        freeze=_freeze_flag(FREEZE.value),
        nan_retries=NAN_RETRIES.value,
        seed=SEED.value,
        num_classes=NUM_CLASSES.value,
        num_train_steps=NUM_TRAIN_STEPS.value,
        batch_size=None if BATCH_SIZE.value == AUTO else BATCH_SIZE.value,
        batch_size_auto=BATCH_SIZE.value == AUTO,
        memory_fraction=MEMORY_FRACTION.value,
        checkpoint_every_n=CHECKPOINT_EVERY_N.value,
        checkpoint_max_to_keep=CHECKPOINT_MAX_TO_KEEP.value,
        num_steps_per_iteration=NUM_STEPS_PER_ITERATION.value,
        fix=FIX.value,
        preflight_only=PREFLIGHT_ONLY.value,
        rehearse=REHEARSE.value,
        restore=RESTORE.value,
        report_json=REPORT_JSON.value,
        log_every_s=LOG_EVERY_S.value,
        resume=RESUME.value,
        fresh=FRESH.value,
        gpus=GPUS.value,
        tensorboard=TENSORBOARD.value,
        tensorboard_port=TENSORBOARD_PORT.value,
        tensorboard_bind_all=TENSORBOARD_BIND_ALL.value,
        eval=EVAL.value,
        eval_on_gpu=EVAL_ON_GPU.value,
        best_metric=BEST_METRIC.value,
        patience=PATIENCE.value,
        min_delta=MIN_DELTA.value,
        final_eval=FINAL_EVAL.value,
        export=tuple(EXPORT.value),
        input_type=INPUT_TYPE.value,
        tflite_quantize=TFLITE_QUANTIZE.value,
        verify_images=VERIFY_IMAGES.value,
    )
