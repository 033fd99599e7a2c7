"""The frozen options object: flags are read once, in train/flags.py, and turned into this."""

from __future__ import annotations

import dataclasses

from train.contracts import Contract


@dataclasses.dataclass(frozen=True)
class RunOptions(Contract):
    """Everything one driver invocation was asked to do.

    `None` means "not given on the command line": the pipeline config's value stands. It is a
    contract: the training child gets it whole in its TrainSpec (`options`), so a flag that
    changes how the child trains touches train/flags.py, this class and the child only.
    """

    pipeline_config: str
    model_dir: str
    checkpoint: str | None = None
    label_map: str | None = None
    train_input_path: tuple[str, ...] = ()
    eval_input_path: tuple[str, ...] = ()
    data: str | None = None  # --data: sets the three above (train.data.use)
    scan_records: str = "sample"  # "all": the preflight reads every record
    freeze: str = ""  # --freeze, canonical: "" (the config's fields), "none", "backbone,neck"
    nan_retries: int = 0  # TRAIN.nan: resume from the last good checkpoint, rate halved
    seed: int | None = None  # TensorFlow's global seed in the training child (None: unseeded)
    num_classes: int | None = None
    num_train_steps: int | None = None
    batch_size: int | None = None
    batch_size_auto: bool = False  # --batch_size auto: measured before training (autobatch)
    memory_fraction: float | None = None  # --batch_size auto's budget (None: the default)
    checkpoint_every_n: int = 1000
    checkpoint_max_to_keep: int = 7
    num_steps_per_iteration: int | None = None
    fix: str = "auto"  # "auto": apply safe fixes; "never": report them as errors
    preflight_only: bool = False
    rehearse: bool = False  # on CPU: build, restore, one batch, losses; do not train
    restore: str = "type"  # "type": as fine_tune_checkpoint_type says; "transplant"
    report_json: str | None = None
    log_every_s: float = 30.0
    resume: bool = True  # resume a compatible run found in model_dir; False: refuse it
    fresh: bool = False  # move a run found in model_dir aside and start over
    gpus: str = "all"  # "all", "none", or visible GPU indices "0,2"
    tensorboard: bool = False
    tensorboard_port: int = 0  # 0: a free port
    tensorboard_bind_all: bool = False
    eval: bool = False  # continuous evaluation beside training
    eval_on_gpu: bool = False
    best_metric: str = "DetectionBoxes_Precision/mAP"  # --eval keeps model_dir/best by it
    patience: int = 0  # --eval: stop after this many evaluations without improvement (0: off)
    min_delta: float = 0.0
    final_eval: bool = True  # evaluate the final checkpoint once, when there is eval data
    export: tuple[str, ...] = ()  # "saved_model", "tflite", "onnx" (exportformats.NAMES)
    input_type: str = "image_tensor"
    tflite_quantize: str = "none"
    verify_images: int = 8
