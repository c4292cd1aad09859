"""Compression variants of the tiny intent teacher: made, judged against it, pushed, served."""

import json
from pathlib import Path

import numpy as np
import pytest

from serving.client import ClientConfig, ServingClient
from serving.servable import Servable
from serving.warmup import run_warmup
from tests.conftest import start_model_server, tiny_config
from tfx_pipeline.cli import format_run
from tfx_pipeline.compression.students import load_teacher
from tfx_pipeline.evaluation.predict import predict_probabilities
from tfx_pipeline.model.export import matmul_dtypes
from tfx_pipeline.model.transform_graph import load_transform_graph
from tfx_pipeline.model_versions import versions
from tfx_pipeline.pipeline import create_pipeline
from tfx_pipeline.runner import LocalDagRunner

TEXTS = ["My new card still hasn't arrived", "I want to close my account", "how do I change my pin"]
# int8 kernels with activations quantized per row: probabilities within this of the fp32 teacher's.
INT8_TOLERANCE = 0.05
# bfloat16 keeps 8 bits of mantissa: about 2-3 significant digits.
BF16_TOLERANCE = 0.05

VARIANTS = [
    # One of the tiny teacher's two layers, distilled.
    {"name": "fast", "num_layers": 1, "epochs": 3, "learning_rate": 1e-3},
    {"name": "int8", "int8": True},
    {"name": "bf16", "precision": "bfloat16"},
    # A learning rate that wrecks the student: its accuracy falls far past the allowed drop.
    {"name": "wrecked", "num_layers": 1, "epochs": 1, "learning_rate": 5.0},
]


def component(record, component_id):
    return next(c for c in record["components"] if c["id"] == component_id)


def variant_evaluation(record, name):
    uri = component(record, f"VariantEvaluator.{name}")["artifacts"]["variant_evaluation"]["uri"]
    return json.loads((Path(uri) / "evaluation.json").read_text())


@pytest.fixture(scope="module")
def compressed(trained_suite, demo_data_dir):
    """The intent pipeline again, now with variants: only the compression steps run."""
    config = tiny_config("intent", demo_data_dir, trained_suite.work_dir, compression={
        "variants": VARIANTS,
        # Speed-ups of a 2-layer, 64-wide model are noise; the speed rule is tested in judge.py's doctest.
        "thresholds": {"max_accuracy_drop": 0.1, "min_speedup_batch_1": 0.0, "min_speedup_served_batch": 0.0},
        "served_batch_size": 8, "measure_seconds": 0.3, "measure_rounds": 1, "price_per_core_hour": 0.05})
    return config, LocalDagRunner().run(create_pipeline(config))


def test_the_teacher_rebuilt_from_its_saved_model_computes_what_it_serves(trained_suite, demo_data_dir):
    import tensorflow as tf

    config = tiny_config("intent", demo_data_dir, trained_suite.work_dir)
    record = trained_suite.records["intent"]
    model_dir = component(record, "Trainer")["artifacts"]["model"]["uri"]
    preprocessor, class_names = load_transform_graph(
        component(record, "Transform")["artifacts"]["transform_graph"]["uri"])
    teacher = load_teacher(model_dir, config.model, len(class_names), preprocessor.vocabulary_size)
    rebuilt = tf.nn.softmax(teacher(preprocessor(tf.constant(TEXTS)), training=False)).numpy()
    served, _ = predict_probabilities(Path(model_dir), TEXTS)
    np.testing.assert_allclose(rebuilt, served, atol=1e-5)


def test_variants_follow_the_teacher_and_only_the_compression_steps_run(compressed):
    _, record = compressed
    assert record["status"] == "succeeded"
    ids = [c["id"] for c in record["components"]]
    assert ids[-12:] == [f"{kind}.{name}" for name in ("fast", "int8", "bf16", "wrecked")
                        for kind in ("Compressor", "VariantEvaluator", "Pusher")]
    assert all(c["cached"] for c in record["components"][:6])  # The teacher is not trained again.
    assert record["pushed_version"] == 1  # The teacher's own servable is untouched.


