"""Turn an image file into the bytes training should see, and its boxes into that frame.

The OD API decodes JPEG/PNG bytes as stored: it ignores EXIF orientation (a phone photo
shown upright by every viewer trains sideways, its boxes off the objects) and relies on
`channels=3` for grayscale or CMYK. Here Pillow applies the orientation
(`ImageOps.exif_transpose`) and converts any mode to RGB; a plain RGB JPEG or PNG keeps its
original bytes (no re-encoding loss, byte-identical reruns).
"""

from __future__ import annotations

import dataclasses
import io

from train import files

_ORIENTATION = 0x0112
# EXIF orientations that swap width and height (transpose, rotate 90/270, transverse).
_SWAPS = (5, 6, 7, 8)


class ImageError(Exception):
    """The image cannot be read or decoded."""


@dataclasses.dataclass(frozen=True)
class Prepared:
    """An image as it goes into a record."""

    data: bytes
    format: str  # "jpeg" | "png"
    width: int
    height: int
    stored_width: int  # before the EXIF orientation was applied
    stored_height: int
    orientation: int  # EXIF orientation (1: none)
    changes: tuple[str, ...]


def _verify_png(raw: bytes) -> None:
    """Raises ImageError when a PNG chunk fails its CRC.

    Pillow decodes such a file (it does not check the data chunks' CRCs while loading), but
    TensorFlow refuses it in training.
    """
    from PIL import Image

    try:
        Image.open(io.BytesIO(raw)).verify()
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"is a damaged PNG ({e})") from None


def _open(path: str):
    """(raw bytes, decoded Pillow image as stored) of one file (ImageError: one-line reason)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with files.open_input(path) as f:
            raw = f.read()
    except files.InputError as e:
        raise ImageError(e.reason) from None
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except UnidentifiedImageError:
        raise ImageError("cannot be decoded (not an image format Pillow knows)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"cannot be decoded ({e})") from None
    return raw, image


def _upright(image):
    """(the image as shown: EXIF orientation applied, RGB; its orientation; the changes)."""
    from PIL import ImageOps

    stored = image.size
    orientation = int(image.getexif().get(_ORIENTATION, 1) or 1)
    changes = []
    if orientation not in range(1, 9):
        orientation = 1
    if orientation != 1:
        image = ImageOps.exif_transpose(image)
        changes.append(
            f"EXIF orientation {orientation} applied ({stored[0]}x{stored[1]} stored, "
            f"{image.size[0]}x{image.size[1]} shown)"
        )
    if image.mode != "RGB":
        changes.append(f"{image.mode} converted to RGB")
        image = image.convert("RGB")
    return image, orientation, changes


def pixels(path: str):
    """One image file as the model sees it: uint8 RGB [h, w, 3], upright as the converter makes it.

    train.predict reads pictures through here, so a phone photo is predicted upright, as it
    was trained. Raises ImageError with a one-line reason.
    """
    import numpy as np

    _, image = _open(path)
    return np.asarray(_upright(image)[0])


def prepare(path: str) -> Prepared:
    """Reads, decodes and normalises one image (raises ImageError with a one-line reason)."""
    raw, image = _open(path)
    kind = image.format or "?"
    stored = image.size
    image, orientation, changes = _upright(image)
    jpeg = kind in ("JPEG", "MPO")
    if not changes and (jpeg or kind == "PNG"):
        if kind == "PNG":
            _verify_png(raw)  # kept as stored: TensorFlow's decoder checks every chunk's CRC
        return Prepared(raw, "jpeg" if jpeg else "png", *image.size, *stored, 1, ())
    out = io.BytesIO()
    if jpeg:
        image.save(out, "JPEG", quality=95)
    else:
        image.save(out, "PNG")
        if kind != "PNG":
            changes.append(f"{kind} re-encoded as PNG")
    return Prepared(
        out.getvalue(),
        "jpeg" if jpeg else "png",
        *image.size,
        *stored,
        orientation,
        tuple(changes),
    )


def orient_box(orientation: int, box, width: int, height: int) -> tuple[float, ...]:
    """A box drawn on the stored pixels (width x height) moved to the shown image's frame.

    What `ImageOps.exif_transpose` does to the pixels, done to the two corners.
    """
    xmin, ymin, xmax, ymax = box

    def point(x: float, y: float) -> tuple[float, float]:
        return {
            2: (width - x, y),  # mirrored left-right
            3: (width - x, height - y),  # rotated 180
            4: (x, height - y),  # mirrored top-bottom
            5: (y, x),  # transposed
            6: (height - y, x),  # rotated 90 clockwise to show
            7: (height - y, width - x),  # transversed
            8: (y, width - x),  # rotated 90 counter-clockwise to show
        }.get(orientation, (x, y))

    (x1, y1), (x2, y2) = point(xmin, ymin), point(xmax, ymax)
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def swaps_sides(orientation: int) -> bool:
    """Whether an EXIF orientation turns the image by 90 degrees."""
    return orientation in _SWAPS
