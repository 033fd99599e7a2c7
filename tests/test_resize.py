"""A TFLite model's input is resized as the OD API's fixed_shape_resizer resizes.

The TFLite file takes the resized picture, so an app, the export's verification and
train.predict resize outside the model (train/tf/exporting.py, `resize_like_the_model`); a
resize other than the one the model was trained through moves a CenterNet's boxes by ~0.02 of
the picture. The reference is the OD API's own resizer, built from the config as training
builds it, pixel for pixel, on sizes up, down and equal.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.stack  # the resize kernels are TensorFlow's, on every stack


@pytest.mark.parametrize("shape", [(480, 640), (97, 131), (96, 128), (50, 40)])
def test_the_tflite_input_is_resized_as_the_od_apis_fixed_shape_resizer(shape):
    from train import compat

    compat.apply()
    import tensorflow as tf
    from google.protobuf import text_format
    from object_detection.builders import image_resizer_builder
    from object_detection.protos import image_resizer_pb2

    from train.tf import exporting

    config = image_resizer_pb2.ImageResizer()
    text_format.Parse("fixed_shape_resizer { height: 96 width: 128 }", config)
    od_api_resize = image_resizer_builder.build(config)
    image = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)

    expected = od_api_resize(tf.cast(image, tf.float32))[0].numpy()
    resized = exporting.resize_like_the_model(image, 96, 128)

    assert resized.dtype == np.float32 and resized.shape == (1, 96, 128, 3)
    np.testing.assert_array_equal(resized[0], expected)
