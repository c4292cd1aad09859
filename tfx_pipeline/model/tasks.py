"""Task models composed onto a BERT backbone.

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
    encoded = backbone(inputs)
    if pooling == "mean":
        # BERT's pooler is unused here; freezing it keeps the optimizer from
        # warning about variables without gradients.
        backbone.get_layer("pooled_dense").trainable = False
        pooled = keras.layers.GlobalAveragePooling1D(name="mean_pooling")(
            encoded["sequence_output"], mask=inputs["padding_mask"])
    elif pooling == "cls":
        pooled = encoded["pooled_output"]
    else:
        raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
    pooled = keras.layers.Dropout(dropout, name="head_dropout")(pooled)
    # float32 logits even under mixed precision, for a stable softmax.
    logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")(pooled)
    return keras.Model(inputs, logits, name="text_classifier")
