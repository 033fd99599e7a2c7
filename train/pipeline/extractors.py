"""Feature extractor names the installed OD API (2.8) accepts in TF2, and the TF1-only ones.

Kept as data so the preflight can judge a config without importing the OD API's model builder
(which imports TensorFlow and every architecture: seconds). tests/test_extractors.py checks
these sets against the installed `object_detection.builders.model_builder` maps.
"""

from __future__ import annotations

import difflib

TF2 = {
    "ssd": frozenset(
        {
            "ssd_mobilenet_v1_keras",
            "ssd_mobilenet_v1_fpn_keras",
            "ssd_mobilenet_v2_keras",
            "ssd_mobilenet_v2_fpn_keras",
            "ssd_resnet50_v1_fpn_keras",
            "ssd_resnet101_v1_fpn_keras",
            "ssd_resnet152_v1_fpn_keras",
            *(f"ssd_efficientnet-b{i}_bifpn_keras" for i in range(8)),
        }
    ),
    "faster_rcnn": frozenset(
        {
            "faster_rcnn_resnet50_keras",
            "faster_rcnn_resnet101_keras",
            "faster_rcnn_resnet152_keras",
            "faster_rcnn_inception_resnet_v2_keras",
            "faster_rcnn_resnet50_fpn_keras",
            "faster_rcnn_resnet101_fpn_keras",
            "faster_rcnn_resnet152_fpn_keras",
        }
    ),
    "center_net": frozenset(
        {
            "resnet_v2_50",
            "resnet_v2_101",
            "resnet_v1_18_fpn",
            "resnet_v1_34_fpn",
            "resnet_v1_50_fpn",
            "resnet_v1_101_fpn",
            "hourglass_10",
            "hourglass_20",
            "hourglass_32",
            "hourglass_52",
            "hourglass_104",
            "mobilenet_v2",
            "mobilenet_v2_fpn",
            "mobilenet_v2_fpn_sep_conv",
        }
    ),
}

# TF1-only extractors -> what to use in TF2.
TF1_TO_TF2 = {
    "ssd_mobilenet_v1": "ssd_mobilenet_v1_keras",
    "ssd_mobilenet_v2": "ssd_mobilenet_v2_keras",
    "ssd_mobilenet_v1_fpn": "ssd_mobilenet_v1_fpn_keras",
    "ssd_mobilenet_v2_fpn": "ssd_mobilenet_v2_fpn_keras",
    "ssd_resnet50_v1_fpn": "ssd_resnet50_v1_fpn_keras",
    "ssd_resnet101_v1_fpn": "ssd_resnet101_v1_fpn_keras",
    "ssd_resnet152_v1_fpn": "ssd_resnet152_v1_fpn_keras",
    "ssd_inception_v2": "ssd_mobilenet_v2_keras (no Inception in TF2 SSD)",
    "ssd_inception_v3": "ssd_mobilenet_v2_keras (no Inception in TF2 SSD)",
    "ssd_mobilenet_v1_ppn": "ssd_mobilenet_v1_keras",
    "ssd_mobilenet_v2_mnasfpn": "ssd_mobilenet_v2_fpn_keras",
    "ssd_mobilenet_v3_large": "ssd_mobilenet_v2_keras (no MobileNetV3 in TF2)",
    "ssd_mobilenet_v3_small": "ssd_mobilenet_v2_keras (no MobileNetV3 in TF2)",
    "ssd_mobilenet_edgetpu": "ssd_mobilenet_v2_keras",
    "ssd_resnet50_v1_ppn": "ssd_resnet50_v1_fpn_keras",
    "ssd_resnet101_v1_ppn": "ssd_resnet101_v1_fpn_keras",
    "ssd_resnet152_v1_ppn": "ssd_resnet152_v1_fpn_keras",
    "embedded_ssd_mobilenet_v1": "ssd_mobilenet_v1_keras",
    "ssd_pnasnet": "ssd_resnet50_v1_fpn_keras",
    "ssd_mobiledet_cpu": "ssd_mobilenet_v2_keras (no MobileDet in TF2)",
    "ssd_mobiledet_dsp": "ssd_mobilenet_v2_keras (no MobileDet in TF2)",
    "ssd_mobiledet_edgetpu": "ssd_mobilenet_v2_keras (no MobileDet in TF2)",
    "ssd_mobiledet_gpu": "ssd_mobilenet_v2_keras (no MobileDet in TF2)",
    "ssd_spaghettinet": "ssd_mobilenet_v2_keras",
    "faster_rcnn_nas": "faster_rcnn_inception_resnet_v2_keras",
    "faster_rcnn_pnas": "faster_rcnn_inception_resnet_v2_keras",
    "faster_rcnn_inception_resnet_v2": "faster_rcnn_inception_resnet_v2_keras",
    "faster_rcnn_inception_v2": "faster_rcnn_resnet50_keras (no Inception-v2 in TF2)",
    "faster_rcnn_resnet50": "faster_rcnn_resnet50_keras",
    "faster_rcnn_resnet101": "faster_rcnn_resnet101_keras",
    "faster_rcnn_resnet152": "faster_rcnn_resnet152_keras",
}


def suggest(meta_arch: str, extractor: str) -> str | None:
    """The closest TF2 extractor name for a misspelt or custom one."""
    matches = difflib.get_close_matches(extractor, sorted(TF2.get(meta_arch, ())), n=1, cutoff=0.6)
    return matches[0] if matches else None
