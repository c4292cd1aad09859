"""The ranker app as a library and a CLI, against a real model server on loopback serving the
pipeline-trained tiny embedder and re-ranker (`ranking_model_server`), on the demo catalog."""

from __future__ import annotations

import doctest
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from apps.ranker import cli, retrieval
from apps.ranker.config import ConfigError, load_config, with_overrides
from apps.ranker.errors import EmptyIndex, InvalidRequest, ModelError, ModelTimeout, ModelUnavailable
from apps.ranker.evaluation import evaluate, in_holdout, metrics_table, select_queries
from apps.ranker.index import CURRENT, CatalogIndex
from apps.ranker.ranker import Ranker, RankRequest
from serving.launcher import free_port as closed_port  # a loopback port nothing listens on
from suite_core.beir import BeirDataset, read_corpus
from tfx_pipeline.beam.examples import split_of
from tfx_pipeline.config import SplitConfig


@pytest.fixture(scope="module")
def server_address(ranking_model_server) -> str:
    """The shared real server on loopback serving the pipeline-trained tiny catalog_embedder and
    catalog_reranker (tests/conftest.py).  They are weak: tests assert behaviour, not ranking quality."""
    return ranking_model_server.grpc_address


@pytest.fixture(scope="module")
def catalog_file(demo_data_dir):
    return demo_data_dir / "catalog" / "corpus.jsonl"


@pytest.fixture(scope="module")
def shared_index(server_address, catalog_file, tmp_path_factory):
    """The demo catalog ingested once; tests that change an index copy it first."""
    directory = tmp_path_factory.mktemp("ranker_index") / "index"
    config = with_overrides(load_config(), address=server_address, index_path=directory)
    with Ranker(config) as ranker:
        ranker.ingest(catalog_file, full=True)
    return directory


def make_ranker(address, index, **retrieval) -> Ranker:
    """The packaged config on ``index``; by default every fused item of the 72 re-ranked and no time budget
    (so a loaded test machine does not turn re-ranks into fallbacks), unless a test says otherwise."""
    retrieval = {"rerank_depth": 100, "request_budget_ms": 0.0, **retrieval}
    return Ranker(with_overrides(load_config(), address=address, index_path=index, **retrieval))


@pytest.fixture(scope="module")
def ranker(server_address, shared_index):
    with make_ranker(server_address, shared_index) as ranker:
        yield ranker


def copy_index(shared_index, tmp_path):
    target = tmp_path / "index"
    shutil.copytree(shared_index, target)
    return target


