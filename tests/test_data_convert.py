"""`python -m train.data convert`: each annotation format to records the OD API decodes right."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest

from tests import datasets
from tests.conftest import run_python
from train import errors

pytestmark = pytest.mark.data

# What each format's dataset loses besides what every format loses (datasets.expected):
# a CSV has rows only for boxes, so an image without boxes is not in it.
_NOT_IN = {"csv": {"negative.jpg"}}


def _convert(source, out, *flags):
    return run_python(["-m", "train.data", "convert", str(source), f"--out={out}", *flags])


def _decode(out: str) -> dict:
    """{image file name: (split, decoded tensors)} with the OD API's own TfExampleDecoder."""
    from train import compat

    compat.apply()
    import tensorflow as tf
    from object_detection.core import standard_fields as fields
    from object_detection.data_decoders import tf_example_decoder

    decoder = tf_example_decoder.TfExampleDecoder(
        label_map_proto_file=os.path.join(out, "label_map.pbtxt")
    )
    decoded = {}
    for path in sorted(glob.glob(os.path.join(out, "*.record"))):
        for record in tf.data.TFRecordDataset(path):
            tensors = decoder.decode(record)
            name = os.path.basename(tensors[fields.InputDataFields.filename].numpy().decode())
            decoded[name] = (
                os.path.basename(path).split("-")[0],
                {
                    "image": tensors[fields.InputDataFields.image].numpy(),
                    "boxes": tensors[fields.InputDataFields.groundtruth_boxes].numpy(),
                    "classes": tensors[fields.InputDataFields.groundtruth_classes].numpy(),
                    "crowd": tensors[fields.InputDataFields.groundtruth_is_crowd].numpy(),
                },
            )
    return decoded


def _label_map(out: str) -> dict[str, int]:
    from train.pipeline import labelmap

    return {name: i for i, name in labelmap.load(os.path.join(out, "label_map.pbtxt")).items}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Each format's dataset written and converted once through the CLI (val_fraction 0.3)."""
    root = tmp_path_factory.mktemp("formats")
    done = {}
    for kind, write in datasets.WRITERS.items():
        source = write(str(root / kind), datasets.specs())
        out = root / f"{kind}_records"
        result = _convert(source, out, "--val_fraction=0.3")
        done[kind] = {"source": source, "out": str(out), "result": result}
    return done


@pytest.mark.parametrize("kind", sorted(datasets.WRITERS))
def test_records_decode_to_the_annotated_boxes_classes_and_sizes(converted, kind):
    run = converted[kind]
    assert run["result"].returncode == 0, run["result"].stderr[-3000:]
    ids = _label_map(run["out"])
    decoded = _decode(run["out"])
    want = {k: v for k, v in datasets.expected(datasets.specs()).items()}
    for name in _NOT_IN.get(kind, ()):
        want.pop(name)
    assert sorted(decoded) == sorted(want)
    for name, (width, height, boxes) in want.items():
        split, got = decoded[name]
        assert got["image"].shape == (height, width, 3), name  # shown orientation, RGB
        want_boxes = np.array([b[1:] for b in boxes]).reshape(-1, 4)
        np.testing.assert_allclose(got["boxes"], want_boxes, atol=1e-6, err_msg=name)
        assert list(got["classes"]) == [ids[b[0]] for b in boxes], name
        for (cls, ymin, xmin, ymax, xmax), in_box in zip(boxes, got["boxes"], strict=True):
            # the pixels agree with the box: its middle has the class's colour
            y, x = int((ymin + ymax) / 2 * height), int((xmin + xmax) / 2 * width)
            colour = np.array(datasets.COLORS[cls])
            if name == "gray.png":
                colour = np.full(3, colour @ [0.299, 0.587, 0.114])
            assert np.abs(got["image"][y, x] - colour).max() < 40, (
                name,
                cls,
                in_box,
            )
    assert "gray.png" in want  # (its colours are the class colours' grey levels)
    splits = {split for split, _ in decoded.values()}
    assert splits == {"train", "eval"}


