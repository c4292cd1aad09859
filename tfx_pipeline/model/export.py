"""The SavedModel that TF Serving serves: raw strings in, classes out.

Signatures:
- `serving_default` (Predict): `text` DT_STRING [-1] (and `text_pair` for pair
  tasks) -> `probabilities` [-1, C], `class_ids` [-1], `class_names` [-1],
  `all_class_names` [-1, C].
- `classify` (Classify API): `inputs`, serialized tf.Example with a bytes
  feature `text` -> `classes` [-1, C], `scores` [-1, C].
- `tokenize`: `text` -> `token_ids`, `padding_mask`, `segment_ids`; the ids
  the model sees, for debugging and for checking training/serving skew.

Ranking models (same `tokenize` signature):
- embedder `serving_default`: `text` [-1] -> `embedding` [-1, D], L2-normalised.
- re-ranker `serving_default`: `query` [-1], `item_text` [-1] (aligned) ->
  `score` [-1] (logit of `relevant` minus `irrelevant`: higher is more
  relevant) and `probability` [-1] (of `relevant`).

Every export computes in float32 unless asked otherwise (`dtype_policy`):
how a model was trained (mixed_bfloat16 on a CPU that has it or a TPU,
mixed_float16 on a GPU) must not decide how a server computes. A bfloat16
servable is a compression variant (`compression.variants[].precision`),
pushed only where it measures faster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import keras
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tfx_pipeline.model.preprocessing import TextPreprocessor

CLASSIFY_METHOD_NAME = "tensorflow/serving/classify"
# The exported model's weights in `model.variables` order: `tf.saved_model.load(dir).model_variables`.
MODEL_VARIABLES = "model_variables"


STRING_BATCH = tf.TensorSpec([None], tf.string)


def with_compute_dtype(model: keras.Model, dtype_policy: str = "float32") -> keras.Model:
    """The model, its layers switched to ``dtype_policy`` (weights unchanged:
    mixed-precision layers keep float32 variables). Quantized layers keep theirs.

    >>> import keras
    >>> keras.mixed_precision.set_global_policy("mixed_bfloat16")
    >>> dense = keras.layers.Dense(2)
    >>> model = keras.Sequential([keras.Input((3,)), dense])
    >>> keras.mixed_precision.set_global_policy("float32")
    >>> dense.compute_dtype, with_compute_dtype(model).layers[0].compute_dtype
    ('bfloat16', 'float32')
    """
    for layer in model._flatten_layers(include_self=True):
        if layer.dtype_policy.quantization_mode is None and layer.dtype_policy.name != dtype_policy:
            layer.dtype_policy = dtype_policy
    return model


def _archive(model: keras.Model, preprocessor: TextPreprocessor, dtype_policy: str) -> keras.export.ExportArchive:
    """An archive of the model (switched to `dtype_policy`, see `with_compute_dtype`) and the
    in-graph tokenizer, with `tokenize`."""
    with_compute_dtype(model, dtype_policy)
    preprocessor(tf.constant([""]))  # Builds the packing layer, which export requires.
    archive = keras.export.ExportArchive()
    # Not `archive.track(model)`: it stores every weight twice, and TF Serving then holds two copies
    # (keras-team/keras#23553). The endpoints save the variables they use; this collection names the
    # same tf.Variables, in the model's order, for whoever rebuilds the Keras model (`load_teacher`).
    archive.add_variable_collection(MODEL_VARIABLES, [variable.value for variable in model.variables])
    archive.track(preprocessor.packer)

    def tokenize(text):
        features = preprocessor(text)
        return {name: features[name] for name in ("token_ids", "padding_mask", "segment_ids")}

    archive.add_endpoint("tokenize", tokenize, [STRING_BATCH])
    return archive


def export_text_embedder(embedder: keras.Model, preprocessor: TextPreprocessor, export_dir: str | Path,
                         dtype_policy: str = "float32") -> None:
    archive = _archive(embedder, preprocessor, dtype_policy)

    def serving_default(text):
        return {"embedding": tf.cast(embedder(preprocessor(text), training=False), tf.float32)}

    archive.add_endpoint("serving_default", serving_default, [STRING_BATCH])
    archive.write_out(str(export_dir), verbose=False)


def export_pair_scorer(model: keras.Model, preprocessor: TextPreprocessor, class_names: Sequence[str],
                       export_dir: str | Path, dtype_policy: str = "float32") -> None:
    """The cross-encoder: a two-class pair classifier read as a relevance score."""
    relevant = list(class_names).index("relevant")
    archive = _archive(model, preprocessor, dtype_policy)

    def serving_default(query, item_text):
        logits = tf.cast(model(preprocessor(query, item_text), training=False), tf.float32)
        return {"score": logits[:, relevant] - logits[:, 1 - relevant],
                "probability": tf.nn.softmax(logits, axis=-1)[:, relevant]}

    archive.add_endpoint("serving_default", serving_default, [STRING_BATCH, STRING_BATCH])
    archive.write_out(str(export_dir), verbose=False)


def export_text_classifier(
    model: keras.Model,
    preprocessor: TextPreprocessor,
    class_names: Sequence[str],
    export_dir: str | Path,
    text_pair: bool = False,
    dtype_policy: str = "float32",
) -> None:
    archive = _archive(model, preprocessor, dtype_policy)
    all_names = tf.constant(list(class_names))

    def predict(text, pair=None):
        # float32 out whatever the model computes in: the API's dtype, and sums over many rows stay exact.
        logits = tf.cast(model(preprocessor(text, pair), training=False), tf.float32)
        probabilities = tf.nn.softmax(logits, axis=-1)
        class_ids = tf.argmax(probabilities, axis=-1)
        return {
            "probabilities": probabilities,
            "class_ids": class_ids,
            "class_names": tf.gather(all_names, class_ids),
            "all_class_names": tf.tile(all_names[tf.newaxis], [tf.shape(text)[0], 1]),
        }

    if text_pair:
        def serving_pair(text, text_pair):
            return predict(text, text_pair)
        archive.add_endpoint("serving_default", serving_pair, [STRING_BATCH, STRING_BATCH])
    else:
        def serving_single(text):
            return predict(text)
        archive.add_endpoint("serving_default", serving_single, [STRING_BATCH])

    example_spec = {"text": tf.io.FixedLenFeature([], tf.string)}
    if text_pair:
        example_spec["text_pair"] = tf.io.FixedLenFeature([], tf.string)

    def classify(inputs):
        features = tf.io.parse_example(inputs, example_spec)
        outputs = predict(features["text"], features.get("text_pair"))
        return {"classes": outputs["all_class_names"], "scores": outputs["probabilities"]}

    archive.add_endpoint("classify", classify, [STRING_BATCH])
    archive.write_out(str(export_dir), verbose=False)
    set_method_name(Path(export_dir), "classify", CLASSIFY_METHOD_NAME)


def matmul_dtypes(export_dir: str | Path) -> set[str]:
    """The dtypes the SavedModel's matrix products (MatMul, BatchMatMulV2) compute in:
    what a server pays for, whatever the variables are stored as."""
    saved_model = saved_model_pb2.SavedModel.FromString((Path(export_dir) / "saved_model.pb").read_bytes())
    return {tf.dtypes.as_dtype(node.attr["T"].type).name
            for function in saved_model.meta_graphs[0].graph_def.library.function
            for node in function.node_def if node.op in ("MatMul", "BatchMatMulV2")}


def set_method_name(export_dir: Path, signature: str, method_name: str) -> None:
    """TF Serving's Classify API requires the classify method name, which
    TF2's SavedModel writer does not set; patch it into saved_model.pb."""
    path = export_dir / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel.FromString(path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        meta_graph.signature_def[signature].method_name = method_name
    path.write_bytes(saved_model.SerializeToString())
