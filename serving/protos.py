"""Message types for TF Serving config files that the pip packages do not ship.

``tensorflow-serving-api`` ships the API and ``ModelServerConfig`` protos but
not ``BatchingParameters`` (session_bundle_config.proto), ``MonitoringConfig``
(monitoring_config.proto) or ``SSLConfig`` (ssl_config.proto).  They are
declared here with the same package, names, field numbers and types as
upstream, so the text files written for ``tensorflow_model_server`` parse
unchanged.  They live in a private descriptor pool: if a later package ships
the real ones, nothing collides.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

_F = descriptor_pb2.FieldDescriptorProto


def _field(name: str, number: int, kind: int, *, type_name: str = "",
           repeated: bool = False) -> descriptor_pb2.FieldDescriptorProto:
    field = _F(name=name, number=number, type=kind)
    field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        field.type_name = type_name
    return field


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)

    batching = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    params = batching.message_type.add(name="BatchingParameters")
    int64_value = ".google.protobuf.Int64Value"
    params.field.extend(
        [
            _field("max_batch_size", 1, _F.TYPE_MESSAGE, type_name=int64_value),
            _field("batch_timeout_micros", 2, _F.TYPE_MESSAGE, type_name=int64_value),
            _field("max_enqueued_batches", 3, _F.TYPE_MESSAGE, type_name=int64_value),
            _field("num_batch_threads", 4, _F.TYPE_MESSAGE, type_name=int64_value),
            _field("thread_pool_name", 5, _F.TYPE_MESSAGE, type_name=".google.protobuf.StringValue"),
            _field("allowed_batch_sizes", 6, _F.TYPE_INT64, repeated=True),
            _field("pad_variable_length_inputs", 7, _F.TYPE_BOOL),
            _field("enable_large_batch_splitting", 9, _F.TYPE_BOOL),
            _field("max_execution_batch_size", 10, _F.TYPE_MESSAGE, type_name=int64_value),
        ]
    )
    pool.Add(batching)

    monitoring = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
    )
    prometheus = monitoring.message_type.add(name="PrometheusConfig")
    prometheus.field.extend([_field("enable", 1, _F.TYPE_BOOL), _field("path", 2, _F.TYPE_STRING)])
    config = monitoring.message_type.add(name="MonitoringConfig")
    config.field.append(
        _field("prometheus_config", 1, _F.TYPE_MESSAGE, type_name=".tensorflow.serving.PrometheusConfig")
    )
    pool.Add(monitoring)

    ssl = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/ssl_config.proto", package="tensorflow.serving", syntax="proto3"
    )
    ssl_config = ssl.message_type.add(name="SSLConfig")
    ssl_config.field.extend(
        [
            _field("server_key", 1, _F.TYPE_STRING),
            _field("server_cert", 2, _F.TYPE_STRING),
            _field("custom_ca", 3, _F.TYPE_STRING),
            _field("client_verify", 4, _F.TYPE_BOOL),
        ]
    )
    pool.Add(ssl)
    return pool


_POOL = _build_pool()

BatchingParameters = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("tensorflow.serving.BatchingParameters")
)
MonitoringConfig = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))
SSLConfig = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("tensorflow.serving.SSLConfig"))
