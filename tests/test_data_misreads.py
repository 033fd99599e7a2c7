"""The converter never misreads silently: each odd input is a line naming the file and what
was done, or a refusal (issue 23: NaN and infinity, repeated ids, YAML names, NUL bytes,
zero sizes, damaged PNGs, FIFOs, names that are not UTF-8)."""

from __future__ import annotations

import io
import os
import struct
import zlib

import pytest

from tests.conftest import run_python
from train.data import images, sources


def _voc(folder, name="a", box=("1", "2", "30", "40"), size=("64", "48")):
    (folder / f"{name}.jpg").write_bytes(b"x")
    xmin, ymin, xmax, ymax = box
    (folder / f"{name}.xml").write_text(
        f"<annotation><filename>{name}.jpg</filename><size><width>{size[0]}</width>"
        f"<height>{size[1]}</height></size><object><name>cat</name><bndbox><xmin>{xmin}</xmin>"
        f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
        "</annotation>"
    )


def _lines(source) -> list[str]:
    return [p.line() for p in source.problems]


def test_voc_infinity_and_a_zero_size(tmp_path):
    _voc(tmp_path, "a", box=("1", "2", "inf", "40"))
    _voc(tmp_path, "b", size=("0", "0"))
    source = sources.read(str(tmp_path), "voc")
    lines = _lines(source)
    assert (
        f"dropped box: {tmp_path}/a.xml object 1: unreadable box: 'inf' is not a finite number"
        in (lines)
    )
    assert f"ignored size: {tmp_path}/b.xml: <size> 0x0: the image's own is used" in lines
    (b,) = [i for i in source.items if i.key == "b.jpg"]
    assert b.width is None and len(b.boxes) == 1


def test_coco_repeated_ids_missing_images_and_nan(tmp_path):
    import json

    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "instances.json").write_text(
        json.dumps(
            {
                "images": [
                    {"id": 1, "file_name": "a.jpg", "width": float("inf"), "height": 10},
                    {"id": 1, "file_name": "b.jpg"},
                ],
                "categories": [{"id": 1, "name": "cat"}],
                "annotations": [
                    {"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]},
                    {"image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4]},
                    {"image_id": 1, "category_id": 1, "bbox": [1, 2, "NaN", 4]},
                ],
            }
        )
    )
    source = sources.read(str(tmp_path), "coco")
    lines = _lines(source)
    path = tmp_path / "instances.json"
    assert f"skipped image: {path} image 1: 'b.jpg': id 1 is already 'a.jpg' (kept the first)" in (
        lines
    )
    assert (
        f"dropped box: {path} annotations[1]: image_id 7 is not in images (1 annotation(s) "
        "dropped)" in lines
    )
    assert any(
        "annotations[2]: unreadable annotation" in line and "finite" in line for line in lines
    )
    (a,) = source.items
    assert a.key == "a.jpg" and a.width is None and len(a.boxes) == 1


@pytest.mark.parametrize(
    ("yaml_text", "reason"),
    [
        ("names: catdog\n", "`names:` is the string 'catdog'; give a list"),
        ("names: [[cat, dog]]\n", "`names:` holds lists or mappings"),
        ("names: [cat, dog, cat]\n", "`names:` lists 'cat' more than once"),
        (
            "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nnames: [*c, *c, *c, *c, *c, *c]\n",
            "`names:` holds lists or mappings",
        ),
        ("names: [cat\n  dog: [\n", "not readable YAML (while parsing"),
    ],
)
def test_yolo_names_that_are_not_a_list_of_names_are_refused(tmp_path, yaml_text, reason):
    (tmp_path / "data.yaml").write_text(yaml_text)
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(sources.SourceError) as raised:
        sources.read(str(tmp_path), "yolo")
    message = str(raised.value)
    assert "YOLO labels need class names" in message and f"{tmp_path}/data.yaml" in message
    assert reason in message


def test_yolo_infinity_and_a_label_fifo(tmp_path):
    (tmp_path / "data.yaml").write_text("names: [cat]\n")
    for name in ("a", "b"):
        (tmp_path / f"{name}.jpg").write_bytes(b"x")
    (tmp_path / "a.txt").write_text("0 0.5 inf 0.2 0.2\n")
    os.mkfifo(tmp_path / "b.txt")
    source = sources.read(str(tmp_path), "yolo")  # returns: the FIFO is never opened
    lines = _lines(source)
    assert any(line.startswith(f"dropped box: {tmp_path}/a.txt:1: ") for line in lines), lines
    assert f"skipped image: {tmp_path}/b.txt: is a named pipe (FIFO), not a file" in lines, lines
    assert [i.key for i in source.items] == ["a.jpg"]


def test_csv_nul_bytes_and_infinity(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    header = "filename,width,height,class,xmin,ymin,xmax,ymax\n"
    (tmp_path / "bad.csv").write_text(header + "a.jpg,64,48,cat\0,1,2,30,40\n")
    (tmp_path / "good.csv").write_text(header + "a.jpg,64,48,cat,1,2,inf,40\n")
    source = sources.read(str(tmp_path), "csv")
    lines = _lines(source)
    assert f"skipped file: {tmp_path}/bad.csv: not readable CSV (NUL byte on line 2)" in lines
    assert any(f"{tmp_path}/good.csv:2: unreadable row" in line for line in lines), lines


def test_a_voc_fifo_does_not_hang(tmp_path):
    _voc(tmp_path, "a")
    os.mkfifo(tmp_path / "b.xml")
    code = (
        "from train.data import sources\n"
        f"s = sources.read({str(tmp_path)!r}, 'voc')\n"
        "print('\\n'.join(p.line() for p in s.problems))\n"
    )
    result = run_python(code, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"skipped file: {tmp_path}/b.xml: is a named pipe (FIFO), not a file" in result.stdout


def test_names_that_are_not_utf8_are_skipped_with_a_line(tmp_path):
    _voc(tmp_path, "a")
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9.jpg"
    with open(raw, "wb") as f:
        f.write(b"x")
    source = sources.read(str(tmp_path), "voc")
    assert f"skipped file: {tmp_path}/caf\ufffd.jpg: its name is not UTF-8: rename it" in (
        _lines(source)
    )
    assert [i.key for i in source.items] == ["a.jpg"]


def _png(width=4, height=4) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


def test_a_png_whose_data_fails_its_crc_is_refused(tmp_path):
    good = _png()
    at = good.index(b"IDAT")
    (length,) = struct.unpack(">I", good[at - 4 : at])
    crc_at = at + 4 + length
    bad = good[:crc_at] + struct.pack(">I", zlib.crc32(b"wrong")) + good[crc_at + 4 :]
    (tmp_path / "good.png").write_bytes(good)
    (tmp_path / "bad.png").write_bytes(bad)
    assert images.prepare(str(tmp_path / "good.png")).data == good
    with pytest.raises(images.ImageError) as raised:
        images.prepare(str(tmp_path / "bad.png"))
    assert "is a damaged PNG" in str(raised.value)
