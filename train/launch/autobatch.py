"""--batch_size auto: which batch sizes to measure, and which one to train with (TF-free).

Each point is the training child (train/tf/child.py) run for a few steps at one global
batch size, in its own process (plan.probe_spec), which reports the peak of every memory
pool it used (train/tf/memory.py): "host" (resident memory) and, on GPUs, "GPU:i" (bytes
TensorFlow allocated). Each pool has a budget: the --memory_fraction of what it holds (the
host's RAM or cgroup limit, the GPU allocator's limit).

The search, as Ultralytics' autobatch does, fits peak = a + b x batch per pool through the
measured points and takes the largest batch within every budget, rounded down to a multiple
of the replicas; unlike it, that batch is then measured too (the fit is a straight line
through two small batches), and the answer is always a batch that did run within the
budgets. Order: the replicas' count r, then 2r, then the fit's batch, re-fitted after each
point, at most MAX_POINTS processes.
"""

from __future__ import annotations

import dataclasses
import os

PROBE_STEPS = 2  # training steps per point: the second runs with the optimizer's slots built
MAX_POINTS = 5
MAX_PER_REPLICA = 256  # the largest batch per replica it picks (a bigger one: --batch_size N)
WORTH_ANOTHER_POINT = 1.1  # measure a refitted batch only when 10 % above the best so far


@dataclasses.dataclass(frozen=True)
class Point:
    """One measured batch: peak bytes per pool, or why it did not run (out of memory)."""

    batch: int
    peaks: dict
    failed: str = ""


def budgets(fraction: float, host_capacity: int | None, gpu_limits: dict) -> dict[str, int]:
    """{pool: bytes a batch may use}: the fraction of the host's memory and of each GPU's."""
    found = {name: int(fraction * limit) for name, limit in sorted(gpu_limits.items())}
    if host_capacity:
        found["host"] = int(fraction * host_capacity)
    return found


def fits(point: Point, limits: dict[str, int]) -> bool:
    """True when the point ran and stayed within every budget."""
    return not point.failed and all(
        point.peaks.get(pool, 0) <= budget for pool, budget in limits.items()
    )


def _line(points: list[Point], pool: str) -> tuple[float, float] | None:
    """(intercept, slope) of the least-squares line peak = a + b x batch, from points that ran."""
    xy = [(p.batch, p.peaks[pool]) for p in points if not p.failed and pool in p.peaks]
    if len({x for x, _ in xy}) < 2:
        return None
    n = len(xy)
    mean_x = sum(x for x, _ in xy) / n
    mean_y = sum(y for _, y in xy) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in xy) / sum((x - mean_x) ** 2 for x, _ in xy)
    return mean_y - slope * mean_x, slope


def predicted(points: list[Point], limits: dict[str, int], replicas: int) -> int | None:
    """The largest multiple of `replicas` the fit puts within every budget (None: no fit yet).

    Never at or above a batch that was measured over a budget or ran out of memory, never
    above MAX_PER_REPLICA per replica; 0 when not even `replicas` is predicted to fit.
    """
    bound = MAX_PER_REPLICA * replicas
    for pool, budget in limits.items():
        line = _line(points, pool)
        if line is None:
            return None
        intercept, slope = line
        if slope > 0:
            bound = min(bound, int((budget - intercept) // slope))
    over = [p.batch for p in points if not fits(p, limits)]
    if over:
        bound = min(bound, min(over) - 1)
    return max(0, bound) // replicas * replicas


def choose(points: list[Point], limits: dict[str, int]) -> int | None:
    """The batch to train with: the largest measured within budget below any that was not."""
    over = [p.batch for p in points if not fits(p, limits)]
    ceiling = min(over) if over else None
    good = [p.batch for p in points if fits(p, limits) and (ceiling is None or p.batch < ceiling)]
    return max(good) if good else None


def next_batch(points: list[Point], limits: dict[str, int], replicas: int) -> int | None:
    """The next batch to measure, or None when the search is done."""
    if not points:
        return replicas
    best = choose(points, limits)
    if best is None or len(points) >= MAX_POINTS:
        return None
    measured = {p.batch for p in points}
    if len(measured) == 1:
        return 2 * replicas
    candidate = predicted(points, limits, replicas)
    if not candidate or candidate in measured or candidate < best * WORTH_ANOTHER_POINT:
        return None
    return candidate


def gigabytes(value: int) -> str:  # noqa: D103
    return f"{value / 1e9:.2f} GB"


def describe_budgets(limits: dict[str, int]) -> str:
    """'GPU:0 8.50 GB, host 2.20 GB': each pool's budget."""
    return ", ".join(f"{pool} {gigabytes(value)}" for pool, value in sorted(limits.items()))


def describe_point(point: Point, limits: dict[str, int]) -> str:
    """'batch 4: peak host 1.97 GB' (with each GPU), or why it did not run."""
    if point.failed:
        return f"batch {point.batch}: {point.failed}"
    pools = ", ".join(f"{pool} {gigabytes(value)}" for pool, value in sorted(point.peaks.items()))
    over = sorted(pool for pool, budget in limits.items() if point.peaks.get(pool, 0) > budget)
    said = f" (over the {', '.join(over)} budget)" if over else ""
    return f"batch {point.batch}: peak {pools}{said}"


@dataclasses.dataclass(frozen=True)
class Search:
    """What the search measured and decided (the report's `batch_auto`)."""

    fraction: float
    capacity: dict  # {pool: bytes it holds}
    budgets: dict  # {pool: bytes a batch may use}
    points: tuple[Point, ...]
    batch: int | None
    log: str

    def to_report(self) -> dict:  # noqa: D102
        return {
            "batch": self.batch,
            "memory_fraction": self.fraction,
            "capacity": self.capacity,
            "budgets": self.budgets,
            "points": [dataclasses.asdict(p) for p in self.points],
            "log": self.log,
        }


def search(measure, replicas: int, fraction: float, host_capacity: int | None, log: str, emit):
    """Measures batches (`measure(batch) -> (Point, gpu_limits)`) until the choice is made.

    The GPU budgets are known once the first point has run (its process read the limits).
    """
    points: list[Point] = []
    gpu_limits: dict = {}
    limits = budgets(fraction, host_capacity, gpu_limits)
    batch = next_batch(points, limits, replicas)
    while batch is not None:
        point, found_limits = measure(batch)
        gpu_limits = gpu_limits or found_limits
        limits = budgets(fraction, host_capacity, gpu_limits)
        points.append(point)
        emit(f"batch_size auto: {describe_point(point, limits)}")
        batch = next_batch(points, limits, replicas)
    capacity = {name: limit for name, limit in gpu_limits.items()}
    if host_capacity:
        capacity["host"] = host_capacity
    return Search(fraction, capacity, limits, tuple(points), choose(points, limits), log)


def probe_config(resolved_config, batch: int, transplant: bool):
    """The config one point trains: the resolved one at `batch`.

    With --restore=transplant the resolved config restores the transplant, which is written
    after the measuring (it is part of training's preparation): the point then restores
    nothing, and measures a little less than training will (the restore's buffers, ~4 % on
    the demo; the budget's margin covers it).
    """
    import copy

    config = copy.deepcopy(resolved_config)
    config.train_config.batch_size = batch
    if transplant:
        config.train_config.fine_tune_checkpoint = ""
    return config


def probe_dir(model_dir: str) -> str:
    """Where the points' specs, reports and log go (kept by --fresh: it is the new run's)."""
    from train.launch import rundir

    return os.path.join(os.path.abspath(model_dir), rundir.PROBE)
