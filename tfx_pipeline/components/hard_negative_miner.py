"""HardNegativeMiner: a BEIR dataset -> labelled (query, item) rows for ranking tasks.

For every judged query: one `relevant` row per relevant item, and `irrelevant`
rows for negatives mined from BM25's (and optionally the pushed embedder's) top
results, and/or (`mining.hybrid_negatives`) from the hybrid list the ranker app
re-ranks: both retrievers fused as the app fuses (`evaluation.retrieval`); such
rows say which retrievers found them (`found_by`: bm25, embedder, bm25+embedder).
ExampleGen then reads these rows like any other data, so validation,
statistics, splitting (by query) and quarantine apply unchanged.

Outputs `rows` (`rows.jsonl`, `mining.json`) with properties on how many
negatives came from where and how often BM25's top `depth` held a relevant item.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from suite_core.beir import BeirDataset, BeirFormatError
from suite_core.ranking_evaluation import HybridSettings
from tfx_pipeline import storage
from tfx_pipeline.components.example_gen import ROWS_FILE
from tfx_pipeline.config import MiningConfig
from tfx_pipeline.dsl import Component, ExecutionContext, PipelineError
from tfx_pipeline.evaluation.predict import text_embedder
from tfx_pipeline.model_versions import latest_version, version_identity
from tfx_pipeline.ranking.mining import Bm25Retriever, dense_scored, hybrid_scored, sample_negatives

# The columns ExampleGen reads from `rows.jsonl`.
ROW_COLUMNS = {"text_column": "query", "text_pair_column": "item_text", "label_column": "label",
               "extra_columns": ("query_id", "item_id")}
LABELS = ("irrelevant", "relevant")


class HardNegativeMiner(Component):
    OUTPUTS = {"rows": "Examples"}
    LOCAL_FILES = True  # BM25 and the embedder run here, on a local copy of the dataset.

    def __init__(self, beir_dir: str, mining: MiningConfig, model_base_path: str,
                 retrieval: HybridSettings | None = None):
        super().__init__()
        self.beir_dir, self.mining, self.retrieval = beir_dir, mining, retrieval or HybridSettings()
        self.embedder_dir = storage.join(model_base_path, mining.embedder_model) if mining.embedder_model else None

    def fingerprint_data(self):
        hybrid = dataclasses.asdict(self.retrieval) if self.mining.hybrid_negatives else None
        return [self.beir_dir, dataclasses.asdict(self.mining), *([hybrid] if hybrid else [])]

    def external_fingerprint(self):
        """The BEIR files, and the embedder version that mines (if any)."""
        state: list = storage.file_states(storage.join(self.beir_dir, "**"))
        if self.embedder_dir is not None:
            latest = latest_version(self.embedder_dir)
            state.append(None if latest is None else [latest[0], version_identity(latest[1])])
        return state

    def execute(self, ctx: ExecutionContext):
        try:
            with storage.local_copy(self.beir_dir) as local:
                data = BeirDataset.load(local, self.mining.qrels_split)
        except (BeirFormatError, OSError) as e:
            raise PipelineError(f"HardNegativeMiner: {e}") from None
        if not data.queries:
            raise PipelineError(f"HardNegativeMiner: {self.beir_dir} has no judged queries in split "
                                f"{self.mining.qrels_split!r}")
        doc_ids = list(data.corpus)
        doc_texts = [data.document_text(doc) for doc in doc_ids]
        query_ids = list(data.queries)
        query_texts = [data.queries[q] for q in query_ids]

        mining, settings = self.mining, self.retrieval
        hybrid = mining.hybrid_negatives > 0
        # Hybrid fuses the app's first-stage depths; its best `depth` are the pool it samples from.
        lexical_k = max(mining.depth, settings.lexical_depth) if hybrid else mining.depth
        dense_k = max(mining.depth, settings.vector_depth) if hybrid else mining.depth
        ctx.log.info("BM25 over %d documents for %d queries", len(doc_ids), len(query_ids))
        lexical = Bm25Retriever(doc_texts).scored(query_texts, lexical_k)
        rankings = {"bm25": [[row for row, _ in ranked[:mining.depth]] for ranked in lexical]}
        counts = {"bm25": mining.bm25_negatives}
        dense = None
        if (mining.embedder_negatives or hybrid) and self.embedder_dir is not None:
            latest = latest_version(self.embedder_dir)
            if latest is None:
                ctx.log.warning("no pushed %s yet: mining with BM25 only", mining.embedder_model)
            else:
                ctx.log.info("embedding the corpus with %s version %d", mining.embedder_model, latest[0])
                with storage.local_copy(latest[1]) as local:
                    dense = dense_scored(text_embedder(local), query_texts, doc_texts, dense_k)
                if mining.embedder_negatives:
                    rankings["embedder"] = [[row for row, _ in ranked[:mining.depth]] for ranked in dense]
                    counts["embedder"] = mining.embedder_negatives
        found_by: list[dict[int, str]] = [{} for _ in query_ids]  # hybrid rows: which retrievers found them
        if hybrid:
            rankings["hybrid"] = []
            for n, ranked in enumerate(lexical):
                dense_ranked = dense[n] if dense is not None else None
                fused = hybrid_scored(ranked, dense_ranked, settings, mining.depth)
                rankings["hybrid"].append([row for row, _ in fused])
                in_bm25 = {row for row, _ in ranked[:settings.lexical_depth]}
                in_dense = {row for row, _ in (dense_ranked or [])[:settings.vector_depth]}
                found_by[n] = {row: "+".join(name for name, hit in (("bm25", row in in_bm25),
                                                                     ("embedder", row in in_dense)) if hit)
                               for row, _ in fused}
            counts["hybrid"] = mining.hybrid_negatives

        index = {doc: i for i, doc in enumerate(doc_ids)}
        out = Path(ctx.output_dirs["rows"])
        out.mkdir(parents=True, exist_ok=True)
        stats = {"queries": len(query_ids), "relevant": 0, **{f"negatives_{s}": 0 for s in rankings},
                 **{f"{s}_recall_at_depth": 0.0 for s in rankings}}
        with (out / ROWS_FILE).open("w") as handle:
            def write(query_number: int, doc: int, label: str, source: str) -> None:
                row = {"query_id": query_ids[query_number], "query": query_texts[query_number],
                       "item_id": doc_ids[doc], "item_text": doc_texts[doc], "label": label, "source": source}
                if source == "hybrid":
                    row["found_by"] = found_by[query_number][doc]
                    stats[f"hybrid_found_by_{row['found_by']}"] = stats.get(f"hybrid_found_by_{row['found_by']}",
                                                                            0) + 1
                handle.write(json.dumps(row) + "\n")

            for n, query_id in enumerate(query_ids):
                relevant = {index[doc] for doc in data.relevant(query_id)}
                for doc in sorted(relevant):
                    write(n, doc, "relevant", "qrels")
                stats["relevant"] += len(relevant)
                taken = set(relevant)
                for source, ranking in rankings.items():
                    stats[f"{source}_recall_at_depth"] += len(relevant & set(ranking[n])) / max(len(relevant), 1)
                    for doc in sample_negatives(ranking[n], taken, counts[source], f"{source}:{query_id}"):
                        write(n, doc, "irrelevant", source)
                        taken.add(doc)
                        stats[f"negatives_{source}"] += 1
        for source in rankings:
            stats[f"{source}_recall_at_depth"] = round(stats[f"{source}_recall_at_depth"] / len(query_ids), 4)
        storage.write_json(out / "mining.json", {**stats, "depth": self.mining.depth})
        ctx.log.info("mined rows: %s", stats)
        return {"rows": {**stats, "path": str(out / ROWS_FILE)}}
