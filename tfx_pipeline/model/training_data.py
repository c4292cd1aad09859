"""tf.data input from Transform's TFRecords of unpadded token ids.

Batches are built from examples of similar length and padded to a multiple of
16 tokens, the same rule the serving signature applies, so training spends
little compute on padding and sees a handful of shapes.
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np
import tensorflow as tf

from tfx_pipeline.model.preprocessing import PAD_MULTIPLE

TRANSFORMED_FEATURES = {
    "token_ids": tf.io.VarLenFeature(tf.int64),
    "segment_ids": tf.io.VarLenFeature(tf.int64),
    "label_id": tf.io.FixedLenFeature([], tf.int64),
}


def make_dataset(
    file_pattern: str,
    batch_size: int,
    sequence_length: int,
    shuffle: bool,
    seed: int = 0,
    *,
    num_classes: int | None = None,
    soft_targets: np.ndarray | None = None,
    soft_target_weight: float = 0.0,
    class_weights: np.ndarray | None = None,
) -> tf.data.Dataset:
    """Yields (features, label_id) batches of `batch_size` examples.

    With `num_classes`, the target is a [B, C] distribution instead: the
    one-hot label, mixed with `soft_targets` (one row per example, in file
    order: the ensemble's probabilities) at `soft_target_weight`. With
    `class_weights` ([C]), each example also carries the weight of its class.
    """
    files = tf.data.Dataset.list_files(file_pattern, shuffle=False)
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    # The file-order index, before shuffling, finds each example's soft target.
    dataset = dataset.enumerate()
    if shuffle:
        dataset = dataset.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(lambda index, record: (index, *_parse(record)), num_parallel_calls=tf.data.AUTOTUNE)
    if num_classes is not None:
        dataset = dataset.map(_target_distribution(num_classes, soft_targets, soft_target_weight))
    else:  # The sparse label is the target.
        dataset = dataset.map(lambda index, features, label: (index, features, label, label))
    if class_weights is not None:
        weights = tf.constant(class_weights, tf.float32)
        dataset = dataset.map(lambda index, features, target, label: (
            index, features, target, label, tf.gather(weights, label)))
    # Drop the index and the label id (kept only for the weights).
    dataset = dataset.map(lambda index, features, target, label, *weight: (features, target, *weight))
    boundaries = list(range(PAD_MULTIPLE + 1, sequence_length + 1, PAD_MULTIPLE))
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda features, *rest: tf.shape(features["token_ids"])[0],
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padding_values=({"token_ids": 0, "segment_ids": 0, "padding_mask": 0},
                        *[None] * (1 + (class_weights is not None))),
    )
    return dataset.map(_pad_to_multiple).prefetch(tf.data.AUTOTUNE)


def _target_distribution(num_classes: int, soft_targets: np.ndarray | None, soft_target_weight: float):
    soft = None if soft_targets is None else tf.constant(soft_targets, tf.float32)

    def target(index, features, label):
        one_hot = tf.one_hot(label, num_classes, dtype=tf.float32)
        if soft is not None:
            one_hot = soft_target_weight * tf.gather(soft, index) + (1.0 - soft_target_weight) * one_hot
        return index, features, one_hot, label

    return target


def make_ordered_batches(file_pattern: str, batch_size: int) -> tf.data.Dataset:
    """The features of every example in file order (the order `make_dataset`
    indexes soft targets by), in padded batches, without labels."""
    files = tf.data.Dataset.list_files(file_pattern, shuffle=False)
    return (tf.data.TFRecordDataset(files, compression_type="GZIP")
            .map(lambda record: _parse(record)[0], num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .padded_batch(batch_size)
            .prefetch(tf.data.AUTOTUNE))


def label_counts(file_pattern: str, num_classes: int) -> np.ndarray:
    """How many examples of each label id the files hold."""
    files = tf.data.Dataset.list_files(file_pattern, shuffle=False)
    labels = tf.data.TFRecordDataset(files, compression_type="GZIP").map(
        lambda record: tf.io.parse_single_example(record, {"label_id": TRANSFORMED_FEATURES["label_id"]})["label_id"])
    counts = np.zeros(num_classes, np.int64)
    for batch in labels.batch(4096).as_numpy_iterator():
        counts += np.bincount(batch, minlength=num_classes)[:num_classes]
    return counts


def _parse(record: tf.Tensor):
    parsed = tf.io.parse_single_example(record, TRANSFORMED_FEATURES)
    token_ids = tf.cast(tf.sparse.to_dense(parsed["token_ids"]), tf.int32)
    segment_ids = tf.cast(tf.sparse.to_dense(parsed["segment_ids"]), tf.int32)
    # Single-text examples store no segment ids: all zeros.
    segment_ids = tf.cond(tf.size(segment_ids) > 0, lambda: segment_ids, lambda: tf.zeros_like(token_ids))
    features = {"token_ids": token_ids, "segment_ids": segment_ids,
                "padding_mask": tf.ones_like(token_ids)}
    return features, parsed["label_id"]


def _pad_to_multiple(features, *targets):
    width = tf.shape(features["token_ids"])[1]
    extra = (PAD_MULTIPLE - width % PAD_MULTIPLE) % PAD_MULTIPLE
    padded = {name: tf.pad(value, [[0, 0], [0, extra]]) for name, value in features.items()}
    return (padded, *targets)


# Each part of a multi-part example: (its token ids feature, its segment ids feature or None for zeros).
Parts = Mapping[str, tuple[str, Optional[str]]]
_TRIPLE_PARTS: Parts = {"query": ("token_ids", None), "positive": ("positive_ids", None),
                        "negative": ("negative_ids", None)}
_PAIR_PARTS: Parts = {"positive": ("token_ids", "segment_ids"), "negative": ("negative_ids", "negative_segment_ids")}


def make_triple_dataset(file_pattern: str, batch_size: int, shuffle: bool, seed: int = 0) -> tf.data.Dataset:
    """The embedder's (query, positive, negative) examples as `<part>_<feature>`
    inputs of `build_contrastive_trainer`, each part padded to a multiple of 16;
    the label is a placeholder (the loss's targets are the batch positions)."""
    return _make_multi_part_dataset(file_pattern, batch_size, shuffle, seed, _TRIPLE_PARTS)


def make_pair_dataset(file_pattern: str, batch_size: int, shuffle: bool, seed: int = 0) -> tf.data.Dataset:
    """The pairwise re-ranker's examples -- (query, relevant item) and (query, mined negative), each packed
    into one sequence -- as `<positive|negative>_<feature>` inputs of `build_pairwise_trainer`, each part
    padded to a multiple of 16; the label is a placeholder (the positive is always part 0)."""
    return _make_multi_part_dataset(file_pattern, batch_size, shuffle, seed, _PAIR_PARTS)


def _make_multi_part_dataset(file_pattern: str, batch_size: int, shuffle: bool, seed: int,
                             parts: Parts) -> tf.data.Dataset:
    """Examples of several token sequences as `<part>_token_ids|padding_mask|segment_ids` inputs, each part
    padded on its own to a multiple of 16, with a placeholder label."""
    feature_spec = {name: tf.io.VarLenFeature(tf.int64)
                    for sources in parts.values() for name in sources if name is not None}
    files = tf.data.Dataset.list_files(file_pattern, shuffle=False)
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if shuffle:
        dataset = dataset.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)

    def dense(parsed, name):
        return tf.cast(tf.sparse.to_dense(parsed[name]), tf.int32)

    def parse(record):
        parsed = tf.io.parse_single_example(record, feature_spec)
        features = {}
        for part, (ids_name, segments_name) in parts.items():
            ids = dense(parsed, ids_name)
            segments = dense(parsed, segments_name) if segments_name else tf.zeros_like(ids)
            features.update({f"{part}_token_ids": ids, f"{part}_padding_mask": tf.ones_like(ids),
                             f"{part}_segment_ids": segments})
        return features

    def pad_each_part(features):
        padded = {}
        for part in parts:
            width = tf.shape(features[f"{part}_token_ids"])[1]
            extra = (PAD_MULTIPLE - width % PAD_MULTIPLE) % PAD_MULTIPLE
            padded.update({name: tf.pad(value, [[0, 0], [0, extra]]) for name, value in features.items()
                           if name.startswith(f"{part}_")})
        first = next(iter(parts))
        return padded, tf.zeros([tf.shape(features[f"{first}_token_ids"])[0]], tf.int64)

    return (dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
            .padded_batch(batch_size)
            .map(pad_each_part)
            .prefetch(tf.data.AUTOTUNE))