def test_a_distilled_student_has_fewer_layers_and_the_teacher_signatures(compressed, trained_suite):
    _, record = compressed
    made = component(record, "Compressor.fast")["artifacts"]["variant_model"]["properties"]
    assert made["made"] and made["summary"]["num_layers"] == 1 and made["summary"]["kept_teacher_layers"] == [1]
    student = Servable.load("intent_fast", 1, trained_suite.model_base_path / "intent_fast" / "1")
    teacher = Servable.load("intent", 1, trained_suite.model_base_path / "intent" / "1")
    for key in ("serving_default", "classify", "tokenize"):
        assert student.signatures[key] == teacher.signatures[key]
    evaluation = variant_evaluation(record, "fast")
    assert evaluation["blessed"], evaluation["reason"]
    assert evaluation["comparison"]["accuracy_drop"] <= 0.1
    assert evaluation["variant"]["size_mib"] < evaluation["teacher"]["size_mib"]


def test_the_int8_variant_agrees_with_its_teacher(compressed):
    _, record = compressed
    comparison = variant_evaluation(record, "int8")["comparison"]
    assert comparison["max_probability_difference"] <= INT8_TOLERANCE
    assert comparison["agreement"] >= 0.95


def test_the_bfloat16_variant_computes_in_bfloat16_and_agrees_with_its_float32_teacher(compressed, trained_suite):
    _, record = compressed
    comparison = variant_evaluation(record, "bf16")["comparison"]
    assert comparison["max_probability_difference"] <= BF16_TOLERANCE
    assert comparison["agreement"] >= 0.95
    exported = component(record, "Compressor.bf16")["artifacts"]["variant_model"]["uri"]
    assert matmul_dtypes(Path(exported)) == {"bfloat16"}
    assert matmul_dtypes(trained_suite.model_base_path / "intent" / "1") == {"float32"}


def test_a_variant_past_the_accuracy_threshold_is_not_pushed(compressed, trained_suite):
    _, record = compressed
    evaluation = variant_evaluation(record, "wrecked")
    assert evaluation["comparison"]["accuracy_drop"] > 0.1
    assert not evaluation["blessed"] and "accuracy drop" in evaluation["reason"]
    assert record["variants"]["wrecked"]["pushed_version"] is None
    assert versions(trained_suite.model_base_path / "intent_wrecked") == []


def test_cost_per_million_is_in_the_run_record(compressed):
    _, record = compressed
    fast = record["variants"]["fast"]
    assert fast["blessed"] and fast["pushed_version"] == 1 and fast["model_name"] == "intent_fast"
    metrics = fast["metrics"]
    for key in ("cost_per_million", "teacher_cost_per_million"):
        assert 0 < metrics[key] < 100
    evaluation = variant_evaluation(record, "fast")
    rate = evaluation["variant"]["examples_per_second"]["8"]
    assert metrics["cost_per_million"] == pytest.approx(1e6 / rate / 3600 * 0.05, rel=1e-3)
    assert evaluation["variant"]["peak_memory_mib"] > 0
    assert "variant fast: version 1 of intent_fast: accuracy" in format_run(record)  # `suite-pipeline run`
    assert "cost per 1M predictions" in Path(component(record, "VariantEvaluator.fast")["artifacts"][
        "variant_evaluation"]["properties"]["report"]).read_text()


def test_a_rerun_is_cached_and_pushes_nothing_again(compressed):
    config, first = compressed
    second = LocalDagRunner().run(create_pipeline(config))
    assert all(c["cached"] for c in second["components"])
    assert second["variants"]["fast"]["pushed_version"] == first["variants"]["fast"]["pushed_version"]


def test_the_server_serves_a_pushed_variant(compressed, trained_suite, tmp_path):
    base = trained_suite.model_base_path
    assert run_warmup(Servable.load("intent_fast", 1, base / "intent_fast" / "1")) == 4
    server = start_model_server(base, ("intent_fast",), tmp_path)
    try:
        with ServingClient(ClientConfig(address=server.grpc_address)) as client:
            served = client.predict("intent_fast", TEXTS)
            assert served.version == 1
            assert served.to_python()["class_names"] == ["card_arrival", "terminate_account", "change_pin"]
            rows = client.classify("intent_fast", [{"text": text} for text in TEXTS], signature="classify")
            assert all(abs(sum(score for _, score in row) - 1) < 1e-4 for row in rows)
            assert {"serving_default", "classify", "tokenize"} <= set(client.signatures("intent_fast"))
        np.testing.assert_allclose(served.outputs["probabilities"].sum(axis=1), 1.0, atol=1e-4)
    finally:
        server.stop(drain_timeout_seconds=5)
