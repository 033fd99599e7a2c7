"""The evaluation beside training: the OD API's `eval_continuously`, ended with the training.

Run as `python -m train.tf.evaluator model_dir/eval_spec.json` (a contracts.EvalSpec) by the
runner (on CPU unless --eval_on_gpu); it ends by writing a contracts.Outcome.
`eval_continuously` evaluates each new checkpoint in model_dir and writes summaries under
model_dir/eval; left alone it stops only after an hour without a new checkpoint. Here its wait
for a checkpoint gives up as soon as the runner has marked the training finished (the
`training_done` file), after the last checkpoint has been evaluated.

Each evaluated checkpoint is hard-linked aside as soon as it is yielded (the trainer's
`checkpoint_max_to_keep` may delete it during the evaluation); when its `best_metric` beats
model_dir/best's by more than `min_delta`, it replaces model_dir/best (which the trainer
never prunes), else the links are dropped. After `patience` evaluations without an
improvement the evaluator writes an EarlyStop for the runner. The held links are what is
evaluated, so a checkpoint pruned mid-evaluation no longer fails the evaluation.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil

from train.tf import harness


class _Keeper:
    """Keeps the best checkpoint and counts evaluations without improvement."""

    def __init__(self, spec):
        from train import results

        self.spec = spec
        self.best_dir = results.best_dir(spec.model_dir)
        self.candidate = os.path.join(self.best_dir, ".candidate")
        recorded = results.read_best(spec.model_dir) or {}
        self.best_value = (
            recorded.get("value") if recorded.get("metric") == spec.best_metric else None
        )
        self.best_step = recorded.get("step")
        self.stale = 0  # evaluations since the last improvement
        self.prefix: str | None = None

    def hold(self, prefix: str) -> str | None:
        """Hard-links the checkpoint about to be evaluated (copies where links fail).

        Returns the held copy's prefix, which is what gets evaluated: the trainer may delete
        the original meanwhile (`checkpoint_max_to_keep`), which fails a plain
        eval_continuously with "Failed to find any matching files". None when it was deleted
        before it could be held (a newer one is on its way).
        """
        shutil.rmtree(self.candidate, ignore_errors=True)
        os.makedirs(self.candidate)
        try:
            for path in glob.glob(glob.escape(prefix) + ".*"):
                target = os.path.join(self.candidate, os.path.basename(path))
                try:
                    os.link(path, target)
                except OSError:
                    shutil.copy2(path, target)
        except FileNotFoundError:
            return None
        held = os.path.join(self.candidate, os.path.basename(prefix))
        if not os.path.exists(held + ".index"):
            return None
        self.prefix = held
        return held

    def evaluated(self, metrics: dict, step: int) -> None:
        from train import files, results
        from train.contracts import EarlyStop

        metric = self.spec.best_metric
        if metric not in metrics or self.prefix is None:
            print(f"[tfod-finetune] best: no {metric} in the metrics {sorted(metrics)}")
            return
        value = float(metrics[metric])
        if results.improved(metric, value, self.best_value, self.spec.min_delta):
            self._promote(metric, value, step)
            self.stale = 0
        else:
            self.stale += 1
            shutil.rmtree(self.candidate, ignore_errors=True)
        print(
            f"[tfod-finetune] step {step}: {metric} {value:.6g} (best {self.best_value:.6g} "
            f"at step {self.best_step}; {self.stale} without improvement)",
            flush=True,
        )
        if (
            self.spec.patience
            and self.stale == self.spec.patience  # once: later evaluations only finish up
            and self.spec.early_stop
        ):
            stop = EarlyStop(step, metric, self.best_value, self.best_step, self.stale)
            files.write_atomic(self.spec.early_stop, stop.to_json())

    def _promote(self, metric: str, value: float, step: int) -> None:
        from train import files, results

        name = os.path.basename(self.prefix)
        for old in os.listdir(self.best_dir):
            path = os.path.join(self.best_dir, old)
            if old != ".candidate" and os.path.isfile(path):
                os.remove(path)
        for kept in os.listdir(self.candidate):
            os.replace(os.path.join(self.candidate, kept), os.path.join(self.best_dir, kept))
        os.rmdir(self.candidate)
        files.write_atomic(
            os.path.join(self.best_dir, "checkpoint"),
            f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n',
        )
        record = {
            "checkpoint": os.path.join(self.best_dir, name),
            "step": step,
            "metric": metric,
            "value": value,
        }
        files.write_atomic(os.path.join(self.best_dir, results.BEST_RECORD), json.dumps(record))
        self.best_value, self.best_step = value, step


@contextlib.contextmanager
def _ends_with_training(train_module, done_marker: str, poll_s: float, keeper=None):
    """Makes checkpoints_iterator stop once `done_marker` exists (and no new one).

    `train_module` is the `tf.train` eval_continuously calls: model_lib_v2 imports
    `tensorflow.compat.v1`, whose `train` module is not TF2's `tf.train` (patching that one
    changes nothing). Each checkpoint it yields is held by `keeper` first.
    """
    original = train_module.checkpoints_iterator

    def iterator(checkpoint_dir, min_interval_secs=0, timeout=None, timeout_fn=None):
        del timeout, timeout_fn  # replaced: wait in short slices until training is done
        for prefix in original(
            checkpoint_dir,
            min_interval_secs=min_interval_secs,
            timeout=poll_s,
            timeout_fn=lambda: os.path.exists(done_marker),
        ):
            if keeper is not None:
                prefix = keeper.hold(prefix)
                if prefix is None:
                    continue
            yield prefix

    train_module.checkpoints_iterator = iterator
    try:
        yield
    finally:
        train_module.checkpoints_iterator = original


def _evaluate(spec, phase):
    """eval_continuously on model_dir until the training is done; every result to the keeper."""
    from object_detection import model_lib_v2

    from train.contracts import OK, Outcome

    del phase  # always "eval"
    keeper = _Keeper(spec)
    original_loop = model_lib_v2.eager_eval_loop

    def loop(*args, **kwargs):
        metrics = original_loop(*args, **kwargs)
        keeper.evaluated(
            {k: float(v) for k, v in metrics.items()}, int(kwargs["global_step"].numpy())
        )
        return metrics

    model_lib_v2.eager_eval_loop = loop
    with _ends_with_training(model_lib_v2.tf.train, spec.training_done, spec.poll_s, keeper):
        model_lib_v2.eval_continuously(
            pipeline_config_path=spec.pipeline_config,
            train_steps=spec.num_train_steps,
            model_dir=spec.model_dir,
            checkpoint_dir=spec.model_dir,
            wait_interval=spec.poll_s,
        )
    return Outcome(OK, detail="evaluation finished")


def main(argv: list[str]) -> int:
    """Evaluates model_dir's checkpoints until the training is done; writes its Outcome."""
    from train.contracts import EvalSpec

    return harness.main(argv, EvalSpec, _evaluate, first_phase="eval")


if __name__ == "__main__":
    harness.run_module(main)
