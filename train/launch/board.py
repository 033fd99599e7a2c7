"""TensorBoard for a run: the server (`--tensorboard`) and the run's own text/HParams summaries.

The driver never imports TensorFlow: the summaries are TensorBoard's protos written with
TensorBoard's own event file writer, into model_dir/train beside the OD API's scalars, so the
HParams dashboard pairs the hyperparameters with the training losses of the same run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from train.launch import deaths

SUMMARY_SUFFIX = ".tfod-finetune"
START_TIMEOUT_S = 60


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def server_argv(logdir: str, port: int, bind_all: bool, python: str = sys.executable) -> list:
    """The TensorBoard command line (pure)."""
    where = ["--bind_all"] if bind_all else ["--host", "127.0.0.1"]
    return [python, "-m", "tensorboard.main", "--logdir", logdir, "--port", str(port), *where]


def url(port: int, bind_all: bool) -> str:
    """The address to print: localhost, or this host's name when serving on every interface."""
    return f"http://{socket.getfqdn() if bind_all else 'localhost'}:{port}/"


class ServerError(RuntimeError):
    """TensorBoard did not start (its log says why)."""


@contextlib.contextmanager
def serve(logdir: str, port: int, bind_all: bool, log_path: str):
    """Runs TensorBoard on `logdir` for the duration of the block; yields its URL.

    Waits until the server answers, so the printed URL works when it is printed; stops it
    (SIGTERM, then SIGKILL) when the block ends, whatever the outcome of the run.
    """
    port = port or free_port()
    with open(log_path, "ab") as log:
        server = subprocess.Popen(
            server_argv(logdir, port, bind_all),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=deaths.dying_with_parent(),  # noqa: PLW1509 - prctl only, no locks
        )
    try:
        _wait_until_up(server, port, log_path)
        yield url(port, bind_all)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_up(server, port: int, log_path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise ServerError(f"TensorBoard exited with status {server.returncode} ({log_path})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/logdir", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise ServerError(f"TensorBoard did not answer on port {port} in {START_TIMEOUT_S} s")


def hparams_of(config, plan) -> dict:
    """The hyperparameters shown in the HParams dashboard (from the resolved config + plan)."""
    from train.pipeline import fields

    train = config.train_config
    path = fields.num_classes_path(config)
    optimizer = train.optimizer.WhichOneof("optimizer") or ""
    rate = getattr(train.optimizer, optimizer).learning_rate if optimizer else None
    schedule = rate.WhichOneof("learning_rate") if rate is not None else None
    chosen = getattr(rate, schedule) if schedule else None
    base = next(
        (
            getattr(chosen, name)
            for name in ("learning_rate_base", "initial_learning_rate", "learning_rate")
            if chosen is not None and hasattr(chosen, name)
        ),
        None,
    )
    values = {
        "meta_arch": fields.meta_arch(config) or "",
        "feature_extractor": fields.feature_extractor_type(config) or "",
        "num_classes": fields.get(config, path) if path else 0,
        "batch_size": train.batch_size,
        "num_train_steps": plan.num_train_steps,
        "optimizer": optimizer,
        "learning_rate_schedule": schedule or "",
        "learning_rate_base": float(base) if base is not None else 0.0,
        "fine_tune_checkpoint_type": train.fine_tune_checkpoint_type or "",
        "strategy": plan.strategy.kind,
        "replicas": plan.strategy.replicas,
    }
    return values


def write_run_summaries(directory: str, texts: dict[str, str], hparams: dict | None, step: int):
    """Writes text summaries (rendered as Markdown code blocks) and an HParams session start.

    The event file is framed here (train.records) rather than by TensorBoard's EventFileWriter,
    which imports all of TensorFlow when it is installed (2 s before training could start).
    """
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams import summary_v2 as hp
    from tensorboard.plugins.text import summary_v2 as text

    from train import records

    now = time.time()
    events = [event_pb2.Event(wall_time=now, file_version="brain.Event:2")]
    for tag, body in texts.items():
        summary = text.text_pb(tag, "```\n" + body.replace("```", "'''") + "\n```")
        events.append(event_pb2.Event(wall_time=now, step=step, summary=summary))
    if hparams:
        summary = hp.hparams_pb(hparams, start_time_secs=int(now))
        events.append(event_pb2.Event(wall_time=now, step=step, summary=summary))
    os.makedirs(directory, exist_ok=True)
    name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}{SUMMARY_SUFFIX}"
    with open(os.path.join(directory, name), "ab") as f:
        f.write(b"".join(records.frame(e.SerializeToString()) for e in events))
