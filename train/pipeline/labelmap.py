"""Label map (`StringIntLabelMap` text proto) parsing, without TensorFlow."""

from __future__ import annotations

import dataclasses

from train import compat


class LabelMapError(Exception):
    """The label map cannot be read or parsed."""


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """The items of a label map, in file order."""

    path: str
    items: tuple[tuple[int, str], ...]  # (id, name)

    @property
    def ids(self) -> list[int]:  # noqa: D102
        return [i for i, _ in self.items]

    @property
    def names(self) -> list[str]:  # noqa: D102
        return [n for _, n in self.items]

    @property
    def max_id(self) -> int:  # noqa: D102
        return max(self.ids, default=0)


def load(path: str) -> LabelMap:
    """Parses a label map file; raises LabelMapError with a one-line reason."""
    compat.apply(with_tensorflow=False)
    from google.protobuf import text_format
    from object_detection.protos import string_int_label_map_pb2

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise LabelMapError(f"cannot be read: {e.strerror or e}") from None
    proto = string_int_label_map_pb2.StringIntLabelMap()
    try:
        text_format.Merge(text, proto)
    except text_format.ParseError as e:
        raise LabelMapError(f"does not parse: {e}") from None
    return LabelMap(path, tuple((item.id, item.name or item.display_name) for item in proto.item))
