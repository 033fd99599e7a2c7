"""Variable names and shapes of stand-ins for the TF2 zoo configs, built once and cached.

    python -m tests.standin_signatures CACHE_DIR CONFIG...

Builds each model from its zoo config with 90 classes at a small input size (the variables do
not depend on it) as train/tf/standin.py does for the demo, and records the checkpoint keys and
shapes a checkpoint of it holds (train/tf/restore.object_variables, the checkpoint writer's
walk: tests/test_restore.py checks they agree) in CACHE_DIR/<config>-<sha>-tf<version>.json.
Nothing is perturbed or saved (a saved 1024 px zoo model is ~0.5 GB: a third of the time).
Run in a child process so dozens of model builds never accumulate in the test process.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys


def cache_path(cache_dir: str, config_path: str) -> str:
    """Cache file for a config on this TF version."""
    from importlib import metadata

    with open(config_path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    tf_version = metadata.version("tensorflow-cpu" if _has("tensorflow-cpu") else "tensorflow")
    return os.path.join(cache_dir, f"{os.path.basename(config_path)}-{digest}-tf{tf_version}.json")


def _has(dist: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def main(argv: list[str]) -> int:  # noqa: D103
    from train import compat

    compat.apply()
    import tensorflow as tf

    from train.pipeline import configfile
    from train.tf import offline_build, restore, standin

    cache_dir, configs = argv[1], argv[2:]
    os.makedirs(cache_dir, exist_ok=True)
    for config in configs:
        target = cache_path(cache_dir, config)
        if os.path.exists(target):
            continue
        proto = configfile.load(config).proto
        standin._set_image_size(proto, 256)  # noqa: SLF001 - the variables do not depend on it
        with offline_build.no_downloads(skip_imagenet=True):
            model = restore.build_model(proto, is_training=False, seed=0)
        keyed = restore.object_variables(tf.train.Checkpoint(model=model))
        names = sorted([key, variable.shape.as_list()] for key, variable in keyed.items())
        partial = f"{target}.{os.getpid()}.tmp"  # two test workers may build the same one
        with open(partial, "w") as f:
            json.dump(names, f)
        os.replace(partial, target)
        tf.keras.backend.clear_session()
        print(f"built {os.path.basename(config)}: {len(names)} variables", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
