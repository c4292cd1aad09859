"""The text-pair task end to end: two text columns in, a two-input signature out."""

import json

import tensorflow as tf

from tests.conftest import TINY_BERT
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.pipeline import create_pipeline
from tfx_pipeline.runner import LocalDagRunner

TOPICS = {"card": ["my card is lost", "card delivery status", "new card request"],
          "rate": ["euro exchange rate", "currency conversion fee", "dollar rate today"]}


def test_text_pair_pipeline_trains_and_serves_two_inputs(tmp_path):
    rows = []
    for i in range(120):
        query_topic, item_topic = ("card", "rate")[i % 2], ("card", "rate")[(i // 2) % 2]
        # The label depends on the second text alone: a model that never sees
        # `text_pair` cannot beat chance.
        rows.append({"query": f"{TOPICS[query_topic][i % 3]} {i}", "item": f"{TOPICS[item_topic][(i + 1) % 3]}",
                     "relevant": "yes" if item_topic == "card" else "no"})
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    config = PipelineConfig.from_dict({
        "name": "pairs", "pipeline_root": str(tmp_path / "root"),
        "data": {"path": str(tmp_path / "pairs.jsonl"), "text_column": "query", "text_pair_column": "item",
                 "label_column": "relevant", "labels": ["no", "yes"]},
        "model": {"task": "text_pair_classification", "sequence_length": 32,
                  "backbone": {"architecture": TINY_BERT}},
        "training": {"epochs": 8, "learning_rate": 1e-3, "batch_size": 16},
        "evaluation": {"thresholds": {"lower_bound": 0.8}},
        "push": {"model_base_path": str(tmp_path / "models")},
    })
    record = LocalDagRunner().run(create_pipeline(config))
    assert record["blessed"], record.get("blessing_reason")
    assert record["pushed_version"] == 1

    import tensorflow_text  # noqa: F401
    served = tf.saved_model.load(str(tmp_path / "models/pairs/1")).signatures["serving_default"]
    assert set(served.structured_input_signature[1]) == {"text", "text_pair"}
    out = served(text=tf.constant(["euro exchange rate", "euro exchange rate"]),
                 text_pair=tf.constant(["new card request", "dollar rate today"]))
    assert [name.decode() for name in out["class_names"].numpy()] == ["yes", "no"]
