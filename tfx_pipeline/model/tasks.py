"""Task models composed onto a BERT backbone.

- `build_text_classifier`: classes of a text or a text pair (the cross-encoder
  re-ranker is one, with the classes `irrelevant` and `relevant`).
- `build_text_embedder`: one L2-normalised vector per text (the bi-encoder).
- `build_contrastive_trainer`: wraps the embedder for training on
  (query, positive, negative) triples against in-batch negatives.
- `build_pairwise_trainer`: wraps the cross-encoder for training on
  (query + relevant item, query + mined negative) pairs (`model.ranking_loss: pairwise`).

Example:

>>> import keras_hub
>>> backbone = keras_hub.models.BertBackbone(vocabulary_size=100, num_layers=1,
...     num_heads=1, hidden_dim=8, intermediate_dim=16, max_sequence_length=16)
>>> model = build_text_classifier(backbone, num_classes=3)
>>> sorted(model.input)
['padding_mask', 'segment_ids', 'token_ids']
"""

from __future__ import annotations

import keras
import keras_hub


def feature_inputs() -> dict[str, keras.KerasTensor]:
    """Token ids, padding mask and segment ids of any sequence length."""
    return {
        "token_ids": keras.Input(shape=(None,), dtype="int32", name="token_ids"),
        "padding_mask": keras.Input(shape=(None,), dtype="int32", name="padding_mask"),
        "segment_ids": keras.Input(shape=(None,), dtype="int32", name="segment_ids"),
    }


def build_text_classifier(
    backbone: keras_hub.models.BertBackbone,
    num_classes: int,
    pooling: str = "mean",
    dropout: float = 0.1,
) -> keras.Model:
    """Backbone -> pooling -> dropout -> dense logits.

    Serves single texts and text pairs alike: a pair is packed into one
    sequence with segment ids by the preprocessor. Mean pooling matches how
    sentence encoders such as MiniLM were trained; `cls` uses BERT's pooler.
    """
    inputs = feature_inputs()
    pooled = keras.layers.Dropout(dropout, name="head_dropout")(pool(backbone, inputs, pooling))
    # float32 logits even under mixed precision, for a stable softmax.
    logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")(pooled)
    return keras.Model(inputs, logits, name="text_classifier")


