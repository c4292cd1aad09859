"""The training recipe's options on a tiny BERT: layer-wise learning rates,
label smoothing and soft targets, weight averaging, class weights, ensembles
(averaged and distilled), bfloat16 and the CPU benchmark that chooses it."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import tiny_config
from tfx_pipeline.evaluation.predict import load_saved_model, predict_probabilities
from tfx_pipeline.model.cpu_tuning import has_bfloat16
from tfx_pipeline.model.export import MODEL_VARIABLES
from tfx_pipeline.model.optimization import LayerwiseAdamW, layerwise_rate_multipliers
from tfx_pipeline.model.tasks import build_ensemble_average, build_text_classifier
from tfx_pipeline.pipeline import create_pipeline
from tfx_pipeline.runner import LocalDagRunner

TEXTS = ["my card has not arrived yet", "what is the exchange rate today", "I want to close my account"]


def tiny_backbone(num_layers: int = 3) -> keras_hub.models.BertBackbone:
    return keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=num_layers, num_heads=1, hidden_dim=8,
                                         intermediate_dim=16, max_sequence_length=16)


def features(batch: int = 8, length: int = 12):
    ids = np.random.default_rng(0).integers(1, 50, size=(batch, length)).astype("int32")
    return {"token_ids": ids, "padding_mask": np.ones_like(ids), "segment_ids": np.zeros_like(ids)}


def test_layer_decay_scales_each_layers_update():
    """Adam's first step moves a weight by about its learning rate: the layers'
    steps stand in the configured ratios (decay 0.5 per layer, head x4)."""
    keras.utils.set_random_seed(1)
    backbone = tiny_backbone(num_layers=3)
    model = build_text_classifier(backbone, num_classes=3, dropout=0.0)
    rates = layerwise_rate_multipliers(model, backbone, layer_decay=0.5, head_multiplier=4.0)
    optimizer = LayerwiseAdamW(rate_multipliers=rates, learning_rate=1e-3, weight_decay=0.0)
    model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(from_logits=True))

    def kernel(name: str):
        return next(v for v in model.trainable_variables if v.path.startswith(name) and v.path.endswith(
            "feedforward_output_dense/kernel" if "transformer" in name else "kernel"))

    names = ["transformer_layer_0", "transformer_layer_1", "transformer_layer_2", "logits"]
    before = {name: kernel(name).numpy().copy() for name in names}
    model.train_on_batch(features(), keras.utils.to_categorical([0, 1, 2, 0, 1, 2, 0, 1], 3))
    step = {name: float(np.median(np.abs(kernel(name).numpy() - before[name]))) for name in names}

    assert step["transformer_layer_2"] == pytest.approx(1e-3, rel=0.05)
    assert step["transformer_layer_1"] / step["transformer_layer_2"] == pytest.approx(0.5, rel=0.05)
    assert step["transformer_layer_0"] / step["transformer_layer_2"] == pytest.approx(0.25, rel=0.05)
    assert step["logits"] / step["transformer_layer_2"] == pytest.approx(4.0, rel=0.05)
    embedding = next(v for v in model.trainable_variables if v.path.startswith("position_embedding"))
    assert rates[id(embedding)] == 0.125


def test_ensemble_average_is_the_mean_of_its_members_probabilities():
    members = []
    for seed in (1, 2, 3):
        keras.utils.set_random_seed(seed)
        members.append(build_text_classifier(tiny_backbone(1), num_classes=4))
    ensemble = build_ensemble_average(members)
    inputs = features()
    expected = np.mean([tf.nn.softmax(m(inputs, training=False)).numpy() for m in members], axis=0)
    got = tf.nn.softmax(ensemble(inputs, training=False)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert not np.allclose(expected, tf.nn.softmax(members[0](inputs, training=False)).numpy(), atol=1e-3)


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory) -> Path:
    """One pipeline root for the module: the data components run once, each test trains its own model."""
    return tmp_path_factory.mktemp("recipe")


def run_intent(demo_data_dir: Path, work: Path, models: Path | None = None, **overrides) -> dict:
    config = tiny_config("intent", demo_data_dir, work, **{
        "training.epochs": 2, "evaluation.thresholds.lower_bound": 0.0,
        **({"push.model_base_path": str(models)} if models else {}), **overrides})
    record = LocalDagRunner().run(create_pipeline(config))
    assert record["status"] == "succeeded"
    return record


def trainer_summary(record: dict) -> dict:
    trainer = next(c for c in record["components"] if c["id"] == "Trainer")
    return trainer["artifacts"]["model_run"]["properties"]


def model_dir(record: dict) -> Path:
    trainer = next(c for c in record["components"] if c["id"] == "Trainer")
    return Path(trainer["artifacts"]["model"]["uri"])


def test_recipe_options_train_and_export_the_same_signature(demo_data_dir, shared_root, tmp_path):
    """Layer decay, a faster head, label smoothing, balanced class weights and a
    weight average all in one run: it trains, and the export is unchanged."""
    record = run_intent(demo_data_dir, shared_root, tmp_path, **{
        "training.layer_decay": 0.8, "training.head_learning_rate_multiplier": 5.0,
        "training.label_smoothing": 0.1, "training.class_weighting": "balanced", "training.ema_momentum": 0.9,
        "training.early_stopping_monitor": "val_accuracy", "model.pooling": "mean_cls", "training.epochs": 3})
    summary = trainer_summary(record)
    assert summary["epochs_run"] == 3
    losses = summary["history"]["loss"]
    assert losses[-1] < losses[0]
    assert record["metrics"]["accuracy"] >= 0.5  # 8 classes: chance is 0.125.
    signature = load_saved_model(model_dir(record)).signatures["serving_default"]
    assert set(signature.structured_outputs) == {"probabilities", "class_ids", "class_names", "all_class_names"}
    probabilities, names = predict_probabilities(model_dir(record), TEXTS)
    assert probabilities.shape == (3, len(names)) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("mode", ["average", "distill"])
def test_ensemble_exports_one_model_with_the_teachers_signature(demo_data_dir, shared_root, tmp_path, mode):
    record = run_intent(demo_data_dir, shared_root, tmp_path, **{
        "training.ensemble.members": 2, "training.ensemble.mode": mode, "training.epochs": 1})
    summary = trainer_summary(record)
    assert [m["seed"] for m in summary["members"]] == [42, 43]
    trainer = next(c for c in record["components"] if c["id"] == "Trainer")
    backups = {p.name for p in (Path(trainer["artifacts"]["model"]["uri"]).parent / "backup").iterdir()}
    assert {"member_0.weights.h5", "member_1.weights.h5"} <= backups
    signature = load_saved_model(model_dir(record)).signatures["serving_default"]
    assert set(signature.structured_outputs) == {"probabilities", "class_ids", "class_names", "all_class_names"}
    variables = getattr(load_saved_model(model_dir(record)), MODEL_VARIABLES)
    embedding_tables = [v for v in variables if "token_embedding" in v.name]
    # The average serves both members; the distilled student is one model of the members' size.
    assert len(embedding_tables) == (2 if mode == "average" else 1)
    if mode == "distill":
        assert summary["seed"] == 44 and summary["epochs_run"] == 1 + 1 + 1
    assert record["metrics"]["accuracy"] >= 0.25  # Twice chance (8 classes) after one epoch of each model.


@pytest.mark.skipif(not has_bfloat16(), reason="this CPU has no bfloat16 instructions (no avx512_bf16/amx_bf16 flag)")
def test_bfloat16_training_on_a_cpu_that_has_it(demo_data_dir, shared_root, tmp_path):
    record = run_intent(demo_data_dir, shared_root, tmp_path, **{"training.distribution.precision": "mixed_bfloat16"})
    summary = trainer_summary(record)
    assert summary["precision"] == "mixed_bfloat16"
    assert summary["history"]["loss"][-1] < summary["history"]["loss"][0]
    probabilities, _ = predict_probabilities(model_dir(record), TEXTS)
    assert probabilities.dtype == np.float32 and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)


def test_cpu_tuning_benchmarks_once_and_remembers_the_fastest(demo_data_dir, tmp_path):
    record = run_intent(demo_data_dir, tmp_path, **{"training.cpu_tuning": "auto", "training.epochs": 1})
    tuning = trainer_summary(record)["cpu_tuning"]
    measured = tuning["measured"]
    assert len(measured) == (4 if has_bfloat16() else 2)
    fastest = max(measured, key=lambda m: m["examples_per_second"])
    assert tuning["chosen"] == {"jit_compile": fastest["jit_compile"], "precision": fastest["precision"]}
    assert trainer_summary(record)["precision"] == fastest["precision"]
    cache = json.loads((tmp_path / "pipelines" / "intent" / "state" / "cpu_tuning.json").read_text())
    assert [entry["chosen"] for entry in cache.values()] == [tuning["chosen"]]

    again = run_intent(demo_data_dir, tmp_path, **{"training.cpu_tuning": "auto", "training.epochs": 1,
                                                   "training.seed": 7})
    assert trainer_summary(again)["cpu_tuning"]["cached"] is True


def test_a_shallower_backbone_keeps_evenly_spaced_pretrained_layers():
    """`model.backbone.num_layers: 3` cuts MiniLM's 6 layers to its layers 1, 3 and 5, with its embeddings."""
    from tfx_pipeline.config import BackboneConfig
    from tfx_pipeline.model.backbone import load_backbone

    full = load_backbone(BackboneConfig(), vocabulary_size=0, max_sequence_length=64)
    shallow = load_backbone(BackboneConfig(num_layers=3), vocabulary_size=0, max_sequence_length=64)
    assert shallow.num_layers == 3 and shallow.count_params() < full.count_params()
    for student, teacher in ((0, 1), (1, 3), (2, 5)):
        for mine, theirs in zip(shallow.get_layer(f"transformer_layer_{student}").weights,
                                full.get_layer(f"transformer_layer_{teacher}").weights):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    np.testing.assert_array_equal(shallow.get_layer("token_embedding").weights[0].numpy(),
                                  full.get_layer("token_embedding").weights[0].numpy())
