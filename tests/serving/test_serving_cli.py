"""Command line and config files: TF Serving's flags and formats, refusals named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, write_models_config

from serving.cli import parse_flags
from serving.config import (
    BatchingConfig,
    ConfigError,
    VersionPolicy,
    read_batching_config,
    read_model_server_config,
    read_monitoring_config,
)


def test_single_model_flags_with_equals_syntax(tmp_path):
    options = parse_flags(
        [
            "--port=9000",
            "--rest_api_port=9001",
            "--model_name=intent",
            f"--model_base_path={tmp_path}",
            "--file_system_poll_wait_seconds=5",
            "--tensorflow_intra_op_parallelism=2",
            "--tensorflow_inter_op_parallelism=1",
        ]
    )
    assert options.endpoints.grpc_port == 9000 and options.endpoints.rest_port == 9001
    (model,) = options.models.models
    assert model.name == "intent" and model.base_path == str(tmp_path)
    assert model.policy == VersionPolicy("latest", 1)
    assert options.models.file_system_poll_wait_seconds == 5
    assert options.runtime.intra_op_parallelism == 2 and options.runtime.inter_op_parallelism == 1
    assert options.batching is None


def test_hardening_flags_and_their_tf_serving_defaults(tmp_path):
    defaults = parse_flags([f"--model_base_path={tmp_path}"])
    assert defaults.models.max_num_load_retries == 5 and defaults.models.load_retry_interval_seconds == 60.0
    assert defaults.endpoints.rest_timeout_seconds == 30.0
    options = parse_flags([
        f"--model_base_path={tmp_path}", "--max_num_load_retries=2", "--load_retry_interval_micros=500000",
        "--grpc_channel_arguments=grpc.max_connection_age_ms=2000,grpc.primary_user_agent=x",
        "--grpc_max_message_size=1048576", "--rest_api_max_body_bytes=4096", "--rest_api_num_threads=3",
        "--rest_api_timeout_in_ms=2500", "--rest_api_header_timeout_seconds=2", "--rest_api_body_timeout_seconds=4",
    ])
    assert options.models.max_num_load_retries == 2 and options.models.load_retry_interval_seconds == 0.5
    endpoints = options.endpoints
    assert endpoints.grpc_channel_arguments == (("grpc.max_connection_age_ms", 2000), ("grpc.primary_user_agent", "x"))
    assert endpoints.grpc_max_message_bytes == endpoints.max_tensor_bytes == 1048576
    assert (endpoints.rest.max_body_bytes, endpoints.rest.max_in_flight) == (4096, 3)
    assert (endpoints.rest.header_timeout_seconds, endpoints.rest.body_timeout_seconds) == (2, 4)
    assert endpoints.rest_timeout_seconds == 2.5
    from serving.server import grpc_server_arguments

    arguments = dict(grpc_server_arguments(endpoints))
    assert arguments["grpc.max_receive_message_length"] == 1048576 and arguments["grpc.max_connection_age_ms"] == 2000
    for bad in ("--grpc_channel_arguments=novalue", "--rest_api_num_threads=0", "--max_num_load_retries=-1"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            parse_flags([f"--model_base_path={tmp_path}", bad])


def test_rest_port_zero_disables_rest(tmp_path):
    options = parse_flags([f"--model_base_path={tmp_path}"])
    assert options.endpoints.rest_port is None and options.endpoints.grpc_port == 8500


def test_model_config_file_with_policies_and_labels(tmp_path):
    config = write_models_config(
        tmp_path / "models.config",
        {"a": tmp_path / "a", "b": tmp_path / "b", "c": tmp_path / "c"},
        extra={
            "a": "  model_version_policy { latest { num_versions: 2 } }\n",
            "b": "  model_version_policy { all {} }\n  version_labels { key: 'stable' value: 3 }\n",
            "c": "  model_version_policy { specific { versions: 1 versions: 4 } }\n",
        },
    )
    options = parse_flags([f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=30"])
    a, b, c = options.models.models
    assert a.policy.select([1, 2, 3]) == {2, 3}
    assert b.policy.select([1, 2, 3]) == {1, 2, 3} and b.version_labels == {"stable": 3}
    assert c.policy.select([1, 2, 3, 4, 5]) == {1, 4}
    assert options.models.model_config_file == config
    assert options.models.model_config_file_poll_wait_seconds == 30


def test_batching_and_monitoring_files(tmp_path):
    batching = tmp_path / "batching.config"
    batching.write_text(
        "max_batch_size { value: 16 }\nbatch_timeout_micros { value: 2000 }\n"
        "max_enqueued_batches { value: 4 }\nnum_batch_threads { value: 3 }\n"
        "allowed_batch_sizes: 4\nallowed_batch_sizes: 16\npad_variable_length_inputs: true\n"
    )
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true, path: "/metrics/here" }\n')
    options = parse_flags(
        [
            f"--model_base_path={tmp_path}",
            "--enable_batching",
            f"--batching_parameters_file={batching}",
            f"--monitoring_config_file={monitoring}",
        ]
    )
    assert options.batching == BatchingConfig(
        max_batch_size=16,
        batch_timeout_micros=2000,
        max_enqueued_batches=4,
        num_batch_threads=3,
        allowed_batch_sizes=(4, 16),
        pad_variable_length_inputs=True,
    )
    assert options.batching.padded_size(5) == 16 and options.batching.padded_size(3) == 4
    assert options.monitoring.prometheus_enabled and options.monitoring.prometheus_path == "/metrics/here"


def test_enable_batching_false_and_defaults(tmp_path):
    assert parse_flags([f"--model_base_path={tmp_path}", "--enable_batching=false"]).batching is None
    defaults = parse_flags([f"--model_base_path={tmp_path}", "--enable_batching=true"]).batching
    assert defaults.max_batch_size == 1000 and defaults.max_enqueued_batches == 10


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--no_such_flag=1"], "unknown flag --no_such_flag"),
        (["--rest_api_enable_cors_support=true"],
         "--rest_api_enable_cors_support of tensorflow_model_server is not supported"),
        (["--platform_config_file=x"], "--platform_config_file"),
        (["--port=abc"], "--port"),
        (["--enable_batching=maybe"], "--enable_batching"),
        ([], "nothing to serve"),
        (["--model_config_file=/no/such/file"], "/no/such/file"),
        (["--model_base_path=/m", "--port=8500", "--rest_api_port=8500"], "same as --port"),
        (["--model_base_path=/m", "--enable_batching", "--batching_parameters_file=/nope.config"], "/nope.config"),
    ],
)
def test_bad_flags_are_named(flags, message):
    with pytest.raises(ConfigError) as info:
        parse_flags(flags)
    assert message in str(info.value)


def test_flag_abbreviations_are_not_accepted(tmp_path):
    with pytest.raises(ConfigError, match="--model_base"):
        parse_flags([f"--model_base={tmp_path}"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model_config_list { config { name: 'a' base_path: '/a' bogus: 1 } }", 'no field named "bogus"'),
        ("model_config_list { config { name: 'a' } }", "model 'a' has no base_path"),
        ("model_config_list { config { base_path: '/a' } }", "has no name"),
        (
            "model_config_list { config { name: 'a' base_path: '/a' } config { name: 'a' base_path: '/b' } }",
            "configured twice",
        ),
        ("model_config_list { config { name: 'a' base_path: '/a' model_platform: 'onnx' } }", "'onnx'"),
        ("custom_model_config { }", "custom_model_config is not supported"),
        ("model_config_list { config { name: 'a' base_path: '/a' logging_config { } } }", "logging_config"),
        (
            "model_config_list { config { name: 'a' base_path: '/a' model_version_policy { specific { } } } }",
            "lists no versions",
        ),
    ],
)
def test_bad_model_config_files(tmp_path, text, message):
    path = tmp_path / "models.config"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_model_server_config(path)
    assert message in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_batch_size { value: 8 }\nallowed_batch_sizes: 4\n", "must equal max_batch_size"),
        ("max_batch_size { value: 8 }\nallowed_batch_sizes: 8\nallowed_batch_sizes: 4\n", "increasing"),
        ("max_batch_size { value: 0 }\n", "max_batch_size must be positive"),
        ("enable_large_batch_splitting { value: true }\n", "enable_large_batch_splitting"),
        ("max_batch_size: 8\n", "max_batch_size"),
    ],
)
def test_bad_batching_files(tmp_path, text, message):
    path = tmp_path / "batching.config"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_batching_config(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_bad_monitoring_file(tmp_path):
    path = tmp_path / "monitoring.config"
    path.write_text("prometheus_config { enable: yes_please }")
    with pytest.raises(ConfigError, match="monitoring config file"):
        read_monitoring_config(path)
    path.write_text('prometheus_config { enable: true path: "/v1/metrics" }')
    with pytest.raises(ConfigError, match="collides"):
        read_monitoring_config(path)


def test_command_refuses_unknown_flag_before_loading_anything():
    result = subprocess.run(
        [sys.executable, "-m", "serving", "--model_base_path=/tmp", "--grpc_socket_path=/tmp/s"],
        cwd=REPO,
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "--grpc_socket_path" in result.stderr and "not supported" in result.stderr


def test_command_reports_a_model_that_cannot_load(tmp_path):
    (tmp_path / "1").mkdir()  # a version directory without a SavedModel
    result = subprocess.run(
        [sys.executable, "-m", "serving", "--port=0", "--bind_address=127.0.0.1", f"--model_base_path={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Failed to start server" in result.stderr and "version 1" in result.stderr
    assert "saved_model.pb" in result.stderr or "SavedModel" in result.stderr


def test_help_lists_tensorflow_model_server_flags():
    result = subprocess.run(
        [sys.executable, "-m", "serving", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    for flag in ("--model_config_file_poll_wait_seconds", "--batching_parameters_file", "--monitoring_config_file"):
        assert flag in result.stdout


def test_infra_files_are_accepted():
    infra = Path(REPO) / "infra" / "serving"
    names = [m.name for m in read_model_server_config(infra / "models.config")]
    assert names[:2] == ["intent", "sentiment"]
    batching = read_batching_config(infra / "batching.config")
    assert batching.max_batch_size >= 1
    assert read_monitoring_config(infra / "monitoring.config").prometheus_enabled
