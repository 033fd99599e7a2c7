"""Typed access to the pipeline fields the driver reads and edits.

Edits go through dotted field paths (`model.ssd.num_classes`, `eval_input_reader[0].label_map_path`)
on the parsed proto, never through text overrides: `text_format.Merge` of an override appends to
repeated fields and can switch the model oneof (e.g. `model { ssd {...} }` on a Faster R-CNN).
"""

from __future__ import annotations

import re
import struct

_PART = re.compile(r"^(\w+)(?:\[(\d+)\])?$")
PLACEHOLDER = "PATH_TO_BE_CONFIGURED"


def meta_arch(config) -> str | None:
    """'ssd' | 'faster_rcnn' | 'center_net' | 'experimental_model' | None."""
    return config.model.WhichOneof("model")


def model_message(config):
    """The model's oneof message (e.g. config.model.ssd), or None when unset."""
    arch = meta_arch(config)
    return getattr(config.model, arch) if arch else None


def num_classes_path(config) -> str | None:
    """Field path of num_classes for this meta-architecture (None if it has none)."""
    arch = meta_arch(config)
    return f"model.{arch}.num_classes" if arch in ("ssd", "faster_rcnn", "center_net") else None


def feature_extractor_type(config) -> str | None:
    """The feature extractor type string, if the model has one."""
    message = model_message(config)
    if message is None or not hasattr(message, "feature_extractor"):
        return None
    return message.feature_extractor.type or None


def input_readers(config) -> list[tuple[str, object]]:
    """[(path, InputReader)] for the train reader and every eval reader."""
    readers = [("train_input_reader", config.train_input_reader)]
    readers += [(f"eval_input_reader[{i}]", r) for i, r in enumerate(config.eval_input_reader)]
    return readers


def input_paths(reader) -> list[str]:
    """The TFRecord paths/globs of an input reader."""
    if reader.WhichOneof("input_reader") == "tf_record_input_reader":
        return list(reader.tf_record_input_reader.input_path)
    return []


def is_repeated(field) -> bool:
    """Whether a FieldDescriptor is repeated (protobuf >= 6 dropped `label`)."""
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    return field.label == field.LABEL_REPEATED


def messages(message, path: str = ""):
    """Yields (path, message) for `message` and every message under it, depth first.

    Paths as `get` reads them ("model.ssd.box_predictor", "...options[0]").
    """
    yield path, message
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        where = f"{path}.{field.name}" if path else field.name
        if is_repeated(field):
            for index, item in enumerate(value):
                yield from messages(item, f"{where}[{index}]")
        else:
            yield from messages(value, where)


def _walk(message, path: str):
    parts = path.split(".")
    for part in parts[:-1]:
        name, index = _PART.match(part).groups()
        message = getattr(message, name)
        if index is not None:
            message = message[int(index)]
    return message, parts[-1]


def get(config, path: str):
    """Value at a dotted field path (repeated fields come back as lists)."""
    parent, leaf = _walk(config, path)
    value = getattr(parent, leaf)
    if hasattr(value, "extend") and not isinstance(value, (str, bytes)):
        return list(value)
    return value


def has(config, path: str) -> bool:
    """Whether a singular field at `path` is explicitly set."""
    parent, leaf = _walk(config, path)
    try:
        return parent.HasField(leaf)
    except ValueError:  # repeated field
        return len(getattr(parent, leaf)) > 0


def set_value(config, path: str, value) -> None:
    """Sets the field at `path`; None clears it, a list replaces a repeated field."""
    parent, leaf = _walk(config, path)
    if value is None:
        parent.ClearField(leaf)
    elif isinstance(value, (list, tuple)):
        del getattr(parent, leaf)[:]
        getattr(parent, leaf).extend(value)
    else:
        field = parent.DESCRIPTOR.fields_by_name[leaf]
        if field.enum_type is not None and isinstance(value, str):
            value = field.enum_type.values_by_name[value].number
        setattr(parent, leaf, value)


def float_text(value: float) -> str:
    """The shortest decimal that reads back as the same float32: 0.6, not 0.6000000238418579.

    Most config numbers are proto `float` fields (float32); Python shows them widened to
    double, which is not what the user wrote.
    """
    packed = struct.pack("<f", value)
    for digits in range(1, 10):
        shorter = float(f"{value:.{digits}g}")
        if struct.pack("<f", shorter) == packed:
            return repr(shorter)
    return repr(value)


def display(config, path: str) -> str:
    """Human text of a field's value for change lists: enums by name, unset as '(unset)'."""
    parent, leaf = _walk(config, path)
    field = parent.DESCRIPTOR.fields_by_name[leaf]
    if not is_repeated(field) and field.has_presence and not parent.HasField(leaf):
        return "(unset)"
    value = getattr(parent, leaf)
    if field.enum_type is not None:
        return field.enum_type.values_by_number[value].name
    show = float_text if field.cpp_type == field.CPPTYPE_FLOAT else repr
    if is_repeated(field):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if field.cpp_type == field.CPPTYPE_FLOAT:
        return float_text(value)
    return repr(value) if isinstance(value, str) else str(value)