def write_catalog(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def demo_records(catalog_file):
    return [json.loads(line) for line in catalog_file.read_text().splitlines()]


# -- ingestion, update, removal -----------------------------------------------------------------


def test_ingest_re_embeds_only_changed_items_and_full_ingest_removes_absent_ones(server_address, catalog_file,
                                                                                 tmp_path):
    with make_ranker(server_address, tmp_path / "index") as ranker:
        first = ranker.ingest(catalog_file, full=True)
        assert (len(first.added), first.embedded, first.items) == (72, 72, 72)
        again = ranker.ingest(catalog_file, full=True)
        assert (again.unchanged, again.embedded, again.generation) == (72, 0, first.generation)
        before = ranker.index

        records = demo_records(catalog_file)
        records[0]["text"] = "A zeppelin-shaped tent that floats above the campsite."
        records[1]["metadata"] = {**records[1]["metadata"], "price": 1}
        dropped = records.pop(2)
        records.append({"_id": "kayak-inflatable", "title": "Fjord inflatable kayak",
                        "text": "An inflatable kayak for paddling on calm lakes.",
                        "metadata": {"category": "outdoor", "price": 250, "in_stock": True}})
        report = ranker.ingest(write_catalog(tmp_path / "v2.jsonl", records), full=True)
        assert report.updated == [records[0]["_id"]]
        assert report.metadata_updated == [records[1]["_id"]]
        assert report.removed == [dropped["_id"]]
        assert report.added == ["kayak-inflatable"]
        assert (report.embedded, report.items) == (2, 72)

        index = ranker.index  # reloaded: a new generation is in force
        assert index.generation != before.generation
        assert index.get(dropped["_id"]) is None
        assert index.get(records[1]["_id"]).metadata["price"] == 1
        unchanged = records[5]["_id"]
        assert np.array_equal(index.vectors[index.position[unchanged]], before.vectors[before.position[unchanged]])
        changed = records[0]["_id"]
        assert not np.array_equal(index.vectors[index.position[changed]], before.vectors[before.position[changed]])
        [top, *_] = ranker.rank(RankRequest(text="inflatable kayak for paddling", k=10, rerank=False)).items
        assert (top.id, top.bm25_rank) == ("kayak-inflatable", 1)  # the only item with these words

        # An upsert keeps what the file does not mention; `remove` names what it did not know.
        upsert = ranker.ingest(write_catalog(tmp_path / "one.jsonl", [dropped]))
        assert (upsert.added, upsert.removed, upsert.items) == ([dropped["_id"]], [], 73)
        removed, unknown = ranker.remove(["kayak-inflatable", "no-such-item"])
        assert (removed, unknown, len(ranker.index)) == (["kayak-inflatable"], ["no-such-item"], 72)
        assert "kayak-inflatable" not in {i.id for i in ranker.rank(RankRequest(text="kayak", k=100)).items}


def test_index_survives_a_crash_mid_write(server_address, shared_index, catalog_file, tmp_path, monkeypatch):
    directory = copy_index(shared_index, tmp_path)
    generation = (directory / CURRENT).read_text().strip()
    records = demo_records(catalog_file)
    records[0]["text"] = "changed"

    def crash(*args, **kwargs):
        raise OSError("disk full (injected)")

    with make_ranker(server_address, directory) as ranker:
        with monkeypatch.context() as patch:
            patch.setattr("apps.ranker.index.np.save", crash)  # dies after items.jsonl, before vectors.npy
            with pytest.raises(OSError, match="injected"):
                ranker.ingest(write_catalog(tmp_path / "v2.jsonl", records), full=True)
        assert (directory / CURRENT).read_text().strip() == generation
        assert len(CatalogIndex.load(directory)) == 72
        assert any(p.name.startswith(".tmp-") for p in directory.iterdir())  # the half-written generation
        report = ranker.ingest(tmp_path / "v2.jsonl", full=True)  # the next write succeeds and cleans up
        assert report.updated == [records[0]["_id"]]
        assert not any(p.name.startswith(".tmp-") for p in directory.iterdir())

    # A model server that goes away mid-ingest leaves the previous generation in force too.
    with make_ranker(f"127.0.0.1:{closed_port()}", directory) as offline:
        with pytest.raises(ModelUnavailable):
            offline.ingest(catalog_file, full=True)
        assert len(offline.index) == 72


# -- the two stages ---------------------------------------------------------------------------------


def test_rerank_is_one_predict_call_when_the_server_takes_the_whole_batch(server_address, shared_index):
    # The test server batches with infra/serving/batching.config: at most 128 rows a call.
    with make_ranker(server_address, shared_index) as ranker:
        attempts = ranker.models.client.attempts
        response = ranker.rank(RankRequest(text="tent", k=5))
        assert ranker.models.client.attempts - attempts == 2  # one embed, ONE re-rank call of the 72 fused items
        assert all(item.stage == "rerank" for item in response.items)
    with make_ranker(server_address, shared_index, max_rows_per_call=32, rerank_depth=32) as ranker:
        attempts = ranker.models.client.attempts
        response = ranker.rank(RankRequest(text="tent", k=40))
        assert ranker.models.client.attempts - attempts == 2  # still one re-rank call: N <= rows per call
        assert [i.stage for i in response.items] == ["rerank"] * 32 + ["fusion"] * 8
        assert ranker.models.embed([f"text {i}" for i in range(72)], bulk=True).shape[0] == 72  # bulk: 3 calls
        assert ranker.models.client.attempts - attempts == 2 + 3
    with pytest.raises(ConfigError, match="a request's re-rank is one Predict call"):
        make_ranker(server_address, shared_index, max_rows_per_call=32)  # depth 100 > 32 rows a call
    with make_ranker(server_address, shared_index, max_rows_per_call=200) as ranker:
        with pytest.raises(ModelError, match="larger than maximum input batch size 128"):
            ranker.models.rerank("tent", ["some item text"] * 129)  # the server refuses what it cannot batch


def test_hybrid_retrieval_then_rerank(server_address, shared_index):
    with make_ranker(server_address, shared_index, rerank_fusion="replace") as ranker:
        hybrid_retrieval_then_rerank(ranker)


def hybrid_retrieval_then_rerank(ranker):
    query = "lightweight tent for camping trips"
    response = ranker.rank(RankRequest(text=query, k=5))
    assert response.stages == ["bm25", "vector", "rerank"] and not response.degraded
    items = response.items
    assert len(items) == 5 and all(item.stage == "rerank" for item in items)
    assert [i.score for i in items] == sorted((i.score for i in items), reverse=True)
    assert all(item.vector_rank for item in items)  # the vector list covers the 72-item catalog
    # RRF: each fused score is the sum of 1 / (60 + rank) over the lists that found the item.
    for item in ranker.rank(RankRequest(text=query, k=72, rerank=False)).items:
        ranks = [rank for rank in (item.bm25_rank, item.vector_rank) if rank]
        assert item.fused_score == pytest.approx(sum(1 / (60 + rank) for rank in ranks))
        assert set(item.found_by) == {name for name, rank in (("bm25", item.bm25_rank),
                                                              ("vector", item.vector_rank)) if rank}
    # Stage 2's scores are the re-ranker's, for the re-ranker's query and the item's full text.
    texts = [ranker.index.get(item.id).full_text for item in items]
    scores, probabilities = ranker.models.rerank("lightweight tent for camping trips", texts)
    assert [i.rerank_score for i in items] == pytest.approx(scores.tolist())
    assert [i.rerank_probability for i in items] == pytest.approx(probabilities.tolist())

    stage1 = ranker.rank(RankRequest(text=query, k=72, rerank=False))
    assert stage1.stages == ["bm25", "vector"]
    assert all(i.stage == "fusion" and i.rerank_score is None for i in stage1.items)
    fused = [i.fused_score for i in stage1.items]
    assert fused == sorted(fused, reverse=True)
    # `replace`: stage 2 orders the whole fused list (72 <= N = 100) by the re-ranker's score alone.
    both = ranker.rank(RankRequest(text=query, k=72)).items
    assert [i.id for i in both] == [i.id for i in sorted(both, key=lambda i: -i.rerank_score)]
    assert [i.id for i in both] != [i.id for i in stage1.items]


def test_rrf_rerank_fusion_orders_the_head_by_its_fused_and_its_reranker_ranks(server_address, shared_index):
    query = "lightweight tent for camping trips"
    with make_ranker(server_address, shared_index, rerank_depth=10, rerank_fusion="rrf", rerank_weight=2.0) as ranker:
        first_stage = [i.id for i in ranker.rank(RankRequest(text=query, k=12, rerank=False)).items]
        items = ranker.rank(RankRequest(text=query, k=12)).items
    score = {i.id: i.rerank_score for i in items if i.stage == "rerank"}
    assert set(score) == set(first_stage[:10])
    by_score = sorted(first_stage[:10], key=lambda id_: -score[id_])
    fused = {id_: 1 / (60 + first_stage.index(id_) + 1) + 2.0 / (60 + by_score.index(id_) + 1) for id_ in score}
    assert [i.id for i in items[:10]] == sorted(score, key=lambda id_: -fused[id_])
    assert [i.id for i in items[10:]] == first_stage[10:]  # below the depth: the fused order


def test_only_the_top_n_are_reranked(server_address, shared_index):
    with make_ranker(server_address, shared_index, rerank_depth=3) as ranker:
        items = ranker.rank(RankRequest(text="waterproof rain jacket", k=8)).items
    assert [i.stage for i in items] == ["rerank"] * 3 + ["fusion"] * 5


def test_no_blessed_reranker_means_hybrid_order_and_the_response_and_metrics_say_so(server_address,
                                                                                  shared_index):
    query = "lightweight tent for camping trips"
    with make_ranker(server_address, shared_index) as ranker:
        hybrid = [i.id for i in ranker.rank(RankRequest(text=query, k=20, rerank=False)).items]
    # The Pusher pushed no version of this re-ranker (none was blessed): the server serves none.
    with make_ranker(server_address, shared_index, reranker_model="catalog_reranker_unblessed") as ranker:
        response = ranker.rank(RankRequest(text=query, k=20))
        assert [i.id for i in response.items] == hybrid and {i.stage for i in response.items} == {"fusion"}
        assert response.stages == ["bm25", "vector"] and not response.degraded
        assert response.rerank["status"] == "no_reranker" and "no blessed re-ranker" in response.rerank["reason"]
        assert response.to_dict()["rerank"]["status"] == "no_reranker"
        assert ranker.rerank_outcomes()["no_reranker"] == 1 and ranker.rerank_outcomes()["reranked"] == 0
    with make_ranker(server_address, shared_index, reranker_model="") as ranker:  # none configured
        response = ranker.rank(RankRequest(text=query, k=20))
        assert response.rerank["status"] == "no_reranker" and [i.id for i in response.items] == hybrid


def test_a_spent_time_budget_means_hybrid_order_and_the_response_says_so(server_address, shared_index):
    query = "waterproof rain jacket"
    with make_ranker(server_address, shared_index) as ranker:
        hybrid = [i.id for i in ranker.rank(RankRequest(text=query, k=20, rerank=False)).items]
        reranked = ranker.rank(RankRequest(text=query, k=20))
        assert reranked.rerank == {"status": "reranked", "depth": 72, "reason": None}
        # The budget is the re-rank call's deadline: past it the call is abandoned (DEADLINE_EXCEEDED).
        with pytest.raises(ModelTimeout):
            ranker.models.rerank(query, [ranker.index.items[0].full_text] * 72, timeout=1e-4)
    with make_ranker(server_address, shared_index, request_budget_ms=0.001) as ranker:
        response = ranker.rank(RankRequest(text=query, k=20))
        assert [i.id for i in response.items] == hybrid and "rerank" not in response.stages
        assert response.rerank["status"] == "time_budget" and "0.001 ms budget" in response.rerank["reason"]
        assert not response.degraded and ranker.rerank_outcomes()["time_budget"] == 1


def test_the_pipeline_blesses_with_the_figure_apps_ranker_evaluate_reports(server_address, trained_ranking_models,
                                                                           demo_data_dir, tmp_path):
    # `--holdout 0.25` is the demo configs' eval split (75/25 by query id): the Evaluator's queries.
    output = tmp_path / "evaluation.json"
    assert cli.main(["--server", server_address, "--index", str(tmp_path / "index"), "evaluate",
                     str(demo_data_dir / "catalog"), "--split", "train", "--holdout", "0.25",
                     "--output", str(output)], io.StringIO()) == 0
    report = json.loads(output.read_text())
    assert report["rerank_depth"] == 20  # the app's configured depth, as in the demo pipeline configs
    for task, system in (("catalog_embedder", "embedder"), ("catalog_reranker", "hybrid+rerank")):
        record = trained_ranking_models.records[task]
        evaluator = next(c for c in record["components"] if c["id"] == "Evaluator")
        pipeline = json.loads((Path(evaluator["artifacts"]["evaluation"]["uri"]) / "evaluation.json").read_text())
        assert pipeline["candidate"]["num_queries"] == report["queries"] and pipeline["documents"] == 72
        for metric in ("ndcg_at_10", "recall_at_100", "mrr_at_10"):
            assert report["metrics"][system][metric] == pytest.approx(pipeline["candidate"][metric], abs=0.005)
            assert report["metrics"]["hybrid"][metric] == pytest.approx(
                pipeline["candidate"]["systems"]["hybrid"][metric], abs=0.005)


def test_score_fusion_is_configurable(server_address, shared_index):
    with make_ranker(server_address, shared_index, fusion="score") as ranker:
        items = ranker.rank(RankRequest(text="tent", k=5, rerank=False)).items
    assert 0 < items[0].fused_score <= 1.0


def test_filters_on_metadata(ranker):
    wanted = {"category": "kitchen", "price": {"max": 100}, "in_stock": True}
    catalog = ranker.index.items
    allowed = {i.id for i in catalog if retrieval.matches(i.metadata, retrieval.compile_filters(wanted))}
    expected = {i.id for i in catalog if i.metadata["category"] == "kitchen" and i.metadata["price"] <= 100
                and i.metadata["in_stock"] is True}
    assert allowed == expected and 0 < len(expected) < 24
    items = ranker.rank(RankRequest(text="something for cooking in the kitchen", filters=wanted, k=100)).items
    assert {i.id for i in items} <= expected and items
    for item in items:
        assert item.metadata["category"] == "kitchen" and item.metadata["price"] <= 100 and item.metadata["in_stock"]
    brands = ranker.rank(RankRequest(text="tent", filters={"brand": ["Alder", "Fjord"], "price": {"gt": 50}},
                                     k=100)).items
    assert brands and all(i.metadata["brand"] in ("Alder", "Fjord") and i.metadata["price"] > 50 for i in brands)
    nothing = ranker.rank(RankRequest(text="tent", filters={"category": "garden"}))
    assert nothing.items == [] and nothing.warnings[0]["code"] == "no_match"
    with pytest.raises(InvalidRequest, match="range takes") as error:
        ranker.rank(RankRequest(text="tent", filters={"price": {"below": 3}}))
    assert error.value.problem == "invalid_filter"
    # true is not 1: equality is typed.
    assert not retrieval.matches({"in_stock": 1}, retrieval.compile_filters({"in_stock": True}))


def test_exclude_seen_and_recent_items_as_context(ranker):
    first = ranker.rank(RankRequest(text="lightweight tent for camping trips", k=3)).items[0].id
    again = ranker.rank(RankRequest(text="lightweight tent for camping trips", k=3, exclude=(first,))).items
    assert first not in {i.id for i in again}

    response = ranker.rank(RankRequest(recent=("tent-lightweight", "tent-waterproof", "nope-1"), k=72))
    ids = [i.id for i in response.items]
    assert "tent-lightweight" not in ids and "tent-waterproof" not in ids  # recent items are excluded
    [lexical_top] = [i.id for i in response.items if i.bm25_rank == 1]
    assert lexical_top.startswith("tent-")  # the history's texts are the BM25 query: it is about tents
    assert response.warnings == [{"code": "unknown_recent_ids", "ids": ["nope-1"],
                                  "message": "1 recent id(s) are not in the catalog and were ignored"}]
    kept = ranker.rank(RankRequest(recent=("tent-lightweight",), exclude_recent=False, k=1, rerank=False)).items
    assert kept[0].id == "tent-lightweight"  # its own text and vector: first in both lists
    assert (kept[0].bm25_rank, kept[0].vector_rank) == (1, 1)
    with pytest.raises(InvalidRequest) as error:
        ranker.rank(RankRequest(recent=("nope-1",)))
    assert error.value.problem == "unknown_recent_items"
    with pytest.raises(InvalidRequest) as error:
        ranker.rank(RankRequest(text="   "))
    assert error.value.problem == "empty_context"


def test_candidate_list_unknown_ids_and_cap(server_address, shared_index):
    with make_ranker(server_address, shared_index, max_candidates=5) as ranker:
        catalog = [i.id for i in ranker.index.items]
        response = ranker.rank(RankRequest(text="tent", candidates=("ghost", *catalog[:9]), k=10))
        assert {i.id for i in response.items} <= set(catalog[:4])  # "ghost" took one of the five places
        codes = {w["code"]: w for w in response.warnings}
        assert "only the first 5 are ranked" in codes["candidates_capped"]["message"]
        assert codes["unknown_candidates_ids"]["ids"] == ["ghost"]
        assert len(response.items) == 4  # every known candidate is ranked, even without a word in common
        with pytest.raises(InvalidRequest, match=r"k must be in \[1, 100\]"):
            ranker.rank(RankRequest(text="tent", k=101))


# -- failures -----------------------------------------------------------------------------------------


def test_empty_index_is_a_clear_error(server_address, shared_index, tmp_path):
    with make_ranker(server_address, tmp_path / "nothing") as ranker:
        with pytest.raises(EmptyIndex, match="ingest a catalog first"):
            ranker.rank(RankRequest(text="tent"))
    directory = copy_index(shared_index, tmp_path)
    with make_ranker(server_address, directory) as ranker:
        removed, _ = ranker.remove([i.id for i in ranker.index.items])
        assert len(removed) == 72
        with pytest.raises(EmptyIndex):
            ranker.rank(RankRequest(text="tent"))


def test_model_server_down_is_an_error_unless_degraded_mode_is_on(shared_index):
    address = f"127.0.0.1:{closed_port()}"
    with make_ranker(address, shared_index) as ranker:
        with pytest.raises(ModelUnavailable, match="did not answer: UNAVAILABLE"):
            ranker.rank(RankRequest(text="lightweight tent"))
    with make_ranker(address, shared_index, degraded_mode=True) as ranker:
        response = ranker.rank(RankRequest(text="lightweight tent", k=3))
    assert response.degraded and "vector retrieval and re-ranking skipped" in response.degraded_reason
    assert response.stages == ["bm25"]
    assert response.items and all(i.found_by == ("bm25",) and i.stage == "fusion" for i in response.items)


# -- evaluation ---------------------------------------------------------------------------------------


def test_metrics_on_a_hand_made_example():
    qrels = {"q1": {"a": 2, "b": 1}, "q2": {"c": 1}}
    runs = {"perfect": {"q1": {"a": 3, "b": 2, "x": 1}, "q2": {"c": 1}},
            "late": {"q1": {"x": 3, "a": 2, "b": 1}, "q2": {"y": 2, "z": 1}}}
    table = metrics_table(runs, qrels)
    assert table["perfect"] == {"ndcg_at_10": 1.0, "recall_at_100": 1.0, "mrr_at_10": 1.0}
    # q1: DCG = 2/log2(3) + 1/log2(4), ideal = 2 + 1/log2(3); q2 finds nothing: 0.
    q1 = (2 / math.log2(3) + 1 / 2) / (2 + 1 / math.log2(3))
    assert table["late"]["ndcg_at_10"] == pytest.approx((q1 + 0) / 2, abs=1e-4)
    assert table["late"]["mrr_at_10"] == pytest.approx((1 / 2 + 0) / 2)
    assert table["late"]["recall_at_100"] == pytest.approx((1 + 0) / 2)


def test_evaluate_four_systems_on_a_small_beir_dataset(server_address, tmp_path):
    data = tmp_path / "beir"
    (data / "qrels").mkdir(parents=True)
    write_catalog(data / "corpus.jsonl", [
        {"_id": "d1", "title": "", "text": "apple banana pie"},
        {"_id": "d2", "title": "", "text": "banana bread"},
        {"_id": "d3", "title": "", "text": "zebra stripes"},
        {"_id": "d4", "title": "", "text": "quantum physics lecture"}])
    write_catalog(data / "queries.jsonl", [{"_id": "q1", "text": "zebra stripes"},
                                           {"_id": "q2", "text": "apple banana"}])
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td3\t1\nq2\td2\t1\n")
    with make_ranker(server_address, tmp_path / "index") as ranker:
        report = evaluate(ranker, data, "test")
    assert list(report["metrics"]) == ["bm25", "embedder", "hybrid", "hybrid+rerank"]
    assert (report["queries"], report["documents"]) == (2, 4)
    # BM25 by hand: q1 finds d3 first; for q2, d1 holds both words and beats the relevant d2 (rank 2).
    assert report["metrics"]["bm25"] == pytest.approx(
        {"ndcg_at_10": (1 + 1 / math.log2(3)) / 2, "recall_at_100": 1.0, "mrr_at_10": (1 + 1 / 2) / 2}, abs=1e-4)
    for values in report["metrics"].values():
        assert set(values) == {"ndcg_at_10", "recall_at_100", "mrr_at_10"} and 0 <= values["ndcg_at_10"] <= 1


def test_query_selection(demo_data_dir, tmp_path):
    dataset = BeirDataset.load(demo_data_dir / "catalog", "train")
    holdout = select_queries(dataset, holdout=0.25)
    assert holdout == select_queries(dataset, holdout=0.25) and 15 < len(holdout) < 60
    assert all(in_holdout(q, 0.25) for q in holdout)
    # --holdout 0.2 is the pipeline's eval split of an 80/20 split grouped by query id.
    split = SplitConfig(train=80, eval=20, group_column="query_id")
    assert all(in_holdout(q, 0.2) == (split_of({"query_id": q}, split) == "eval") for q in dataset.qrels)
    listed = tmp_path / "ids.txt"
    listed.write_text("q0003\nq0001\n")
    assert select_queries(dataset, query_ids_file=listed) == ["q0001", "q0003"]
    assert select_queries(dataset, limit=3) == ["q0000", "q0001", "q0002"]
    listed.write_text("q9999\n")
    with pytest.raises(InvalidRequest, match="no judgements"):
        select_queries(dataset, query_ids_file=listed)


# -- configuration, CLI, examples --------------------------------------------------------------------


def test_config_is_typed_and_names_the_bad_key(tmp_path):
    config = load_config()
    assert (config.retrieval.fusion, config.server.embedder_model) == ("rrf", "catalog_embedder")
    path = tmp_path / "config.yaml"
    path.write_text("retrieval:\n  lexcial_depth: 5\n")
    with pytest.raises(ConfigError, match="unknown key retrieval.lexcial_depth"):
        load_config(path)
    path.write_text("retrieval:\n  fusion: max\n")
    with pytest.raises(ConfigError, match="retrieval.fusion: 'max' is not one of"):
        load_config(path)
    path.write_text("retrieval:\n  rerank_depth: many\n")
    with pytest.raises(ConfigError, match="retrieval.rerank_depth: expected int"):
        load_config(path)


def test_cli_ingest_query_remove_evaluate(server_address, catalog_file, demo_data_dir, tmp_path, capsys):
    base = ["--server", server_address, "--index", str(tmp_path / "index")]
    out = io.StringIO()
    assert cli.main([*base, "query", "tent"], out) == cli.EXIT_EMPTY_INDEX
    assert cli.main([*base, "ingest", str(catalog_file), "--full"], out) == 0
    assert json.loads(out.getvalue())["added"] == 72
    out = io.StringIO()
    assert cli.main([*base, "query", "a light tent", "--filter", '{"in_stock": true}', "-k", "2"], out) == 0
    response = json.loads(out.getvalue())
    assert len(response["items"]) == 2 and all(i["metadata"]["in_stock"] for i in response["items"])
    out = io.StringIO()
    assert cli.main([*base, "remove", "tent-budget", "ghost"], out) == cli.EXIT_INVALID_INPUT
    assert json.loads(out.getvalue()) == {"removed": ["tent-budget"], "unknown": ["ghost"], "items": 71}
    out = io.StringIO()
    output = tmp_path / "eval.json"
    assert cli.main(["--server", server_address, "--index", str(tmp_path / "eval-index"), "evaluate",
                     str(demo_data_dir / "catalog"), "--split", "train", "--limit", "20", "--output",
                     str(output)], out) == 0
    table = out.getvalue()
    assert all(system in table for system in ("bm25", "embedder", "hybrid", "hybrid+rerank"))
    assert json.loads(output.read_text())["queries"] == 20
    assert cli.main(["--server", f"127.0.0.1:{closed_port()}", "--index", str(tmp_path / "index"),
                     "query", "tent"], io.StringIO()) == cli.EXIT_MODEL
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    usage = capsys.readouterr().out
    assert all(command in usage for command in ("ingest", "remove", "query", "serve", "evaluate"))


def test_benchmark_starts_its_server_and_reports_stages_and_throughput(trained_ranking_models, demo_data_dir,
                                                                       tmp_path):
    """`python -m benchmarks ranker`, scaled down: its own model server (both models) on the tiny ones."""
    from benchmarks import ranker as benchmark

    out = io.StringIO()
    code = benchmark.main(["--index", str(tmp_path / "index"), "--data", str(demo_data_dir / "catalog"),
                           "--items", "40", "--rerank-depth", "5", "--requests", "4", "--warmup-requests", "1",
                           "--clients", "2", "--seconds", "1",
                           "--model-base-path", str(trained_ranking_models.model_base_path), "--json"], out)
    assert code == 0
    report = json.loads(out.getvalue())
    assert report["items"] == 40 and report["ingest"]["items"] == 40
    assert set(report["sequential"]["stages_ms"]) == {"bm25", "embed", "vector", "fusion", "rerank", "total"}
    assert report["sequential"]["stages_ms"]["total"]["requests"] == 4
    assert report["concurrent"]["ranker"]["requests"] > 0 and report["concurrent"]["ranker"]["errors"] == 0


def test_module_examples_hold():
    assert doctest.testmod(retrieval).failed == 0


def test_catalog_reader_accepts_id_and_beir_id(tmp_path):
    path = write_catalog(tmp_path / "c.jsonl", [{"id": 7, "title": "T", "text": "x"}, {"_id": "b", "text": "y"}])
    assert [d.id for d in read_corpus(path)] == ["7", "b"]
