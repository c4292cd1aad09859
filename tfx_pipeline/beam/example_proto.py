"""`tf.train.Example` as plain protobuf messages, without importing TensorFlow.

Importing `tensorflow.core.example.example_pb2` imports all of TensorFlow
(about 4 s of CPU), in every Beam worker process of every step; ExampleGen
and ExampleValidator only read and write examples. These messages are built
from the same schema (tensorflow/core/example/{feature,example}.proto: same
field numbers and types, proto3), in a pool of their own, so their bytes are
TensorFlow's bytes; a test compares them.

Example:

>>> example = Example()
>>> example.features.feature["text"].bytes_list.value.append(b"hi")
>>> Example.FromString(example.SerializeToString()).features.feature["text"].bytes_list.value[0]
b'hi'
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = "suite_example"  # Not `tensorflow`: TensorFlow's own messages may be in the process too.
_Field = descriptor_pb2.FieldDescriptorProto


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name="suite_example/example.proto", package=_PACKAGE, syntax="proto3")

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> descriptor_pb2.DescriptorProto:
        added = proto.message_type.add(name=name)
        for field_name, number, label, kind, type_name in fields:
            field = added.field.add(name=field_name, number=number, label=label, type=kind)
            if type_name:
                field.type_name = type_name
        return added

    repeated, optional = _Field.LABEL_REPEATED, _Field.LABEL_OPTIONAL
    message("BytesList", ("value", 1, repeated, _Field.TYPE_BYTES, ""))
    message("FloatList", ("value", 1, repeated, _Field.TYPE_FLOAT, ""))
    message("Int64List", ("value", 1, repeated, _Field.TYPE_INT64, ""))
    feature = message("Feature", *((name, number, optional, _Field.TYPE_MESSAGE, f".{_PACKAGE}.{kind}")
                                   for name, number, kind in (("bytes_list", 1, "BytesList"),
                                                              ("float_list", 2, "FloatList"),
                                                              ("int64_list", 3, "Int64List"))))
    feature.oneof_decl.add(name="kind")
    for field in feature.field:
        field.oneof_index = 0
    features = message("Features", ("feature", 1, repeated, _Field.TYPE_MESSAGE, f".{_PACKAGE}.Features.FeatureEntry"))
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, label=optional, type=_Field.TYPE_STRING)
    entry.field.add(name="value", number=2, label=optional, type=_Field.TYPE_MESSAGE, type_name=f".{_PACKAGE}.Feature")
    message("Example", ("features", 1, optional, _Field.TYPE_MESSAGE, f".{_PACKAGE}.Features"))
    return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
Example = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.Example"))
