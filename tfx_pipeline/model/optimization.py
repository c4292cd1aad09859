"""The optimizer and loss of fine-tuning: AdamW with per-layer learning rates,
cross-entropy with label smoothing and soft targets.

Adam's update is invariant to the scale of a gradient, so per-layer learning
rates cannot come from scaling gradients: `LayerwiseAdamW` scales the
learning rate of each variable's own update step instead.

Example: the top of two encoder layers learns at the base rate, the one below
at half of it, the embeddings at a quarter, the head at ten times.

>>> import keras_hub
>>> from tfx_pipeline.model.tasks import build_text_classifier
>>> backbone = keras_hub.models.BertBackbone(vocabulary_size=100, num_layers=2,
...     num_heads=1, hidden_dim=8, intermediate_dim=16, max_sequence_length=16)
>>> model = build_text_classifier(backbone, num_classes=3)
>>> rates = layerwise_rate_multipliers(model, backbone, layer_decay=0.5, head_multiplier=10.0)
>>> {v.path.split("/")[0]: rates[id(v)] for v in model.trainable_variables}
{'token_embedding': 0.25, 'position_embedding': 0.25, 'segment_embedding': 0.25, 'embeddings_layer_norm': 0.25, \
'transformer_layer_0': 0.5, 'transformer_layer_1': 1.0, 'logits': 10.0}
"""

from __future__ import annotations

from typing import Mapping

import keras
import keras_hub


def layerwise_rate_multipliers(model: keras.Model, backbone: keras_hub.models.BertBackbone,
                               layer_decay: float = 1.0, head_multiplier: float = 1.0) -> dict[int, float]:
    """Learning-rate multiplier per trainable variable (keyed by `id`).

    Encoder layer i of L learns at `layer_decay ** (L - 1 - i)`, the embeddings
    (and anything else in the backbone below the layers) at `layer_decay ** L`,
    BERT's pooler at 1, and every variable outside the backbone (the head) at
    `head_multiplier`.
    """
    layers = backbone.transformer_layers
    in_backbone = {id(v) for v in backbone.trainable_variables}
    rates = {id(v): (1.0 if id(v) not in in_backbone else layer_decay ** len(layers))
             for v in model.trainable_variables}
    for depth, layer in enumerate(layers):
        for variable in layer.trainable_variables:
            rates[id(variable)] = layer_decay ** (len(layers) - 1 - depth)
    pooler = [layer for layer in backbone.layers if layer.name == "pooled_dense"]
    for variable in (pooler[0].trainable_variables if pooler else []):
        rates[id(variable)] = 1.0
    for variable in model.trainable_variables:
        if id(variable) not in in_backbone:
            rates[id(variable)] = head_multiplier
    return rates


@keras.saving.register_keras_serializable(package="nlp_suite")
class LayerwiseAdamW(keras.optimizers.AdamW):
    """AdamW whose update of each variable uses the schedule's learning rate
    times that variable's multiplier (`layerwise_rate_multipliers`); variables
    without one learn at the base rate. Decoupled weight decay stays at the
    base rate (Keras applies it through the strategy, apart from the update)."""

    def __init__(self, rate_multipliers: Mapping[int, float] | None = None, **kwargs):
        super().__init__(**kwargs)
        self._rate_multipliers_by_id = dict(rate_multipliers or {})
        self._rate_by_key: dict[int, float] = {}

    def build(self, var_list):
        # Keyed the way update_step sees the variable (the TensorFlow variable
        # under a Keras one, or its distributed container).
        self._rate_by_key = {self._var_key(v): self._rate_multipliers_by_id.get(id(v), 1.0) for v in var_list}
        super().build(var_list)

    def rate_multiplier(self, variable) -> float:
        return self._rate_by_key.get(self._var_key(variable), 1.0)

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self.rate_multiplier(variable)
        if multiplier != 1.0:
            learning_rate = learning_rate * multiplier
        super().update_step(gradient, variable, learning_rate)


def classification_loss(label_smoothing: float = 0.0) -> keras.losses.Loss:
    """Cross-entropy on logits against [B, C] target distributions (one-hot
    labels, or the ensemble's soft targets), with optional label smoothing."""
    return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
