"""Raw strings -> BERT input features, as TensorFlow ops.

This one class is the tokenization of the whole suite: StatisticsGen counts
tokens with it, Transform writes its token ids to TFRecords, and the exported
SavedModel runs it inside the serving graph, so training and serving cannot
disagree.

Example:

>>> pre = TextPreprocessor.from_preset("all-minilm-l6-v2", sequence_length=16)
>>> pre.token_id_lists(["My card was declined"])
[[101, 2026, 4003, 2001, 6430, 102]]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import keras_hub
import tensorflow as tf

from tfx_pipeline.model.backbone import resolve_preset

# Batches are padded to a multiple of this many tokens, not to the maximum
# sequence length: most texts are short, and few distinct shapes keep graphs reused.
PAD_MULTIPLE = 16


class TextPreprocessor:
    """WordPiece tokenization and packing into `[CLS] a [SEP] (b [SEP])`.

    Stored as an artifact of two files, `vocab.txt` and `preprocessor.json`,
    and rebuilt from them with `load` in any process (Beam workers included).
    """

    CONFIG_FILE = "preprocessor.json"
    VOCABULARY_FILE = "vocab.txt"

    def __init__(self, vocabulary: str | Sequence[str], sequence_length: int, lowercase: bool = True):
        self.sequence_length = sequence_length
        self.lowercase = lowercase
        self.tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=lowercase)
        self.packer = keras_hub.models.BertTextClassifierPreprocessor(
            self.tokenizer, sequence_length=sequence_length)

    @classmethod
    def from_preset(cls, preset: str, sequence_length: int) -> "TextPreprocessor":
        tokenizer = keras_hub.models.BertTokenizer.from_preset(resolve_preset(preset))
        return cls(tokenizer.get_vocabulary(), sequence_length,
                   lowercase=tokenizer.get_config().get("lowercase", True))

    @classmethod
    def load(cls, directory: str | Path) -> "TextPreprocessor":
        directory = Path(directory)
        config = json.loads((directory / cls.CONFIG_FILE).read_text())
        # Read now, not by path: the directory may be a temporary download.
        return cls((directory / cls.VOCABULARY_FILE).read_text().splitlines(), **config)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / self.VOCABULARY_FILE).write_text("\n".join(self.tokenizer.get_vocabulary()) + "\n")
        (directory / self.CONFIG_FILE).write_text(json.dumps(
            {"sequence_length": self.sequence_length, "lowercase": self.lowercase}))

    @property
    def vocabulary_size(self) -> int:
        return self.tokenizer.vocabulary_size()

    @property
    def unknown_token_id(self) -> int:
        return self.tokenizer.token_to_id("[UNK]")

    def __call__(self, text: tf.Tensor, text_pair: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        """Features for a batch of strings, padded only to the longest text
        (rounded up to PAD_MULTIPLE); positions beyond it would be masked anyway."""
        # Keyword `x`: keras-hub reads a positional tuple as (x, y), not as two segments.
        features = self.packer(x=text if text_pair is None else (text, text_pair))
        # int32 like keras-hub's BertBackbone inputs (a bool mask breaks cross-replica sums).
        features["padding_mask"] = tf.cast(features["padding_mask"], tf.int32)
        return trim_padding(features)

    def word_pieces(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text before packing and truncation (for statistics)."""
        pieces = self.tokenizer(tf.constant(list(texts)))
        # keras-hub returns Python lists in eager mode, tensors inside tf.function.
        return pieces.to_list() if isinstance(pieces, tf.RaggedTensor) else pieces

    def token_id_lists(self, text: Sequence[str], text_pair: Sequence[str] | None = None) -> list[list[int]]:
        """Packed token ids without padding, as Python lists (for TFRecords)."""
        ids, segments = self.token_and_segment_id_lists(text, text_pair)
        return ids

    def token_and_segment_id_lists(self, text, text_pair=None) -> tuple[list[list[int]], list[list[int]]]:
        features = self(tf.constant(list(text)), None if text_pair is None else tf.constant(list(text_pair)))
        lengths = tf.reduce_sum(features["padding_mask"], axis=1).numpy()
        ids, segments = features["token_ids"].numpy(), features["segment_ids"].numpy()
        return ([row[:n].tolist() for row, n in zip(ids, lengths)],
                [row[:n].tolist() for row, n in zip(segments, lengths)])


def trim_padding(features: dict[str, tf.Tensor], multiple: int = PAD_MULTIPLE) -> dict[str, tf.Tensor]:
    """Cuts padding columns that no row of the batch uses."""
    longest = tf.reduce_max(tf.reduce_sum(features["padding_mask"], axis=1))
    width = tf.minimum((longest + multiple - 1) // multiple * multiple, tf.shape(features["token_ids"])[1])
    width = tf.maximum(width, 1)
    return {name: value[:, :width] for name, value in features.items()}
