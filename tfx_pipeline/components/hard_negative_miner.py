"""HardNegativeMiner: a BEIR dataset -> labelled (query, item) rows for ranking tasks.

For every judged query: one `relevant` row per relevant item, and `irrelevant`
rows for negatives mined from BM25's (and optionally the pushed embedder's) top
results. ExampleGen then reads these rows like any other data, so validation,
statistics, splitting (by query) and quarantine apply unchanged.

Outputs `rows` (`rows.jsonl`, `mining.json`) with properties on how many
negatives came from where and how often BM25's top `depth` held a relevant item.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tfx_pipeline import storage

from tfx_pipeline.components.example_gen import ROWS_FILE
from tfx_pipeline.config import MiningConfig
from tfx_pipeline.dsl import Component, ExecutionContext, PipelineError
from tfx_pipeline.evaluation.predict import text_embedder
from tfx_pipeline.model_versions import latest_version, version_identity
from tfx_pipeline.ranking.beir import BeirDataset, BeirFormatError
from tfx_pipeline.ranking.mining import Bm25Retriever, dense_top_k, sample_negatives

# The columns ExampleGen reads from `rows.jsonl`.
ROW_COLUMNS = {"text_column": "query", "text_pair_column": "item_text", "label_column": "label",
               "extra_columns": ("query_id", "item_id")}
LABELS = ("irrelevant", "relevant")


class HardNegativeMiner(Component):
    OUTPUTS = {"rows": "Examples"}
    LOCAL_FILES = True  # BM25 and the embedder run here, on a local copy of the dataset.

    def __init__(self, beir_dir: str, mining: MiningConfig, model_base_path: str):
        super().__init__()
        self.beir_dir, self.mining = beir_dir, mining
        self.embedder_dir = storage.join(model_base_path, mining.embedder_model) if mining.embedder_model else None

    def fingerprint_data(self):
        return [self.beir_dir, dataclasses.asdict(self.mining)]

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

        ctx.log.info("BM25 over %d documents for %d queries", len(doc_ids), len(query_ids))
        rankings = {"bm25": Bm25Retriever(doc_texts).top_k(query_texts, self.mining.depth)}
        counts = {"bm25": self.mining.bm25_negatives}
        if self.mining.embedder_negatives and self.embedder_dir is not None:
            latest = latest_version(self.embedder_dir)
            if latest is None:
                ctx.log.warning("no pushed %s yet: mining with BM25 only", self.mining.embedder_model)
            else:
                ctx.log.info("embedding the corpus with %s version %d", self.mining.embedder_model, latest[0])
                with storage.local_copy(latest[1]) as local:
                    rankings["embedder"] = dense_top_k(text_embedder(local), query_texts, doc_texts,
                                                       self.mining.depth)
                counts["embedder"] = self.mining.embedder_negatives

        index = {doc: i for i, doc in enumerate(doc_ids)}
        out = Path(ctx.output_dirs["rows"])
        out.mkdir(parents=True, exist_ok=True)
        stats = {"queries": len(query_ids), "relevant": 0, **{f"negatives_{s}": 0 for s in rankings},
                 **{f"{s}_recall_at_depth": 0.0 for s in rankings}}
        with (out / ROWS_FILE).open("w") as handle:
            def write(query_number: int, doc: int, label: str, source: str) -> None:
                handle.write(json.dumps({"query_id": query_ids[query_number], "query": query_texts[query_number],
                                         "item_id": doc_ids[doc], "item_text": doc_texts[doc],
                                         "label": label, "source": source}) + "\n")

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