def test_class_ids_follow_the_dataset(converted):
    """COCO's category ids and YOLO's names keep their order; VOC and CSV sort the names."""
    assert list(_label_map(converted["coco"]["out"])) == ["cat", "dog", "bird", "zebra"]
    assert list(_label_map(converted["yolo"]["out"])) == ["cat", "dog", "bird", "zebra"]
    for kind in ("voc", "csv"):
        assert list(_label_map(converted[kind]["out"])) == ["bird", "cat", "dog", "zebra"]


def test_coco_iscrowd_is_kept(converted):
    decoded = _decode(converted["coco"]["out"])
    first = datasets.specs()[0].name  # the very first COCO box is the crowd
    crowds = {name: list(t["crowd"]) for name, (_, t) in decoded.items() if any(t["crowd"])}
    assert list(crowds) == [first] and crowds[first][0]


@pytest.mark.parametrize("kind", sorted(datasets.WRITERS))
def test_every_skipped_or_changed_item_is_reported_with_its_reason(converted, kind):
    output = converted[kind]["result"].stdout
    with open(os.path.join(converted[kind]["out"], "summary.json")) as f:
        summary = json.load(f)
    reasons = [p["reason"] for p in summary["problems"]]
    for fragment in (
        "EXIF orientation 6 applied (160x120 stored, 120x160 shown)",
        "L converted to RGB",
        "CMYK converted to RGB",
        "degenerate box (70,20)-(70,60): zero or negative area",
        "box (90,30)-(134,70) clipped to the 128x96 image",
        "box (100,10)-(200,40) is mostly outside the 128x96 image",
    ):
        assert any(fragment in r for r in reasons), (fragment, reasons)
        assert fragment in output
    missing = "no image for these labels" if kind == "yolo" else "'missing.jpg' not found"
    assert any(missing in r for r in reasons) and missing in output
    assert f"found {datasets_name(kind)}" in output
    boxes = sum(sum(s["boxes"].values()) for s in summary["splits"].values())
    kept = sum(len(b) for _, _, b in datasets.expected(datasets.specs()).values())
    assert boxes == kept


def datasets_name(kind: str) -> str:
    from train.data import sources

    return sources.FORMAT_NAMES[kind]


def test_converting_twice_gives_byte_identical_records(converted, tmp_path):
    again = tmp_path / "again"
    result = _convert(converted["voc"]["source"], again, "--val_fraction=0.3")
    assert result.returncode == 0, result.stderr[-2000:]
    first = sorted(glob.glob(os.path.join(converted["voc"]["out"], "*.record")))
    second = sorted(glob.glob(os.path.join(again, "*.record")))
    assert [os.path.basename(p) for p in first] == [os.path.basename(p) for p in second]
    for a, b in zip(first, second, strict=True):
        with open(a, "rb") as fa, open(b, "rb") as fb:
            assert fa.read() == fb.read(), a
    assert (again / "label_map.pbtxt").read_text() == open(
        os.path.join(converted["voc"]["out"], "label_map.pbtxt")
    ).read()


def test_a_given_label_map_keeps_its_ids_and_rejects_other_classes(tmp_path):
    source = datasets.write_voc(str(tmp_path / "voc"), datasets.specs(4))
    label_map = tmp_path / "map.pbtxt"
    label_map.write_text(
        "item { id: 5 name: 'cat' }\nitem { id: 1 name: 'dog' }\nitem { id: 2 name: 'bird' }\n"
    )
    out = tmp_path / "out"
    result = _convert(source, out, f"--label_map={label_map}", "--val_fraction=0")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        "dropped box: " in result.stdout and "class 'zebra' not in the label map" in result.stdout
    )
    assert (out / "label_map.pbtxt").read_text() == label_map.read_text()
    decoded = _decode(str(out))
    ids = {"cat": 5, "dog": 1, "bird": 2}
    want = datasets.expected(datasets.specs(4), ids)
    assert sorted(decoded) == sorted(want)
    for name, (_, _, boxes) in want.items():
        assert list(decoded[name][1]["classes"]) == [ids[b[0]] for b in boxes]


