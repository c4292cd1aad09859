"""The model tasks (`model.task`), and the task models they compose onto a BERT backbone.

`task_for(config.model)` is the `Task` of a configuration: what the pipeline does
differently per task, from Transform to Pusher (which examples Transform makes,
the model built and how it trains, the signatures exported and warmed up, how
the Evaluator judges it, whether ensembles and compression variants apply):

- `TextClassificationTask` (`text_classification`): the classes of one text.
- `TextPairClassificationTask` (`text_pair_classification`): the classes of a text pair.
- `TextPairRankingTask` (`text_pair_ranking`): the cross-encoder re-ranker, a relevance score per (query, item).
- `TextEmbeddingTask` (`text_embedding`): the bi-encoder, one vector per text.

The builders the tasks delegate to:

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
>>> from tfx_pipeline.config import ModelConfig
>>> task = task_for(ModelConfig(task="text_pair_ranking", ranking_loss="pairwise"))
>>> type(task).__name__, task.pairwise, dict(task.signature_inputs)
('TextPairRankingTask', True, {'query': 'text', 'item_text': 'text_pair'})
>>> exported, trained = task.build(backbone, num_classes=2)
>>> exported.name, trained.name
('text_classifier', 'pairwise_trainer')
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence, cast

import keras
import keras_hub
import numpy as np

from tfx_pipeline.config import ConfigError, ModelConfig, TrainingConfig
from tfx_pipeline.model.export import export_pair_scorer, export_text_classifier, export_text_embedder
from tfx_pipeline.model.optimization import classification_loss
from tfx_pipeline.model.preprocessing import TextPreprocessor
from tfx_pipeline.model.training_data import make_dataset, make_pair_dataset, make_triple_dataset

if TYPE_CHECKING:
    import tensorflow as tf

    from tfx_pipeline.model.training import TaskData


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
    target is column i (`in_batch_softmax_loss`); another copy of its relevant item is
    masked out. Inputs are named
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
    logits = MaskRepeatedPositives(name="mask_repeated_positives")(logits, inputs["positive_token_ids"])
    return keras.Model(inputs, logits, name="contrastive_trainer")


class MaskRepeatedPositives(keras.layers.Layer):
    """A relevant item with several mined negatives is in several examples: where one batch holds
    it twice, each copy is masked out of the other's softmax (it is not that query's negative)."""

    def call(self, logits, positive_ids):
        rows = keras.ops.arange(keras.ops.shape(positive_ids)[0])
        same = keras.ops.all(keras.ops.equal(positive_ids[:, None, :], positive_ids[None, :, :]), axis=-1)
        copies = keras.ops.logical_and(same, keras.ops.not_equal(rows[:, None], rows[None, :]))
        masked = keras.ops.concatenate([copies, keras.ops.zeros_like(copies)], axis=1)
        return keras.ops.where(masked, keras.ops.full_like(logits, -1e4), logits)

    def compute_output_shape(self, logits_shape, positive_ids_shape):
        return logits_shape


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


class Task:
    """One `model.task`: what the pipeline does differently for it. Built by `task_for`.

    The class attributes say what the task's model serves and how it is judged; the
    methods build, train and export it, and pick Transform's tokenizer for it.
    """

    name: ClassVar[str]
    # serving_default's inputs, each with the example field it takes (the Pusher's warm-up requests).
    signature_inputs: ClassVar[Mapping[str, str]] = {"text": "text"}
    # serving_default (and classify) also take `text_pair`, the rows' second text.
    text_pair: ClassVar[bool] = False
    # Judged on full-corpus retrieval as the ranker app does it (`evaluation.ranking`), not on labels.
    ranking: ClassVar[bool] = False
    # Judged re-ranking the top N of the hybrid (BM25 + pushed embedder) retrieval it will sit behind.
    reranks_first_stage: ClassVar[bool] = False
    # `compression.variants` (distilled students, int8 kernels) can be made of its models.
    compressible: ClassVar[bool] = False

    def __init__(self, model: ModelConfig):
        self.model = model

    @property
    def pairwise(self) -> bool:
        """Trained on (relevant, negative) pairs of a query, with a ranking loss on their score gap."""
        return False

    @property
    def groups_by_query(self) -> bool:
        """Transform makes its examples of each query's rows together: it needs `split.group_column`,
        and its `tokenizer` takes (query id, rows) groups instead of batches of rows."""
        return False

    def build(self, backbone: keras_hub.models.BertBackbone, num_classes: int) -> tuple[keras.Model, keras.Model]:
        """(the model exported, the model trained: the same one, or a wrapper that trains it)."""
        raise NotImplementedError

    def dataset(self, data: TaskData, files: str, batch_size: int, shuffle: bool, seed: int,
                soft_targets: np.ndarray | None = None) -> tf.data.Dataset:
        """Batches of (the trained model's inputs, targets[, example weights]) from Transform's files."""
        raise NotImplementedError

    def compile_arguments(self, training: TrainingConfig) -> dict[str, Any]:
        """The trained model's loss and metrics (a metric named `accuracy` where there is one)."""
        raise NotImplementedError

    def export(self, model: keras.Model, preprocessor: TextPreprocessor, class_names: Sequence[str],
               export_dir: str | Path, **options: Any) -> None:
        """Writes the SavedModel that TF Serving serves (`tfx_pipeline.model.export`); `options` are
        the exporter's further keywords."""
        raise NotImplementedError

    def tokenizer(self, transform_graph_dir: str, counter: str):
        """Transform's Beam DoFn making this task's examples; a per-query one counts them under `counter`."""
        raise NotImplementedError

    def check_ensemble(self) -> None:
        """Raises ConfigError when `training.ensemble` cannot average or distil this task's models."""

    def check_compressible(self) -> None:
        """Raises ConfigError when `compression.variants` cannot be made of this task's models."""
        if not self.compressible:
            raise ConfigError(f"compression: variants are made of classifiers, not {self.name} models")


class ClassifierTask(Task):
    """A dense softmax head on the pooled backbone, trained on one labelled example per row
    (a text pair packed into one sequence); what the classification tasks and the pointwise
    re-ranker share."""

    def build(self, backbone, num_classes):
        classifier = build_text_classifier(backbone, num_classes, self.model.pooling, self.model.dropout)
        return classifier, classifier

    def dataset(self, data, files, batch_size, shuffle, seed, soft_targets=None):
        return make_dataset(files, batch_size, self.model.sequence_length, shuffle=shuffle, seed=seed,
                            num_classes=len(data.class_names), soft_targets=soft_targets,
                            soft_target_weight=data.args.training.ensemble.soft_target_weight,
                            class_weights=data.class_weights if shuffle else None)

    def compile_arguments(self, training):
        # Class weights arrive as per-example weights in the dataset: they weigh the loss, not the accuracy.
        return {"loss": classification_loss(training.label_smoothing),
                "metrics": [keras.metrics.CategoricalAccuracy(name="accuracy")]}

    def export(self, model, preprocessor, class_names, export_dir, **options):
        export_text_classifier(model, preprocessor, class_names, export_dir, text_pair=self.text_pair, **options)

    def tokenizer(self, transform_graph_dir, counter):
        from tfx_pipeline.components.transform import TokenizeRows  # The component imports this module.
        return TokenizeRows(transform_graph_dir)


class TextClassificationTask(ClassifierTask):
    """`text_classification`: the classes of one text.

    Exports `serving_default` (`text` -> `probabilities`, `class_ids`, `class_names`,
    `all_class_names`), `classify` (tf.Example `text` -> `classes`, `scores`) and
    `tokenize`; judged on the eval split's labels; compression variants and ensembles apply.
    """

    name = "text_classification"
    compressible = True


class TextPairClassificationTask(TextClassificationTask):
    """`text_pair_classification`: the classes of a pair of texts, packed into one sequence.

    Exports the single-text signatures with a second input `text_pair` (a tf.Example
    feature of `classify`); judged, compressed and ensembled as the single-text task.
    """

    name = "text_pair_classification"
    signature_inputs = {"text": "text", "text_pair": "text_pair"}
    text_pair = True


class TextPairRankingTask(ClassifierTask):
    """`text_pair_ranking`: the cross-encoder re-ranker, a two-class (`irrelevant`, `relevant`)
    classifier of (query, item) pairs read as a relevance score.

    Exports `serving_default` (`query`, `item_text` -> `score`, `probability`) and `tokenize`;
    judged re-ranking the hybrid first stage. Pointwise, it trains as a classifier (ensembles
    apply); with `model.ranking_loss: pairwise`, on (relevant, mined negative) pairs of a query
    inside `build_pairwise_trainer`.
    """

    name = "text_pair_ranking"
    signature_inputs = {"query": "text", "item_text": "text_pair"}
    ranking = True
    reranks_first_stage = True

    @property
    def pairwise(self) -> bool:
        return self.model.ranking_loss == "pairwise"

    @property
    def groups_by_query(self) -> bool:
        return self.pairwise

    def build(self, backbone, num_classes):
        scorer, _ = super().build(backbone, num_classes)
        return scorer, build_pairwise_trainer(scorer) if self.pairwise else scorer

    def dataset(self, data, files, batch_size, shuffle, seed, soft_targets=None):
        if self.pairwise:
            return make_pair_dataset(files, batch_size, shuffle=shuffle, seed=seed)
        return super().dataset(data, files, batch_size, shuffle, seed, soft_targets)

    def compile_arguments(self, training):
        if self.pairwise:  # named accuracy, so early_stopping_monitor val_accuracy works here too
            return {"loss": pairwise_loss, "metrics": [keras.metrics.MeanMetricWrapper(pairwise_accuracy,
                                                                                       name="accuracy")]}
        return super().compile_arguments(training)

    def export(self, model, preprocessor, class_names, export_dir, **options):
        export_pair_scorer(model, preprocessor, class_names, export_dir, **options)

    def tokenizer(self, transform_graph_dir, counter):
        if self.pairwise:
            from tfx_pipeline.components.transform import TokenizeRankingPairs
            return TokenizeRankingPairs(transform_graph_dir, counter)
        return super().tokenizer(transform_graph_dir, counter)

    def check_ensemble(self):
        if self.pairwise:
            raise ConfigError("training.ensemble: not with model.ranking_loss pairwise (its examples are pairs)")


class TextEmbeddingTask(Task):
    """`text_embedding`: the bi-encoder, one L2-normalised vector per text (cosine similarity is a
    dot product), trained on (query, relevant item, mined negative) triples against in-batch negatives.

    Exports `serving_default` (`text` -> `embedding`) and `tokenize`; judged on full-corpus
    retrieval. No ensembles, no compression variants.
    """

    name = "text_embedding"
    ranking = True

    @property
    def groups_by_query(self) -> bool:
        return True

    def build(self, backbone, num_classes):
        embedder = build_text_embedder(backbone, self.model.pooling)
        return embedder, build_contrastive_trainer(embedder)

    def dataset(self, data, files, batch_size, shuffle, seed, soft_targets=None):
        return make_triple_dataset(files, batch_size, shuffle=shuffle, seed=seed)

    def compile_arguments(self, training):
        return {"loss": in_batch_softmax_loss, "metrics": [in_batch_accuracy]}

    def export(self, model, preprocessor, class_names, export_dir, **options):
        export_text_embedder(model, preprocessor, export_dir, **options)

    def tokenizer(self, transform_graph_dir, counter):
        from tfx_pipeline.components.transform import TokenizeEmbeddingTriples
        return TokenizeEmbeddingTriples(transform_graph_dir, counter)

    def check_ensemble(self):
        raise ConfigError("training.ensemble: ensembles are for classifiers and re-rankers, not text_embedding")


# The registry: each `model.task` name and its Task.
TASKS: Mapping[str, type[Task]] = {task.name: task for task in (
    TextClassificationTask, TextPairClassificationTask, TextPairRankingTask, TextEmbeddingTask)}


def task_for(model: ModelConfig | str) -> Task:
    """The Task of a model configuration, or of a trained model's `task` property (a name: its
    other settings are the defaults, which serving and evaluating the model do not use).

    >>> from tfx_pipeline.config import RANKING_TASKS
    >>> sorted(name for name in TASKS if task_for(name).ranking) == sorted(RANKING_TASKS)
    True
    """
    config = model if isinstance(model, ModelConfig) else ModelConfig(task=cast(Any, model))
    return TASKS[config.task](config)
