"""Transform: validated examples -> token ids, with the tokenizer saved as an artifact.

The `transform_graph` artifact (vocabulary, packing settings, class names) is
what the Trainer embeds in the exported model, so the ids written here are the
ids the server computes from raw strings.

Classifiers and the cross-encoder get one example per row (a pair packed into
one sequence); a pairwise cross-encoder (`model.ranking_loss: pairwise`) one
per (relevant item, mined negative) pair of a query, both packed with the query.
The embedder gets one example per relevant row, holding the
query, that item, and one of the query's mined negatives, each tokenized alone:
its training contrasts the item with the negative and the batch's other items.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from tfx_pipeline import storage
from tfx_pipeline.beam.examples import ReadSplit, WriteSplit, encode_int_lists
from tfx_pipeline.beam.pipeline_options import counted_pipeline
from tfx_pipeline.config import ConfigError, ModelConfig
from tfx_pipeline.dsl import Channel, Component, ExecutionContext
from tfx_pipeline.model.preprocessing import TextPreprocessor
from tfx_pipeline.model.tasks import task_for
from tfx_pipeline.model.transform_graph import load_transform_graph, save_transform_graph


class TokenizeRows(beam.DoFn):
    """Batches of rows -> serialized examples of `token_ids`, `segment_ids`, `label_id`."""

    def __init__(self, transform_graph_dir: str):
        self.transform_graph_dir = transform_graph_dir

    def setup(self):
        self.preprocessor, class_names = load_transform_graph(self.transform_graph_dir)
        self.label_ids = {name: i for i, name in enumerate(class_names)}

    def process(self, rows):
        pairs = [row["text_pair"] for row in rows] if "text_pair" in rows[0] else None
        token_ids, segment_ids = self.preprocessor.token_and_segment_id_lists([row["text"] for row in rows], pairs)
        for row, ids, segments in zip(rows, token_ids, segment_ids):
            features = {"token_ids": ids, "label_id": self.label_ids[row["label"]]}
            if pairs is not None:
                features["segment_ids"] = segments
            yield encode_int_lists(features)


class _TokenizeQueryGroups(beam.DoFn):
    """(query id, its rows) -> the examples `examples` makes of the query text
    and its relevant and mined-negative item texts (sorted: deterministic
    whatever the shuffle); counts them under `counter`."""

    def __init__(self, transform_graph_dir: str, counter: str):
        self.transform_graph_dir, self.counter = transform_graph_dir, Metrics.counter("Transform", counter)

    def setup(self):
        self.preprocessor, _ = load_transform_graph(self.transform_graph_dir)

    def process(self, group):
        _, rows = group
        rows = sorted(rows, key=lambda row: row["text_pair"])
        positives = [row["text_pair"] for row in rows if row["label"] == "relevant"]
        negatives = [row["text_pair"] for row in rows if row["label"] != "relevant"]
        for example in self.examples(rows[0]["text"], positives, negatives):
            self.counter.inc()
            yield encode_int_lists(example)

    def examples(self, query: str, positives: list[str], negatives: list[str]):
        raise NotImplementedError


class TokenizeEmbeddingTriples(_TokenizeQueryGroups):
    """Embedder examples: `token_ids` (the query), `positive_ids` (a relevant
    item), `negative_ids` (one of its mined negatives, or an empty text when the
    query has none); every negative once (relevant items taken round-robin),
    every relevant item at least once, so no mined negative goes unused."""

    def examples(self, query, positives, negatives):
        if not positives:
            return
        negatives = negatives or [""]
        ids = self.preprocessor.token_id_lists([query, *positives, *negatives])
        query_ids, positive_ids, negative_ids = ids[0], ids[1:1 + len(positives)], ids[1 + len(positives):]
        for i in range(max(len(positive_ids), len(negative_ids))):
            yield {"token_ids": query_ids, "positive_ids": positive_ids[i % len(positive_ids)],
                   "negative_ids": negative_ids[i % len(negative_ids)]}


class TokenizeRankingPairs(_TokenizeQueryGroups):
    """Pairwise re-ranker examples: `token_ids`/`segment_ids` of the query packed
    with a relevant item, `negative_ids`/`negative_segment_ids` with one of its
    mined negatives; every negative once (relevant items taken round-robin),
    every relevant item at least once."""

    def examples(self, query, positives, negatives):
        if not positives or not negatives:
            return
        items = positives + negatives
        token_ids, segment_ids = self.preprocessor.token_and_segment_id_lists([query] * len(items), items)
        for i in range(max(len(positives), len(negatives))):
            p, n = i % len(positives), len(positives) + i % len(negatives)
            yield {"token_ids": token_ids[p], "segment_ids": segment_ids[p],
                   "negative_ids": token_ids[n], "negative_segment_ids": segment_ids[n]}


class Transform(Component):
    OUTPUTS = {"transformed_examples": "Examples", "transform_graph": "TransformGraph"}

    def __init__(self, examples: Channel, schema: Channel, model: ModelConfig, splits: list[str],
                 group_column: str | None = None):
        super().__init__({"examples": examples, "schema": schema})
        self.task = task_for(model)
        if self.task.groups_by_query and not group_column:
            raise ConfigError(f"model.task {model.task} ({model.ranking_loss}) needs split.group_column "
                              "(the query id column)")
        self.model, self.splits, self.group_column = model, list(splits), group_column

    def fingerprint_data(self):
        return [self.model.backbone.preset, self.model.sequence_length, self.model.task, self.splits,
                self.group_column, *(["pairwise"] if self.task.pairwise else [])]

    def _tokenize(self, rows, split: str, graph_dir: str):
        tokenize = self.task.tokenizer(graph_dir, f"examples:{split}")
        if self.task.groups_by_query:
            return (rows
                    | f"GroupByQuery[{split}]" >> beam.GroupBy(lambda row: row[self.group_column])
                    | f"Tokenize[{split}]" >> beam.ParDo(tokenize))
        return (rows
                | f"Batch[{split}]" >> beam.BatchElements(min_batch_size=32, max_batch_size=256)
                | f"Tokenize[{split}]" >> beam.ParDo(tokenize))

    def execute(self, ctx: ExecutionContext):
        graph_dir = ctx.output_dirs["transform_graph"]
        preprocessor = TextPreprocessor.from_preset(self.model.backbone.preset, self.model.sequence_length)
        class_names = storage.read_json(storage.join(ctx.inputs["schema"].uri, "schema.json"))["labels"]
        save_transform_graph(graph_dir, preprocessor, class_names)
        with counted_pipeline(ctx.beam_args, ctx.log) as run:
            for split in self.splits:
                rows = run.pipeline | f"Read[{split}]" >> ReadSplit(ctx.inputs["examples"].uri, split)
                _ = (self._tokenize(rows, split, graph_dir)
                     | f"Write[{split}]" >> WriteSplit(ctx.output_dirs["transformed_examples"], split))
        counts = ctx.inputs["examples"].properties.get("split_counts", {})
        if self.task.groups_by_query:  # Per query's rows, not per row.
            counts = {split: run.counters.get(f"examples:{split}", 0) for split in self.splits}
        return {"transformed_examples": {"split_counts": counts},
                "transform_graph": {"num_classes": len(class_names), "vocabulary_size": preprocessor.vocabulary_size,
                                    "sequence_length": self.model.sequence_length}}