class EnsembleAverage(keras.layers.Layer):
    """The log of the members' mean probability: a softmax over it is exactly that mean."""

    def __init__(self, members: list[keras.Model], **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.members = members

    def call(self, inputs):
        probabilities = [keras.ops.softmax(keras.ops.cast(member(inputs), "float32"), axis=-1)
                         for member in self.members]
        mean = keras.ops.mean(keras.ops.stack(probabilities), axis=0)
        return keras.ops.log(keras.ops.maximum(mean, 1e-12))


def build_ensemble_average(members: list[keras.Model]) -> keras.Model:
    """Classifiers of the same classes -> one whose softmax is their mean
    probability, so the export (which applies the softmax) serves the mean."""
    inputs = feature_inputs()
    return keras.Model(inputs, EnsembleAverage(members, name="ensemble_average")(inputs), name="ensemble")


def pool(backbone: keras_hub.models.BertBackbone, inputs: dict, pooling: str) -> keras.KerasTensor:
    """One vector per sequence: the mean of the token vectors (`mean`), BERT's
    pooled [CLS] (`cls`), or both concatenated (`mean_cls`)."""
    if pooling not in ("mean", "cls", "mean_cls"):
        raise ValueError(f"pooling must be 'mean', 'cls' or 'mean_cls', got {pooling!r}")
    encoded = backbone(inputs)
    if pooling == "cls":
        return encoded["pooled_output"]
    mean = keras.layers.GlobalAveragePooling1D(name="mean_pooling")(
        encoded["sequence_output"], mask=inputs["padding_mask"])
    if pooling == "mean":
        # BERT's pooler is unused here; freezing it keeps the optimizer from
        # warning about variables without gradients.
        backbone.get_layer("pooled_dense").trainable = False
        return mean
    return keras.layers.Concatenate(name="mean_cls_pooling")([mean, encoded["pooled_output"]])


def build_text_embedder(backbone: keras_hub.models.BertBackbone, pooling: str = "mean") -> keras.Model:
    """Backbone -> pooling -> L2 normalisation: cosine similarity is a dot product.

    >>> import keras_hub
    >>> backbone = keras_hub.models.BertBackbone(vocabulary_size=100, num_layers=1,
    ...     num_heads=1, hidden_dim=8, intermediate_dim=16, max_sequence_length=16)
    >>> embedder = build_text_embedder(backbone)
    >>> import numpy as np
    >>> ids = np.array([[2, 5, 7, 3]], "int32")
    >>> vector = embedder({"token_ids": ids, "padding_mask": np.ones_like(ids), "segment_ids": 0 * ids})
    >>> round(float(np.linalg.norm(vector)), 4)
    1.0
    """
    inputs = feature_inputs()
    vector = keras.layers.UnitNormalization(axis=-1, name="l2_normalize", dtype="float32")(
        pool(backbone, inputs, pooling))
    return keras.Model(inputs, vector, name="text_embedder")


TRIPLE_PARTS = ("query", "positive", "negative")


def build_contrastive_trainer(embedder: keras.Model, scale: float = 20.0) -> keras.Model:
    """(query, positive, negative) features -> similarity logits [B, 2B].

    Row i scores query i against every positive and negative of the batch; its
    target is column i (`in_batch_softmax_loss`). Inputs are named
    `<part>_<feature>`, e.g. `query_token_ids`. `scale` is the inverse softmax
    temperature on cosine similarities (20, as sentence-transformers uses).
    """
    inputs = {f"{part}_{name}": keras.Input(shape=(None,), dtype="int32", name=f"{part}_{name}")
              for part in TRIPLE_PARTS for name in ("token_ids", "padding_mask", "segment_ids")}
    query, positive, negative = (
        embedder({name: inputs[f"{part}_{name}"] for name in ("token_ids", "padding_mask", "segment_ids")})
        for part in TRIPLE_PARTS)
    items = keras.ops.concatenate([positive, negative], axis=0)
    logits = keras.ops.matmul(query, keras.ops.transpose(items)) * scale
    return keras.Model(inputs, logits, name="contrastive_trainer")


def in_batch_softmax_loss(y_true, y_pred):
    """Cross-entropy of each query's own positive (column i) among the batch's
    items; `y_true` is unused. Per replica, so it is correct under any strategy."""
    targets = keras.ops.arange(keras.ops.shape(y_pred)[0])
    return keras.losses.sparse_categorical_crossentropy(targets, y_pred, from_logits=True)


def in_batch_accuracy(y_true, y_pred):
    """How often a query's own positive outscores every other item of the batch."""
    targets = keras.ops.arange(keras.ops.shape(y_pred)[0])
    return keras.ops.cast(keras.ops.equal(keras.ops.argmax(y_pred, axis=-1), targets), "float32")


PAIR_PARTS = ("positive", "negative")


def build_pairwise_trainer(scorer: keras.Model) -> keras.Model:
    """(query, relevant item) and (query, mined negative) pairs, each packed into one sequence ->
    [B, 2] relevance scores (the logit gap relevant - irrelevant, what the export serves as `score`).

    Inputs are named `<part>_<feature>`, e.g. `negative_token_ids`; `scorer` is the two-class
    cross-encoder, trained inside this wrapper and exported alone.
    """
    inputs = {f"{part}_{name}": keras.Input(shape=(None,), dtype="int32", name=f"{part}_{name}")
              for part in PAIR_PARTS for name in ("token_ids", "padding_mask", "segment_ids")}
    scores = []
    for part in PAIR_PARTS:
        logits = keras.ops.cast(scorer({name: inputs[f"{part}_{name}"]
                                        for name in ("token_ids", "padding_mask", "segment_ids")}), "float32")
        scores.append(logits[:, 1] - logits[:, 0])
    return keras.Model(inputs, keras.ops.stack(scores, axis=1), name="pairwise_trainer")


def pairwise_loss(y_true, y_pred):
    """RankNet's logistic loss on s(relevant) - s(negative), plus half the pointwise cross-entropy of
    each pair (sigmoid of a logit gap is the exported `probability`), so scores order a query's
    candidates and the probability stays meaningful. `y_true` is unused."""
    positive, negative = y_pred[:, 0], y_pred[:, 1]
    ranking = keras.ops.softplus(negative - positive)
    pointwise = keras.ops.softplus(-positive) + keras.ops.softplus(negative)
    return ranking + 0.5 * pointwise


def pairwise_accuracy(y_true, y_pred):
    """How often the relevant item outscores the mined negative."""
    return keras.ops.cast(y_pred[:, 0] > y_pred[:, 1], "float32")
