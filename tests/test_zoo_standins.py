"""All 40 TF2 zoo configs with a matching stand-in checkpoint: no error left after the fixes.

Each config is used as downloaded, with its paths pointed at files this test writes (a 3-class
label map taken from COCO's, records with those class names) and its checkpoint at a stand-in
with the variables of the model the config builds (built once per config and TF version, cached
in $TFOD_CACHE_DIR or ~/.cache/tfod-finetune). The resolved config is then fed back in: the
rewrite must be idempotent (nothing left to fix, no change).
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest

from tests.helpers import standin_signatures, write_checkpoint
from train.options import RunOptions
from train.pipeline import configfile, labelmap, rewrite
from train.preflight import Context, run_preflight

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def zoo(shared_fixtures, tmp_path_factory):
    configs = sorted(glob.glob(os.path.join(shared_fixtures, "zoo_tf2", "*.config")))
    assert len(configs) == 40
    work = tmp_path_factory.mktemp("zoo")
    keypoints = os.path.join(shared_fixtures, "label_maps", "mscoco_with_keypoints_label_map.pbtxt")
    ready = []
    for config in configs:  # the zoo text as shipped, but the keypoint map filled in
        target = work / os.path.basename(config)
        text = open(config).read()
        target.write_text(
            text.replace(
                'keypoint_label_map_path: "PATH_TO_BE_CONFIGURED"',
                f'keypoint_label_map_path: "{keypoints}"',
            )
        )
        ready.append(str(target))
    signatures = standin_signatures(ready)  # built once per config and TF version, cached
    coco = os.path.join(shared_fixtures, "label_maps", "mscoco_label_map.pbtxt")
    names = dict(labelmap.load(coco).items[:3])
    three = work / "three.pbtxt"
    three.write_text("".join(f"item {{ id: {i} name: '{n}' }}\n" for i, n in names.items()))
    from train.tf import synthetic

    rng = np.random.default_rng(0)
    records = str(work / "coco.record")
    import tensorflow as tf

    with tf.io.TFRecordWriter(records) as writer:
        for i in range(4):
            # PNG masks and COCO's 17 keypoints: what the mask and keypoint configs load.
            masks = []
            image, boxes, labels = synthetic.make_image(rng, 64, masks)
            example = synthetic.to_example(
                image, boxes, labels, f"{i}.jpg", names, masks=masks, keypoints=17
            )
            writer.write(example.SerializeToString())
    return signatures, str(three), records, work


def test_every_zoo_config_trains_after_the_fixes(zoo):
    signatures, labels, records, work = zoo
    failures = {}
    for index, (config, signature) in enumerate(sorted(signatures.items())):
        with open(signature) as f:
            variables = {
                n[: -len("/.ATTRIBUTES/VARIABLE_VALUE")]: s
                for n, s in json.load(f)
                if n.startswith("model/") and n.endswith("/.ATTRIBUTES/VARIABLE_VALUE")
            }
        checkpoint_dir = work / f"ckpt{index}"
        prefix = write_checkpoint(str(checkpoint_dir), variables)
        options = RunOptions(
            pipeline_config=config,
            model_dir=str(work / "model"),
            checkpoint=str(checkpoint_dir),
            label_map=labels,
            train_input_path=(records,),
            eval_input_path=(records,),
            num_train_steps=100,
            batch_size=2,
        )
        source = configfile.load(config)
        effective, _ = rewrite.apply_overrides(source.proto, options)
        report = run_preflight(Context(options=options, source=source, config=effective))
        blocking = [f"{f.code}: {f.message}" for f in report.blocking("auto")]
        arch = [f.code for f in report.findings if f.code.startswith("CKPT_ARCH")]
        fixed, _ = rewrite.apply_fixes(effective, [f for f in report.findings if f.fixable])
        resolved = work / "resolved.config"
        resolved.write_text(configfile.to_text(fixed))
        again_source = configfile.load(str(resolved))
        again_options = RunOptions(pipeline_config=str(resolved), model_dir=str(work / "model"))
        again = run_preflight(
            Context(options=again_options, source=again_source, config=again_source.proto)
        )
        _, changes = rewrite.apply_fixes(
            again_source.proto, [f for f in again.findings if f.fixable]
        )
        tc = fixed.train_config
        model = getattr(fixed.model, fixed.model.WhichOneof("model"))
        wrong = [
            what
            for what, bad in (
                ("num_classes", model.num_classes != 3),
                ("type", tc.fine_tune_checkpoint_type != "detection"),
                ("version", tc.fine_tune_checkpoint_version != 2),
                ("checkpoint path", tc.fine_tune_checkpoint != prefix),
                ("sync_replicas", tc.HasField("sync_replicas")),
                ("not idempotent", bool(changes) or bool(again.blocking("auto"))),
            )
            if bad
        ]
        if blocking or arch or wrong or report.checkpoint["num_classes"] not in (90, None):
            failures[os.path.basename(config)] = (blocking, arch + wrong, report.checkpoint)
        for name in os.listdir(checkpoint_dir):
            os.unlink(checkpoint_dir / name)
        assert prefix
    summary = "\n".join(
        f"{name}: {blocking} {arch} {ckpt}"
        for name, (blocking, arch, ckpt) in sorted(failures.items())
    )
    assert failures == {}, summary
