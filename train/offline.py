"""Pretrained ImageNet weights some OD API extractors fetch from the internet, and their cache.

The OD API's CenterNet MobileNetV2 extractors (`mobilenet_v2`, `mobilenet_v2_fpn`,
`mobilenet_v2_fpn_sep_conv`, at depth_multiplier 1.0) build their backbone with
`tf.keras.applications.MobileNetV2(weights="imagenet")`, which downloads an .h5 file unless
Keras's cache has it. Most clusters are offline, and with a fine-tune checkpoint those weights
are overwritten anyway. TF-free: the preflight uses it; train/tf/offline_build.py acts on it.
"""

from __future__ import annotations

import os

IMAGENET_EXTRACTORS = frozenset({"mobilenet_v2", "mobilenet_v2_fpn", "mobilenet_v2_fpn_sep_conv"})
MOBILENET_V2_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


def keras_cache_dir() -> str:
    """The folder Keras 2's `get_file` caches model weights in: ~/.keras/models.

    As Keras does: when ~/.keras is not a writable folder (or does not exist yet), /tmp/.keras.
    """
    base = os.path.join(os.path.expanduser("~"), ".keras")
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp", ".keras")
    return os.path.join(base, "models")


def imagenet_download(config) -> str | None:
    """The weights file building this model downloads (None when it downloads nothing)."""
    from train.pipeline import fields

    if fields.meta_arch(config) != "center_net":
        return None
    extractor = config.model.center_net.feature_extractor
    if extractor.type in IMAGENET_EXTRACTORS and extractor.depth_multiplier == 1.0:
        return MOBILENET_V2_FILE
    return None
