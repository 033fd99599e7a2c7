"""Label map (`StringIntLabelMap` text proto) parsing, without TensorFlow."""

from __future__ import annotations

import dataclasses

from train import compat, errors, files

MAX_ID = 10_000  # see check_label_maps: an id sizes the class head, so a huge one is a typo


class LabelMapError(Exception):
    """The label map cannot be read or parsed."""


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """The items of a label map, in file order."""

    path: str
    items: tuple[tuple[int, str], ...]  # (id, name)
    keypoint_items: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (name, keypoint ids)

    @property
    def keypoints(self) -> dict[str, tuple[int, ...]]:
        """{class name: its keypoint ids} for the items that list keypoints (CenterNet)."""
        return dict(self.keypoint_items)

    @property
    def ids(self) -> list[int]:  # noqa: D102
        return [i for i, _ in self.items]

    @property
    def names(self) -> list[str]:  # noqa: D102
        return [n for _, n in self.items]

    @property
    def max_id(self) -> int:  # noqa: D102
        return max(self.ids, default=0)

    @property
    def usable(self) -> bool:
        """Whether it can size a model: items, ids in 1..MAX_ID, none repeated."""
        return (
            bool(self.items)
            and all(1 <= i <= MAX_ID for i in self.ids)
            and len(set(self.ids)) == len(self.ids)
        )


def load(path: str) -> LabelMap:
    """Parses a label map file; raises LabelMapError with a one-line reason."""
    compat.apply(with_tensorflow=False)
    from google.protobuf import text_format
    from object_detection.protos import string_int_label_map_pb2

    try:
        text = files.read_text(path)
    except files.InputError as e:
        raise LabelMapError(e.reason) from None
    proto = string_int_label_map_pb2.StringIntLabelMap()
    try:
        text_format.Merge(text, proto)
    except text_format.ParseError as e:
        raise LabelMapError(errors.clip(f"does not parse: {e}")) from None
    return LabelMap(
        path,
        tuple((item.id, item.name or item.display_name) for item in proto.item),
        tuple(
            (item.name, tuple(k.id for k in item.keypoints))
            for item in proto.item
            if item.keypoints
        ),
    )
