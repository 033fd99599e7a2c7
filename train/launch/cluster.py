"""Which distribution strategy a run uses, and the TF_CONFIG of a multi-node Slurm run (pure).

No GPU: the default (CPU) strategy. One or more GPUs: `MirroredStrategy` over them, as
model_main_tf2 does. Several Slurm tasks (`srun` with more than one task): one worker per
task, `MultiWorkerMirroredStrategy`, with TF_CONFIG built from the step's environment the way
`tf.distribute.cluster_resolver.SlurmClusterResolver` reads it. The resolver itself is not
used: it overwrites CUDA_VISIBLE_DEVICES with a task index (the wrong GPU when Slurm hands out
`3,5`) and fails on machines without nvidia-smi (both seen on a real slurm-wlm).

Everything here is a function of its arguments (the environment is passed in), so the plans
for 1 GPU, N GPUs and M nodes are tested on their output.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping

CPU, MIRRORED, MULTI_WORKER = "cpu", "mirrored", "multi_worker"
PORTS_PER_NODE = 16  # tasks one node may run: each gets port_base + its local index


class ClusterError(ValueError):
    """The flags or the Slurm environment do not describe a runnable cluster."""


@dataclasses.dataclass(frozen=True)
class Topology:
    """The strategy of one process of the run.

    Attributes:
      kind: CPU, MIRRORED or MULTI_WORKER.
      gpus: logical indices of the visible GPUs this process trains on (empty on CPU).
      num_workers: processes training together (1 unless multi-worker).
      rank: this process's worker index; rank 0 is the chief (checkpoints, summaries).
      tf_config: the TF_CONFIG of a multi-worker run (None otherwise).
      source: where the cluster came from ("local", "slurm" or "TF_CONFIG").
    """

    kind: str
    gpus: tuple[int, ...] = ()
    num_workers: int = 1
    rank: int = 0
    tf_config: dict | None = None
    source: str = "local"

    @property
    def replicas(self) -> int:
        """Replicas in sync: one per GPU of every worker (each worker's GPUs are alike)."""
        return self.num_workers * max(1, len(self.gpus))

    @property
    def is_chief(self) -> bool:  # noqa: D102
        return self.rank == 0

    def work_dir(self, model_dir: str) -> str:
        """Where this process writes its own files (resolved config, logs, launch.json).

        The chief writes into model_dir; the other workers under model_dir/workers/rank-N,
        so that processes sharing model_dir never write the same file.
        """
        if self.is_chief:
            return model_dir
        return os.path.join(model_dir, "workers", f"rank-{self.rank}")

    def describe(self) -> str:
        """One line for the launch message."""
        devices = f"GPUs {','.join(map(str, self.gpus))}" if self.gpus else "CPU"
        if self.kind == MULTI_WORKER:
            return (
                f"MultiWorkerMirroredStrategy: worker {self.rank} of {self.num_workers} "
                f"({self.source}), {devices}, {self.replicas} replicas"
            )
        if self.kind == MIRRORED:
            return f"MirroredStrategy over {devices} ({self.replicas} replicas)"
        return "CPU (default strategy, 1 replica)"


def choose_gpus(flag: str, visible: int) -> tuple[int, ...]:
    """The `--gpus` flag ("all", "none", or indices like "0,2") against the visible GPUs."""
    value = (flag or "all").strip().lower()
    if value == "all":
        return tuple(range(visible))
    if value in ("none", "cpu", ""):
        return ()
    try:
        chosen = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise ClusterError(
            f"--gpus={flag}: expected 'all', 'none' or GPU indices like 0,1"
        ) from None
    missing = [i for i in chosen if not 0 <= i < visible]
    if missing:
        raise ClusterError(
            f"--gpus={flag}: GPU {missing[0]} is not visible ({visible} visible: "
            "nvidia-smi limited by CUDA_VISIBLE_DEVICES); pass --gpus=all or indices below "
            f"{visible}"
        )
    if len(set(chosen)) != len(chosen):
        raise ClusterError(f"--gpus={flag}: a GPU is listed twice")
    return chosen


def expand_hostlist(hostlist: str) -> list[str]:
    """Slurm's compressed host list ("vm", "gpu[01-03,07],cpu5") as host names, in order."""
    hosts: list[str] = []
    for item in re.findall(r"[^,\[]+(?:\[[^\]]*\][^,\[]*)*", hostlist):
        hosts.extend(_expand_brackets(item.strip()))
    return [h for h in hosts if h]


def _expand_brackets(item: str) -> list[str]:
    match = re.search(r"\[([^\]]*)\]", item)
    if not match:
        return [item]
    head, tail = item[: match.start()], item[match.end() :]
    names = []
    for part in match.group(1).split(","):
        low, _, high = part.partition("-")
        if high:
            width = len(low)
            names += [f"{n:0{width}d}" for n in range(int(low), int(high) + 1)]
        else:
            names.append(low)
    return [f"{head}{name}{rest}" for name in names for rest in _expand_brackets(tail)]


def expand_tasks_per_node(value: str) -> list[int]:
    """SLURM_STEP_TASKS_PER_NODE ("2(x3),1") as one count per node ([2, 2, 2, 1])."""
    counts: list[int] = []
    for part in value.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not match:
            raise ClusterError(f"SLURM_STEP_TASKS_PER_NODE={value}: cannot read {part!r}")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts


def port_base(environ: Mapping[str, str]) -> int:
    """First port of this job's workers: TF_PORT_BASE, else derived from the job id.

    Jobs that run at the same time (or one after another, before the OS frees the ports) get
    different ranges: 20000 + (job id mod 2000) * 16, which stays below 52000.
    """
    if environ.get("TF_PORT_BASE"):
        try:
            return int(environ["TF_PORT_BASE"])
        except ValueError:
            raise ClusterError(f"TF_PORT_BASE={environ['TF_PORT_BASE']} is not a port") from None
    job = int(environ.get("SLURM_JOB_ID", "0") or 0)
    return 20000 + (job % 2000) * PORTS_PER_NODE


def slurm_tf_config(environ: Mapping[str, str]) -> dict:
    """TF_CONFIG for this Slurm task: workers host:port in node order, block distribution.

    Slurm's default (block) distribution gives the first node's tasks ranks 0..k-1, so worker
    i is task i and its port is port_base + its index on that node.
    """
    rank = int(environ["SLURM_PROCID"])
    nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST", "")
    hosts = expand_hostlist(nodelist)
    per_node_text = environ.get("SLURM_STEP_TASKS_PER_NODE") or environ.get(
        "SLURM_TASKS_PER_NODE", ""
    )
    per_node = expand_tasks_per_node(per_node_text) if per_node_text else [1] * len(hosts)
    if not hosts or len(per_node) != len(hosts):
        raise ClusterError(
            f"Slurm node list {nodelist!r} and tasks per node {per_node_text!r} do not match; "
            "run the driver with srun inside the job"
        )
    base = port_base(environ)
    workers = []
    for host, count in zip(hosts, per_node, strict=True):
        if count > PORTS_PER_NODE:
            raise ClusterError(f"{count} tasks on {host}: at most {PORTS_PER_NODE} per node")
        workers += [f"{host}:{base + local}" for local in range(count)]
    total = int(environ.get("SLURM_STEP_NUM_TASKS") or len(workers))
    if total != len(workers) or not 0 <= rank < total:
        raise ClusterError(
            f"SLURM_PROCID={rank} with {total} tasks over {workers}: the step's environment "
            "is inconsistent"
        )
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": rank}}


def _slurm_tasks(environ: Mapping[str, str]) -> int:
    """Tasks of the current srun step (1 outside a step, e.g. in the batch script itself)."""
    if "SLURM_PROCID" not in environ:
        return 1
    return int(environ.get("SLURM_STEP_NUM_TASKS") or 1)


def choose_topology(gpus_flag: str, visible_gpus: int, environ: Mapping[str, str]) -> Topology:
    """The strategy for this process (pure: the environment is an argument)."""
    gpus = choose_gpus(gpus_flag, visible_gpus)
    if _slurm_tasks(environ) > 1:
        config = slurm_tf_config(environ)
        source = "slurm"
    elif environ.get("TF_CONFIG"):
        try:
            config = json.loads(environ["TF_CONFIG"])
            workers = config["cluster"]["worker"]
            valid = set(config["cluster"]) == {"worker"} and config["task"]["type"] == "worker"
            int(config["task"]["index"])
        except (ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            raise ClusterError(
                "TF_CONFIG is set but is not {'cluster': {'worker': [...]}, 'task': "
                "{'type': 'worker', 'index': N}} (the driver runs workers only); unset it, "
                "or fix it"
            )
        if len(workers) <= 1:
            config = None
        source = "TF_CONFIG"
    else:
        config = None
    if config is not None:
        return Topology(
            kind=MULTI_WORKER,
            gpus=gpus,
            num_workers=len(config["cluster"]["worker"]),
            rank=int(config["task"]["index"]),
            tf_config=config,
            source=source,
        )
    return Topology(kind=MIRRORED if gpus else CPU, gpus=gpus)
