"""The exported SavedModel: same outputs in a fresh process, same token ids as the Beam path."""

import json
import subprocess
import sys

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tests.conftest import TINY_BERT
from tfx_pipeline.beam.examples import read_split_records, read_split_rows
from tfx_pipeline.config import BackboneConfig
from tfx_pipeline.model.backbone import load_backbone
from tfx_pipeline.model.export import CLASSIFY_METHOD_NAME, export_text_classifier, matmul_dtypes
from tfx_pipeline.model.preprocessing import TextPreprocessor
from tfx_pipeline.model.tasks import build_text_classifier

TEXTS = ["My card hasn't arrived yet", "what is the exchange rate for euros?", "", "I want to close my account " * 8]

LOAD_AND_PREDICT = """
import json, sys
import tensorflow as tf, tensorflow_text
model = tf.saved_model.load(sys.argv[1])
out = model.signatures["serving_default"](text=tf.constant(json.loads(sys.argv[2])))
print(json.dumps({k: v.numpy().tolist() for k, v in out.items() if v.dtype != tf.string}))
"""


def test_fresh_process_gives_the_training_process_outputs(tmp_path):
    preprocessor = TextPreprocessor.from_preset("all-minilm-l6-v2", sequence_length=32)
    backbone = load_backbone(BackboneConfig(architecture=TINY_BERT), preprocessor.vocabulary_size, 32)
    model = build_text_classifier(backbone, num_classes=3)
    in_process = tf.nn.softmax(model(preprocessor(tf.constant(TEXTS)), training=False)).numpy()
    export_text_classifier(model, preprocessor, ["a", "b", "c"], tmp_path / "model")

    result = subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, str(tmp_path / "model"), json.dumps(TEXTS)],
                            capture_output=True, text=True, check=True)
    exported = json.loads(result.stdout.splitlines()[-1])
    np.testing.assert_allclose(exported["probabilities"], in_process, rtol=1e-5, atol=1e-6)
    assert exported["class_ids"] == in_process.argmax(axis=1).tolist()

    # Every weight stored once (Keras' own track() stores each twice: keras-team/keras#23553).
    stored = sum(np.prod(shape) for name, shape in tf.train.list_variables(str(tmp_path / "model" / "variables" /
                                                                              "variables")) if shape)
    assert stored == sum(np.prod(variable.shape) for variable in model.variables if variable.shape)
    saved_model = saved_model_pb2.SavedModel.FromString((tmp_path / "model" / "saved_model.pb").read_bytes())
    signatures = saved_model.meta_graphs[0].signature_def
    assert signatures["classify"].method_name == CLASSIFY_METHOD_NAME
    assert list(signatures["serving_default"].inputs) == ["text"]
    assert set(signatures["serving_default"].outputs) == {"probabilities", "class_ids", "class_names",
                                                          "all_class_names"}


def test_a_model_trained_in_mixed_precision_serves_in_float32_unless_asked(tmp_path):
    preprocessor = TextPreprocessor.from_preset("all-minilm-l6-v2", sequence_length=32)
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        backbone = load_backbone(BackboneConfig(architecture=TINY_BERT), preprocessor.vocabulary_size, 32)
        model = build_text_classifier(backbone, num_classes=3)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    export_text_classifier(model, preprocessor, ["a", "b", "c"], tmp_path / "bf16", dtype_policy="mixed_bfloat16")
    assert matmul_dtypes(tmp_path / "bf16") == {"bfloat16"}
    bf16 = tf.saved_model.load(str(tmp_path / "bf16")).signatures["serving_default"](text=tf.constant(TEXTS))
    assert bf16["probabilities"].dtype == tf.float32  # the API's dtype whatever the model computes in

    export_text_classifier(model, preprocessor, ["a", "b", "c"], tmp_path / "default")
    assert matmul_dtypes(tmp_path / "default") == {"float32"}
    served = tf.saved_model.load(str(tmp_path / "default")).signatures["serving_default"]
    float32 = tf.nn.softmax(model(preprocessor(tf.constant(TEXTS)), training=False)).numpy()
    np.testing.assert_allclose(served(text=tf.constant(TEXTS))["probabilities"].numpy(), float32, rtol=1e-5,
                               atol=1e-6)


def test_padding_is_trimmed_to_the_longest_text_in_the_batch():
    preprocessor = TextPreprocessor.from_preset("all-minilm-l6-v2", sequence_length=64)
    assert preprocessor(tf.constant(["short one", "hi"]))["token_ids"].shape == (2, 16)
    assert preprocessor(tf.constant(["word " * 20]))["token_ids"].shape == (1, 32)
    assert preprocessor(tf.constant(["word " * 200]))["token_ids"].shape == (1, 64)


def test_beam_transform_and_serving_signature_tokenize_identically(trained_suite):
    record = trained_suite.records["intent"]
    transform = next(c for c in record["components"] if c["id"] == "Transform")
    validated = next(c for c in record["components"] if c["id"] == "ExampleValidator")["artifacts"]["examples"]
    texts = [row["text"] for row in read_split_rows(validated["uri"], "eval")]
    beam_ids = [list(tf.train.Example.FromString(r).features.feature["token_ids"].int64_list.value)
                for r in read_split_records(transform["artifacts"]["transformed_examples"]["uri"], "eval")]

    import tensorflow_text  # noqa: F401
    served = tf.saved_model.load(str(trained_suite.model_base_path / "intent" / "1"))
    out = served.signatures["tokenize"](text=tf.constant(texts))
    lengths = out["padding_mask"].numpy().sum(axis=1)
    serving_ids = [row[:n].tolist() for row, n in zip(out["token_ids"].numpy(), lengths)]
    assert len(texts) > 20
    assert sorted(serving_ids) == sorted(beam_ids)
