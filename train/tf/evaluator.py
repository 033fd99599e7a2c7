"""The evaluation beside training: the OD API's `eval_continuously`, ended with the training.

Run as `python -m train.tf.evaluator model_dir/eval_spec.json` (a contracts.EvalSpec) by the
runner (on CPU unless --eval_on_gpu); it ends by writing a contracts.Outcome.
`eval_continuously` evaluates each new checkpoint in model_dir and writes summaries under
model_dir/eval; left alone it stops only after an hour without a new checkpoint. Here its wait
for a checkpoint gives up as soon as the runner has marked the training finished (the
`training_done` file), after the last checkpoint has been evaluated.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback


@contextlib.contextmanager
def _ends_with_training(tf, done_marker: str, poll_s: float):
    """Makes tf.train.checkpoints_iterator stop once `done_marker` exists (and no new one)."""
    original = tf.train.checkpoints_iterator

    def iterator(checkpoint_dir, min_interval_secs=0, timeout=None, timeout_fn=None):
        del timeout, timeout_fn  # replaced: wait in short slices until training is done
        return original(
            checkpoint_dir,
            min_interval_secs=min_interval_secs,
            timeout=poll_s,
            timeout_fn=lambda: os.path.exists(done_marker),
        )

    tf.train.checkpoints_iterator = iterator
    try:
        yield
    finally:
        tf.train.checkpoints_iterator = original


def main(argv: list[str]) -> int:
    """Evaluates model_dir's checkpoints until the training is done; writes its Outcome."""
    from train import compat, errors
    from train.contracts import FAILED, OK, EvalSpec, Outcome

    with open(argv[1], encoding="utf-8") as f:
        spec = EvalSpec.from_json(f.read())
    compat.apply()
    import tensorflow as tf
    from object_detection import model_lib_v2

    try:
        with _ends_with_training(tf, spec.training_done, spec.poll_s):
            model_lib_v2.eval_continuously(
                pipeline_config_path=spec.pipeline_config,
                train_steps=spec.num_train_steps,
                model_dir=spec.model_dir,
                checkpoint_dir=spec.model_dir,
                wait_interval=spec.poll_s,
            )
        outcome = Outcome(OK, detail="evaluation finished")
    except Exception as e:  # noqa: BLE001 - one line for the driver, the traceback in the log
        traceback.print_exc()
        outcome = Outcome(FAILED, error=errors.one_line(e))
    print(f"[tfod-finetune] evaluation {outcome.status}: {outcome.error or outcome.detail}")
    outcome.write(spec.outcome)
    return 0 if outcome.status == OK else errors.EXIT_TRAINING


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    sys.exit(main(sys.argv))
