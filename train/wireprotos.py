"""The few TensorFlow protos the preflight reads, declared here so it needs no TF import.

Importing `tensorflow.core.*_pb2` imports all of TensorFlow (seconds). The preflight needs
only `BundleEntryProto` (checkpoint index entries) and `Example` (TFRecord contents); they are
declared field for field as TensorFlow defines them (tensor_bundle.proto, example.proto,
feature.proto, tensor_shape.proto) in a private descriptor pool, so they never clash with
TensorFlow's own classes when both are loaded.
"""

from __future__ import annotations

import functools

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _message(file, name, fields, nested=()):
    return _fill(file.message_type.add(name=name), fields, nested)


def _fill(message, fields, nested):
    for spec in nested:
        _fill(message.nested_type.add(name=spec[0]), spec[1], spec[2] if len(spec) > 2 else ())
    for number, name, kind, label, type_name, *options in fields:
        field = message.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            field.type_name = type_name
        if options and options[0] == "packed":
            field.options.packed = True
    return message


def _checkpoint_messages(file) -> None:
    """tensorflow/core/protobuf/tensor_bundle.proto's messages (a checkpoint's .index)."""
    opt, rep = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    _message(
        file,
        "TensorShapeProto",
        [
            (2, "dim", _F.TYPE_MESSAGE, rep, ".tfod_finetune_wire.TensorShapeProto.Dim"),
            (3, "unknown_rank", _F.TYPE_BOOL, opt, None),
        ],
        nested=[
            ("Dim", [(1, "size", _F.TYPE_INT64, opt, None), (2, "name", _F.TYPE_STRING, opt, None)])
        ],
    )
    _message(
        file,
        "BundleEntryProto",
        [
            (1, "dtype", _F.TYPE_INT32, opt, None),
            (2, "shape", _F.TYPE_MESSAGE, opt, ".tfod_finetune_wire.TensorShapeProto"),
            (3, "shard_id", _F.TYPE_INT32, opt, None),
            (4, "offset", _F.TYPE_INT64, opt, None),
            (5, "size", _F.TYPE_INT64, opt, None),
            (6, "crc32c", _F.TYPE_FIXED32, opt, None),
        ],
    )
    _message(
        file,
        "BundleHeaderProto",
        [
            (1, "num_shards", _F.TYPE_INT32, opt, None),
            (2, "endianness", _F.TYPE_INT32, opt, None),
        ],
    )


def _example_messages(file) -> None:
    """tensorflow/core/example/{example,feature}.proto's messages (a TFRecord's records)."""
    opt, rep = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    _message(file, "BytesList", [(1, "value", _F.TYPE_BYTES, rep, None)])
    _message(file, "FloatList", [(1, "value", _F.TYPE_FLOAT, rep, None, "packed")])
    _message(file, "Int64List", [(1, "value", _F.TYPE_INT64, rep, None, "packed")])
    feature = _message(
        file,
        "Feature",
        [
            (1, "bytes_list", _F.TYPE_MESSAGE, opt, ".tfod_finetune_wire.BytesList"),
            (2, "float_list", _F.TYPE_MESSAGE, opt, ".tfod_finetune_wire.FloatList"),
            (3, "int64_list", _F.TYPE_MESSAGE, opt, ".tfod_finetune_wire.Int64List"),
        ],
    )
    feature.oneof_decl.add(name="kind")
    for field in feature.field:
        field.oneof_index = 0
    features = _message(
        file,
        "Features",
        [
            (1, "feature", _F.TYPE_MESSAGE, rep, ".tfod_finetune_wire.Features.FeatureEntry"),
        ],
        nested=[
            (
                "FeatureEntry",
                [
                    (1, "key", _F.TYPE_STRING, opt, None),
                    (2, "value", _F.TYPE_MESSAGE, opt, ".tfod_finetune_wire.Feature"),
                ],
            )
        ],
    )
    features.nested_type[0].options.map_entry = True
    _message(
        file,
        "Example",
        [
            (1, "features", _F.TYPE_MESSAGE, opt, ".tfod_finetune_wire.Features"),
        ],
    )


@functools.lru_cache(maxsize=1)
def _classes():
    file = descriptor_pb2.FileDescriptorProto(
        name="tfod_finetune_wire.proto", package="tfod_finetune_wire", syntax="proto3"
    )
    _checkpoint_messages(file)
    _example_messages(file)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"tfod_finetune_wire.{name}")
        )
        for name in ("BundleEntryProto", "BundleHeaderProto", "Example")
    }


def bundle_entry():
    """The BundleEntryProto class."""
    return _classes()["BundleEntryProto"]


def bundle_header():
    """The BundleHeaderProto class."""
    return _classes()["BundleHeaderProto"]


def example():
    """The tf.train.Example class (wire-compatible)."""
    return _classes()["Example"]