def test_the_split_keeps_earlier_images_when_the_data_grows(tmp_path):
    root = tmp_path / "csv"
    datasets.write_csv(str(root), datasets.specs(20, start=100))
    out = tmp_path / "out"
    assert _convert(root, out, "--val_fraction=0.3").returncode == 0
    before = {name: split for name, (split, _) in _decode(str(out)).items()}
    more = datasets.specs(20, start=100) + datasets.specs(20, start=200)
    datasets.write_csv(str(root), more)
    result = _convert(root, out, "--val_fraction=0.3", "--shards=2")
    assert result.returncode == 0, result.stderr[-2000:]
    after = {name: split for name, (split, _) in _decode(str(out)).items()}
    assert len(after) == 40 and {n: after[n] for n in before} == before
    assert set(after.values()) == {"train", "eval"}
    names = sorted(os.path.basename(p) for p in glob.glob(str(out / "*.record")))
    assert names == [
        "eval-00000-of-00002.record",
        "eval-00001-of-00002.record",
        "train-00000-of-00002.record",
        "train-00001-of-00002.record",
    ]


def test_broken_files_are_reported_and_the_rest_converted(tmp_path):
    source = datasets.write_voc(str(tmp_path / "voc"), datasets.specs(3, start=10))
    (tmp_path / "voc" / "broken.xml").write_text("<annotation><filename>x.jpg</filename>")
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><annotation>&lol2;</annotation>'
    )
    (tmp_path / "voc" / "entities.xml").write_text(bomb)
    (tmp_path / "voc" / "img_010.jpg").write_bytes(b"not a jpeg at all")
    result = _convert(source, tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "broken.xml: not readable XML" in result.stdout
    assert "entities.xml: not readable XML (EntitiesForbidden" in result.stdout
    assert "img_010.jpg: cannot be decoded" in result.stdout
    assert sorted(_decode(str(tmp_path / "out"))) == ["img_011.jpg", "img_012.jpg"]


def test_usage_errors_and_nothing_usable(tmp_path):
    datasets.write_voc(str(tmp_path / "mixed"), datasets.specs(2, start=30))
    datasets.write_csv(str(tmp_path / "mixed"), datasets.specs(2, start=30))
    result = _convert(tmp_path / "mixed", tmp_path / "out")
    assert result.returncode == errors.EXIT_USAGE
    assert "more than one annotation format" in result.stderr and "--format" in result.stderr
    assert "Traceback" not in result.stderr
    result = _convert(tmp_path / "mixed", tmp_path / "out", "--format=csv")
    assert result.returncode == 0, result.stderr[-2000:]

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    result = _convert(tmp_path / "mixed", foreign, "--format=voc")
    assert result.returncode == errors.EXIT_USAGE and "holds other files" in result.stderr
    assert (foreign / "notes.txt").read_text() == "mine"

    result = _convert(tmp_path / "nowhere", tmp_path / "out2")
    assert result.returncode == errors.EXIT_USAGE and "no such file or folder" in result.stderr

    empty = tmp_path / "only_missing"
    datasets.write_voc(str(empty), [s for s in datasets.specs() if s.kind == "missing"])
    result = _convert(empty, tmp_path / "out3")
    assert result.returncode == errors.EXIT_PREFLIGHT
    assert "no usable image" in result.stderr and "'missing.jpg' not found" in result.stdout


def test_fix_box_rules():
    from train.data import convert

    assert convert.fix_box((10, 10, 20, 20), 100, 50) == ((0.1, 0.2, 0.2, 0.4), "")
    assert convert.fix_box((10, 10, 10, 20), 100, 50)[0] is None
    assert convert.fix_box((20, 10, 10, 20), 100, 50)[0] is None
    clipped, note = convert.fix_box((-2, 10, 20, 20), 100, 50)
    assert clipped == (0.0, 0.2, 0.2, 0.4) and "clipped" in note
    assert convert.fix_box((90, 10, 200, 20), 100, 50)[0] is None
    assert convert.fix_box((float("nan"), 10, 20, 20), 100, 50)[0] is None


def test_exif_box_turning_matches_pillow():
    """orient_box moves a box exactly as exif_transpose moves its pixels, for all 8 cases."""
    from PIL import Image, ImageOps

    from train.data import images

    width, height, box = 40, 30, (5, 7, 15, 12)
    for orientation in range(1, 9):
        stored = Image.new("L", (width, height))
        stored.paste(255, box)
        exif = Image.Exif()
        exif[0x0112] = orientation
        stored.info["exif"] = exif.tobytes()
        stored.getexif()[0x0112] = orientation
        shown = np.array(ImageOps.exif_transpose(stored))
        ys, xs = np.nonzero(shown)
        want = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert images.orient_box(orientation, box, width, height) == want, orientation


def test_boxes_drawn_on_the_stored_pixels_turn_with_the_image(tmp_path):
    """A tool that ignored EXIF wrote the stored size: its boxes are turned like the pixels."""
    from PIL import Image

    shown = datasets.Spec("turned.jpg", 120, 160, (("dog", 10, 90, 60, 150),), kind="exif")
    root = tmp_path / "voc"
    datasets.write_voc(str(root), [shown])
    stored = Image.open(root / "turned.jpg")
    assert stored.size == (160, 120)  # what a tool blind to EXIF shows and annotates
    # The same dog on the stored pixels: rotating the shown image 90 degrees counter-clockwise
    # takes (x, y) to (y, width - x).
    xml = (root / "turned.xml").read_text()
    xml = xml.replace("<width>120</width>", "<width>160</width>")
    xml = xml.replace("<height>160</height>", "<height>120</height>")
    for tag, old, new in (
        ("xmin", 10, 90),
        ("ymin", 90, 120 - 60),
        ("xmax", 60, 150),
        ("ymax", 150, 120 - 10),
    ):
        xml = xml.replace(f"<{tag}>{old}</{tag}>", f"<{tag}>{new}</{tag}>")
    (root / "turned.xml").write_text(xml)
    out = tmp_path / "out"
    result = _convert(root, out, "--val_fraction=0")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "its boxes were turned with the image (EXIF 6)" in result.stdout
    ((_, got),) = _decode(str(out)).values()
    assert got["image"].shape == (160, 120, 3)
    np.testing.assert_allclose(got["boxes"], [[90 / 160, 10 / 120, 150 / 160, 60 / 120]], atol=1e-6)


def test_conversion_and_check_import_no_tensorflow(tmp_path):
    source = datasets.write_coco(str(tmp_path / "coco"), datasets.specs(2, start=70))
    code = (
        "import sys\n"
        "from train.data import convert, checkcmd\n"
        f"convert.convert(convert.ConvertOptions({source!r}, {str(tmp_path / 'out')!r}))\n"
        f"checkcmd.check([{str(tmp_path / 'out' / '*.record')!r}], None)\n"
        "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'tf_slim', 'tf_keras')))\n"
    )
    result = run_python(code)
    assert "LOADED []" in result.stdout, result.stdout + result.stderr[-2000:]


def test_skip_empty_and_a_broken_coco_file(tmp_path):
    source = datasets.write_coco(str(tmp_path / "coco"), datasets.specs(3, start=80))
    negative = datasets.Spec("empty.jpg", 64, 48, ())
    datasets.write_coco(str(tmp_path / "coco"), [*datasets.specs(3, start=80), negative])
    result = _convert(source, tmp_path / "kept")
    assert result.returncode == 0 and "empty.jpg" in _decode(str(tmp_path / "kept"))
    result = _convert(source, tmp_path / "skipped", "--skip_empty")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "empty.jpg: no boxes (--skip_empty)" in result.stdout
    assert "empty.jpg" not in _decode(str(tmp_path / "skipped"))

    path = tmp_path / "coco" / "annotations" / "instances_default.json"
    path.write_text(path.read_text()[:-30])  # cut short
    result = _convert(source, tmp_path / "broken")
    assert result.returncode == errors.EXIT_USAGE and "Traceback" not in result.stderr
    assert "no usable COCO annotation file: skipped file:" in result.stderr
    assert "instances_default.json: not a COCO instances file" in result.stderr


def test_an_interrupted_first_conversion_does_not_block_the_next(tmp_path):
    source = datasets.write_csv(str(tmp_path / "csv"), datasets.specs(2, start=90))
    out = tmp_path / "out"
    (out / ".converting-abc123").mkdir(parents=True)  # what a killed first run leaves
    (out / ".converting-abc123" / "train-00000-of-00001.record").write_bytes(b"partial")
    result = _convert(source, out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (out / ".converting-abc123").exists()
    assert sorted(_decode(str(out))) == ["img_090.jpg", "img_091.jpg"]
