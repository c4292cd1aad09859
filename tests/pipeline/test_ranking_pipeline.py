"""The ranking tasks end to end on the demo catalog: mined rows (from the hybrid list too),
query-grouped splits, the embedder's and re-ranker's serving signatures, and the evaluation
on the app's task (full-corpus retrieval; re-ranking the hybrid top N)."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from suite_core.beir import BeirDataset
from tests.conftest import RANKING_MODELS, tiny_config
from tfx_pipeline.dsl import PipelineError
from tfx_pipeline.evaluation.predict import load_saved_model
from tfx_pipeline.pipeline import create_pipeline
from tfx_pipeline.runner import LocalDagRunner


def component(record: dict, component_id: str) -> dict:
    return next(c for c in record["components"] if c["id"] == component_id)


def artifact_uri(record: dict, component_id: str, key: str) -> Path:
    return Path(component(record, component_id)["artifacts"][key]["uri"])


def mined_rows(record: dict) -> list[dict]:
    rows_file = artifact_uri(record, "HardNegativeMiner", "rows") / "rows.jsonl"
    return [json.loads(line) for line in rows_file.read_text().splitlines()]


def test_pipeline_lists_the_miner_first_for_beir_data(demo_data_dir, tmp_path):
    config = tiny_config("catalog_reranker", demo_data_dir, tmp_path)
    assert [c.id for c in create_pipeline(config).components][:2] == ["HardNegativeMiner", "ExampleGen"]


def test_mined_rows_keep_every_judgement_and_never_label_a_relevant_item_negative(trained_ranking_models,
                                                                                   demo_data_dir):
    catalog = BeirDataset.load(demo_data_dir / "catalog", "train")
    for task in RANKING_MODELS:
        rows = mined_rows(trained_ranking_models.records[task])
        relevant = {(r["query_id"], r["item_id"]) for r in rows if r["label"] == "relevant"}
        assert relevant == {(q, d) for q in catalog.queries for d in catalog.relevant(q)}
        negatives = [r for r in rows if r["label"] == "irrelevant"]
        assert negatives and not {(r["query_id"], r["item_id"]) for r in negatives} & relevant
        per_query = {}
        for r in rows:
            per_query.setdefault(r["query_id"], set()).add(r["item_id"])
        assert sum(len(items) for items in per_query.values()) == len(rows)  # No item twice for a query.
    reranker_rows = mined_rows(trained_ranking_models.records["catalog_reranker"])
    # The re-ranker's negatives also come from the hybrid list of BM25 and the embedder pushed just before it.
    assert {r["source"] for r in reranker_rows} == {"qrels", "bm25", "hybrid"}


def test_hybrid_mining_takes_negatives_found_by_both_retrievers(trained_ranking_models, demo_data_dir):
    from tfx_pipeline.ranking.mining import Bm25Retriever
    catalog = BeirDataset.load(demo_data_dir / "catalog", "train")
    doc_ids = list(catalog.corpus)
    bm25 = Bm25Retriever([catalog.document_text(d) for d in doc_ids])
    hybrid = [r for r in mined_rows(trained_ranking_models.records["catalog_reranker"]) if r["source"] == "hybrid"]
    found_by = [set(r["found_by"].split("+")) for r in hybrid]
    # Some negatives come from BM25's list, some only from the embedder's (BM25 did not find them at all).
    assert any("bm25" in f for f in found_by) and any(f == {"embedder"} for f in found_by)
    for row, retrievers in zip(hybrid, found_by):
        in_bm25 = row["item_id"] in {doc_ids[i] for i in bm25.top_k([row["query"]], 100)[0]}
        assert ("bm25" in retrievers) == in_bm25
    stats = json.loads((artifact_uri(trained_ranking_models.records["catalog_reranker"], "HardNegativeMiner", "rows")
                        / "mining.json").read_text())
    assert stats["negatives_hybrid"] == len(hybrid) and stats["hybrid_found_by_embedder"] > 0


def test_all_rows_of_a_query_land_in_one_split(trained_ranking_models):
    from tfx_pipeline.beam.examples import read_split_rows
    record = trained_ranking_models.records["catalog_reranker"]
    examples = artifact_uri(record, "ExampleGen", "examples")
    queries = {split: {row["query_id"] for row in read_split_rows(examples, split)} for split in ("train", "eval")}
    assert queries["train"] and queries["eval"] and not queries["train"] & queries["eval"]


def test_the_pairwise_reranker_trains_on_each_querys_relevant_negative_pairs(trained_ranking_models):
    from tfx_pipeline.beam.examples import read_split_rows
    record = trained_ranking_models.records["catalog_reranker"]
    rows = read_split_rows(artifact_uri(record, "ExampleValidator", "examples"), "train")
    per_query: dict[str, list[int]] = {}
    for row in rows:
        counts = per_query.setdefault(row["query_id"], [0, 0])
        counts[row["label"] != "relevant"] += 1
    expected = sum(max(p, n) for p, n in per_query.values() if p and n)
    transform = component(record, "Transform")["artifacts"]["transformed_examples"]
    assert transform["properties"]["split_counts"]["train"] == expected > len(per_query)
    history = component(record, "Trainer")["artifacts"]["model_run"]["properties"]["history"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history)  # pairwise accuracy
    assert history["loss"][-1] < history["loss"][0]


def test_the_embedder_trains_on_every_mined_negative_once(trained_ranking_models):
    from tfx_pipeline.beam.examples import read_split_rows
    record = trained_ranking_models.records["catalog_embedder"]
    rows = read_split_rows(artifact_uri(record, "ExampleValidator", "examples"), "train")
    per_query: dict[str, list[int]] = {}
    for row in rows:
        per_query.setdefault(row["query_id"], [0, 0])[row["label"] != "relevant"] += 1
    # (query, relevant item, negative) triples: one per negative, relevant items round-robin.
    expected = sum(max(p, n, 1) for p, n in per_query.values() if p)
    transform = component(record, "Transform")["artifacts"]["transformed_examples"]
    assert transform["properties"]["split_counts"]["train"] == expected > sum(p for p, _ in per_query.values())


def test_embedder_serves_unit_vectors_that_rank_the_relevant_item_first(trained_ranking_models):
    model = load_saved_model(trained_ranking_models.model_base_path / "catalog_embedder" / "1")
    signature = model.signatures["serving_default"]
    assert list(signature.structured_input_signature[1]) == ["text"]
    vectors = signature(text=tf.constant(["a tent that survives rain", "Kestrel waterproof tent. A waterproof tent",
                                          "Lumen quiet blender. A quiet blender for making smoothies"]))["embedding"]
    vectors = vectors.numpy()
    assert vectors.shape[0] == 3 and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_reranker_serves_a_score_per_aligned_pair(trained_ranking_models):
    model = load_saved_model(trained_ranking_models.model_base_path / "catalog_reranker" / "1")
    signature = model.signatures["serving_default"]
    assert set(signature.structured_input_signature[1]) == {"query", "item_text"}
    out = signature(query=tf.constant(["quiet blender", "quiet blender"]),
                    item_text=tf.constant(["A quiet blender for smoothies", "A waterproof tent"]))
    score, probability = out["score"].numpy(), out["probability"].numpy()
    assert score.shape == probability.shape == (2,)
    np.testing.assert_allclose(probability, 1 / (1 + np.exp(-score)), atol=1e-5)  # Softmax of 2 = sigmoid of the gap.


def test_ranking_evaluation_blesses_by_ndcg_and_warms_up_with_the_signature_inputs(trained_ranking_models):
    from tensorflow_serving.apis import prediction_log_pb2
    for task, inputs, system in (("catalog_embedder", {"text"}, "embedder"),
                                 ("catalog_reranker", {"query", "item_text"}, "hybrid+rerank")):
        record = trained_ranking_models.records[task]
        evaluation = json.loads((artifact_uri(record, "Evaluator", "evaluation") / "evaluation.json").read_text())
        assert evaluation["blessed"] and "ndcg_at_10" in evaluation["reason"]
        candidate = evaluation["candidate"]
        assert candidate["num_queries"] > 10 and 0 < candidate["ndcg_at_10"] <= 1
        assert 0 < candidate["mrr_at_10"] <= 1 and 0 < candidate["recall_at_100"] <= 1
        # Judged over the whole corpus: the headline is the system's own figure among all of them.
        assert evaluation["documents"] == 72 and candidate["system"] == system
        assert {k: candidate[k] for k in ("ndcg_at_10", "recall_at_100", "mrr_at_10")} == candidate["systems"][system]
        assert {"bm25", "hybrid"} <= set(candidate["systems"])
        warmup = trained_ranking_models.model_base_path / task / "1" / "assets.extra" / "tf_serving_warmup_requests"
        logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(warmup))]
        assert logs and all(set(log.predict_log.request.inputs) == inputs for log in logs)


def test_a_second_run_is_cached_and_the_baseline_is_the_pushed_version(trained_ranking_models, demo_data_dir):
    config = tiny_config("catalog_embedder", demo_data_dir, trained_ranking_models.work_dir,
                         **{"training.epochs": 4, "model.sequence_length": 64,
                            "evaluation.thresholds.lower_bound": 0.0})
    record = LocalDagRunner().run(create_pipeline(config))
    assert component(record, "HardNegativeMiner")["cached"] and component(record, "Trainer")["cached"]
    # The Evaluator runs again (its baseline is now version 1) and finds the same model.
    assert not component(record, "Evaluator")["cached"]
    assert "vs baseline" in record["blessing_reason"] and record["pushed_version"] == 1


def test_missing_qrels_fail_with_the_file_named(tmp_path, demo_data_dir):
    import shutil
    shutil.copytree(demo_data_dir / "catalog", tmp_path / "catalog")
    (tmp_path / "catalog" / "qrels" / "train.tsv").unlink()
    config = tiny_config("catalog_embedder", tmp_path, tmp_path / "work")
    with pytest.raises(PipelineError, match=r"qrels/train.tsv"):
        LocalDagRunner().run(create_pipeline(config))


class Scrambler:
    """A "re-ranker" that learned its mined lists by heart: relevant items 1, mined negatives 0, and every
    item it never saw 2 -- so it separates each query's mined list perfectly and pushes the relevant items
    of the hybrid list below the items mining never picked.  A real SavedModel with the re-ranker's
    signature (query, item_text -> score, probability)."""

    @staticmethod
    def save(rows: list[dict], path: Path) -> Path:
        keys = [f"{r['text']}\x1f{r['text_pair']}" for r in rows]
        values = [1.0 if r["label"] == "relevant" else 0.0 for r in rows]

        class Module(tf.Module):
            def __init__(self):
                super().__init__()
                self.table = tf.lookup.StaticHashTable(
                    tf.lookup.KeyValueTensorInitializer(tf.constant(keys), tf.constant(values)), default_value=2.0)

            @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.string)])
            def serve(self, query, item_text):
                score = self.table.lookup(tf.strings.join([query, item_text], separator="\x1f"))
                return {"score": score, "probability": tf.sigmoid(score)}

        module = Module()
        tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
        return path


def test_a_reranker_that_scrambles_the_hybrid_order_is_refused_though_it_separates_mined_lists(
        trained_ranking_models, demo_data_dir, tmp_path):
    import logging

    from tfx_pipeline.beam.examples import read_split_rows
    from tfx_pipeline.evaluation.ranking import RankingSource, evaluate_ranking_model
    record = trained_ranking_models.records["catalog_reranker"]
    rows = read_split_rows(artifact_uri(record, "ExampleValidator", "examples"), "eval")
    scrambler = Scrambler.save(rows, tmp_path / "scrambler")
    config = tiny_config("catalog_reranker", demo_data_dir, tmp_path, **{"evaluation.thresholds.lower_bound": 0.3})
    models = trained_ranking_models.model_base_path
    evaluation = evaluate_ranking_model(
        RankingSource(str(demo_data_dir / "catalog"), "train", "catalog_embedder"), config.evaluation,
        "text_pair_ranking", scrambler, rows, str(tmp_path / "no_baseline"), str(models / "catalog_embedder"),
        logging.getLogger("test"))
    assert evaluation["mined_lists"]["ndcg_at_10"] == 1.0  # the old protocol would have blessed it
    systems = evaluation["candidate"]["systems"]
    assert systems["hybrid+rerank"]["ndcg_at_10"] < systems["hybrid"]["ndcg_at_10"]
    assert evaluation["first_stage"] == "bm25+embedder" and evaluation["embedder"]["version"] == 1
    assert not evaluation["blessed"] and "vs hybrid alone" in evaluation["reason"]

    # The same protocol for the baseline: the pushed tiny re-ranker re-ranks the same hybrid lists.
    evaluation = evaluate_ranking_model(
        RankingSource(str(demo_data_dir / "catalog"), "train", "catalog_embedder"), config.evaluation,
        "text_pair_ranking", scrambler, rows, str(models / "catalog_reranker"), str(models / "catalog_embedder"),
        logging.getLogger("test"))
    assert evaluation["baseline_version"] == 1
    assert evaluation["baseline"]["systems"]["hybrid"] == evaluation["candidate"]["systems"]["hybrid"]
    assert not evaluation["blessed"]


def test_a_relevant_item_twice_in_a_batch_is_not_a_negative_of_its_copy():
    import keras_hub

    from tfx_pipeline.model.tasks import TRIPLE_PARTS, build_contrastive_trainer, build_text_embedder

    backbone = keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=1, num_heads=1, hidden_dim=8,
                                             intermediate_dim=16, max_sequence_length=16)
    trainer = build_contrastive_trainer(build_text_embedder(backbone))
    ids = {"query": [[2, 5, 3], [2, 5, 3], [2, 9, 3]],  # rows 0 and 1: one query, one relevant item,
           "positive": [[2, 7, 3], [2, 7, 3], [2, 8, 3]],  # two mined negatives
           "negative": [[2, 11, 3], [2, 12, 3], [2, 13, 3]]}
    features = {f"{part}_{name}": np.array(value if name == "token_ids" else np.ones_like(value)
                                           if name == "padding_mask" else np.zeros_like(value), "int32")
                for part, value in ids.items() for name in ("token_ids", "padding_mask", "segment_ids")}
    assert set(TRIPLE_PARTS) == set(ids)
    logits = np.asarray(trainer(features))
    assert logits.shape == (3, 6)
    assert logits[0, 1] == logits[1, 0] == -1e4  # each other's copy: masked
    masked = np.zeros_like(logits, dtype=bool)
    masked[0, 1] = masked[1, 0] = True
    assert (np.abs(logits[~masked]) <= 20.0 + 1e-4).all()  # cosine x scale 20 everywhere else
