"""Annotations in, checked TFRecords out (TF-free): `python -m train.data convert|check`.

`sources` reads Pascal VOC, COCO, YOLO and CSV annotations into one item list, `images` turns
each photo into the bytes training should see, `convert` writes the split, sharded records,
label map and summary, `scan` verifies every record of TFRecord files at disk speed, and
`use` resolves the driver's `--data`.
"""
