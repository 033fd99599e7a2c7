"""The extractor tables match the installed OD API's model builder."""

from __future__ import annotations

from train.pipeline import extractors


def test_tables_match_the_installed_model_builder():
    from train import compat

    compat.apply()
    from object_detection.builders import model_builder

    assert extractors.TF2["ssd"] == set(model_builder.SSD_KERAS_FEATURE_EXTRACTOR_CLASS_MAP)
    assert extractors.TF2["faster_rcnn"] == set(
        model_builder.FASTER_RCNN_KERAS_FEATURE_EXTRACTOR_CLASS_MAP
    )
    assert extractors.TF2["center_net"] == set(model_builder.CENTER_NET_EXTRACTOR_FUNCTION_MAP)
    # The TF1 maps are defined only under TF1, but their keys are in the builder's source.
    with open(model_builder.__file__, encoding="utf-8") as f:
        source = f.read()
    for name in extractors.TF1_TO_TF2:
        assert f"'{name}':" in source, name
    for name, replacement in extractors.TF1_TO_TF2.items():
        assert replacement.split()[0] in extractors.TF2["ssd"] | extractors.TF2["faster_rcnn"], name


def test_suggest_close_names():
    assert (
        extractors.suggest("ssd", "ssd_efficientnet-b0_bifpn") == "ssd_efficientnet-b0_bifpn_keras"
    )
    assert extractors.suggest("ssd", "completely_different") is None
