"""Builds EfficientDet configs at given input sides with the real OD API; prints the outcomes.

    python -m tests.bifpn_builds CONFIG:SIDE ...

For each, the model is built from the config as shipped (3 classes) with its keep-aspect
resizer padding to SIDE x SIDE, and one image goes through preprocess and predict. Prints one
JSON list of {config, side, ok, layer}: `layer` is the Keras layer that failed, if any. Run in a
child process so the builds never accumulate in the test process.
"""

from __future__ import annotations

import json
import os
import re
import sys


def main(argv: list[str]) -> None:
    from train import compat

    compat.apply()
    import tensorflow as tf
    from object_detection.builders import model_builder

    from train.pipeline import configfile

    results = []
    for arg in argv:
        path, side = arg.rsplit(":", 1)
        config = configfile.load(path).proto
        config.model.ssd.num_classes = 3
        keep = config.model.ssd.image_resizer.keep_aspect_ratio_resizer
        keep.min_dimension = keep.max_dimension = int(side)
        layer = None
        try:
            model = model_builder.build(config.model, is_training=True)
            images, shapes = model.preprocess(tf.zeros([1, int(side), int(side), 3]))
            model.predict(images, shapes)
        except Exception as e:  # noqa: BLE001 - the failure is the result
            found = re.search(r"calling layer '([^']+)'", str(e))
            layer = found.group(1) if found else f"{type(e).__name__}: {str(e)[:200]}"
        results.append(
            {
                "config": os.path.basename(path),
                "side": int(side),
                "ok": layer is None,
                "layer": layer,
            }
        )
        tf.keras.backend.clear_session()
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1:])
