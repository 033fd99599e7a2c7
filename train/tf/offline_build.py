"""Model builds that never reach the internet (see train/offline.py).

`no_downloads(skip_imagenet)` is entered around every model build in the children: with a
fine-tune checkpoint (`skip_imagenet`) the CenterNet MobileNetV2 backbones are built without
their ImageNet weights (the restore replaces them); any download Keras would still attempt
raises `DownloadRefused` naming the file and the cache folder, instead of hanging on or
failing with "URL fetch failure" on an offline node.
"""

from __future__ import annotations

import contextlib
import os


class DownloadRefused(RuntimeError):
    """A model build wanted to download a file that is not in Keras's cache."""


def _keras_data_utils() -> list:
    """The data_utils modules whose get_file Keras 2's applications call (keras or tf-keras)."""
    import importlib

    found = []
    for name in ("tf_keras.src.utils.data_utils", "keras.src.utils.data_utils"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "get_file"):
            found.append(module)
    return found


@contextlib.contextmanager
def no_downloads(skip_imagenet: bool):
    """See the module docstring."""
    from object_detection.models.keras_models import mobilenet_v2

    from train import offline

    modules = _keras_data_utils()
    originals = [module.get_file for module in modules]
    original_mobilenet = mobilenet_v2.mobilenet_v2

    def refusing(original_get_file):
        def get_file(fname=None, origin=None, *args, **kwargs):
            cache = kwargs.get("cache_dir") or os.path.dirname(offline.keras_cache_dir())
            folder = os.path.join(cache, kwargs.get("cache_subdir", "models"))
            if fname and os.path.isfile(os.path.join(folder, fname)):
                return original_get_file(fname, origin, *args, **kwargs)
            raise _refused(fname, origin, folder)

        return get_file

    def mobilenet_without_imagenet(*args, **kwargs):
        kwargs["weights"] = None
        return original_mobilenet(*args, **kwargs)

    for module, original in zip(modules, originals, strict=True):
        module.get_file = refusing(original)
    if skip_imagenet:
        mobilenet_v2.mobilenet_v2 = mobilenet_without_imagenet
    try:
        yield
    finally:
        for module, original in zip(modules, originals, strict=True):
            module.get_file = original
        mobilenet_v2.mobilenet_v2 = original_mobilenet


def _refused(fname, origin, folder) -> DownloadRefused:
    return DownloadRefused(
        f"the model build would download {fname}, which is not in Keras's cache {folder}; runs "
        f"never reach the internet: copy it there, or pass a fine-tune checkpoint (the build "
        f"would fetch it from {origin})"
    )
