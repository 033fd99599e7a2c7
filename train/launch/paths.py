"""Where every file of a run lives: decided here, asked for by every writer and reader.

A process's own files are under its work_dir (model_dir; model_dir/workers/rank-N for the
other workers of a multi-node run, train.launch.cluster). The rule:

- at the top: the specs the driver writes for its children (`train_spec.json`,
  `eval_spec.json`, `prepare_spec.json`, `finish_spec.json`) and the reports a user reads
  beside them (`restore.json`, `freeze.json`, `prepare.json`, `finish.json`, `launch.json`);
- under `logs/`: each child's log and the Outcome it ends with (`train.log`,
  `train.outcome.json`, ...), and the markers passed between running processes
  (`training.done`, `early_stop.json`).

Pure: nothing here touches the file system.
"""

from __future__ import annotations

import dataclasses
import os

# The children of a run, by the name their files carry.
TRAIN = "train"  # train/tf/child.py (a --batch_size auto point too, in its own work_dir)
EVAL = "eval"  # train/tf/evaluator.py, beside the training
PREPARE = "prepare"  # train/tf/prepare.py: rehearsal, restore dry run, transplant
FINISH = "finish"  # train/tf/finish.py: final evaluation, exports, verification


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """The files of one process's run under `work_dir` (see the module docstring)."""

    work_dir: str

    @property
    def logs(self) -> str:  # noqa: D102
        return os.path.join(self.work_dir, "logs")

    def spec(self, child: str) -> str:
        """The spec the driver writes for `child` (its command line's one argument)."""
        return os.path.join(self.work_dir, f"{child}_spec.json")

    def report(self, name: str) -> str:
        """A report a user reads: restore, freeze, prepare, finish, launch."""
        return os.path.join(self.work_dir, f"{name}.json")

    def outcome(self, child: str) -> str:
        """The Outcome `child` writes when it ends."""
        return os.path.join(self.logs, f"{child}.outcome.json")

    def log(self, name: str) -> str:
        """The log of a child (or of the TensorBoard server: "tensorboard")."""
        return os.path.join(self.logs, f"{name}.log")

    @property
    def training_done(self) -> str:
        """Created by the driver when training is over: the evaluator's last round."""
        return os.path.join(self.logs, "training.done")

    @property
    def early_stop(self) -> str:
        """Written by the evaluator when the metric stopped improving (an EarlyStop)."""
        return os.path.join(self.logs, "early_stop.json")
