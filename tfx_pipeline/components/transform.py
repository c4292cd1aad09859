"""Transform: validated examples -> token ids, with the tokenizer saved as an artifact.

The `transform_graph` artifact (vocabulary, packing settings, class names) is
what the Trainer embeds in the exported model, so the ids written here are the
ids the server computes from raw strings.
"""

from __future__ import annotations

import apache_beam as beam

from tfx_pipeline.beam.examples import ReadSplit, WriteSplit, encode_int_lists
from tfx_pipeline.beam.pipeline_options import counted_pipeline
from tfx_pipeline.config import ModelConfig
from tfx_pipeline.dsl import Channel, Component, ExecutionContext, read_json
from tfx_pipeline.model.preprocessing import TextPreprocessor
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


class Transform(Component):
    OUTPUTS = {"transformed_examples": "Examples", "transform_graph": "TransformGraph"}

    def __init__(self, examples: Channel, schema: Channel, model: ModelConfig, splits: list[str]):
        super().__init__({"examples": examples, "schema": schema})
        self.model, self.splits = model, list(splits)

    def fingerprint_data(self):
        return [self.model.backbone.preset, self.model.sequence_length, self.splits]

    def execute(self, ctx: ExecutionContext):
        graph_dir = ctx.output_dirs["transform_graph"]
        preprocessor = TextPreprocessor.from_preset(self.model.backbone.preset, self.model.sequence_length)
        class_names = read_json(ctx.inputs["schema"].uri / "schema.json")["labels"]
        save_transform_graph(graph_dir, preprocessor, class_names)
        with counted_pipeline(ctx.beam_args, ctx.log) as run:
            for split in self.splits:
                _ = (run.pipeline
                     | f"Read[{split}]" >> ReadSplit(ctx.inputs["examples"].uri, split)
                     | f"Batch[{split}]" >> beam.BatchElements(min_batch_size=32, max_batch_size=256)
                     | f"Tokenize[{split}]" >> beam.ParDo(TokenizeRows(str(graph_dir)))
                     | f"Write[{split}]" >> WriteSplit(ctx.output_dirs["transformed_examples"], split))
        counts = ctx.inputs["examples"].properties.get("split_counts", {})
        return {"transformed_examples": {"split_counts": counts},
                "transform_graph": {"num_classes": len(class_names), "vocabulary_size": preprocessor.vocabulary_size,
                                    "sequence_length": self.model.sequence_length}}
