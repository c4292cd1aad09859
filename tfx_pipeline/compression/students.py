"""The teacher as a Keras model again, and students made from its layers.

The Trainer's artifact is the serving SavedModel only. Its variables are the
Keras model's, in the same order and with the same paths (the export tracks
the model), so rebuilding the architecture from the configuration and
copying them back gives the teacher without retraining; a test checks the
rebuilt model's outputs against the SavedModel's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import keras
import keras_hub
import numpy as np

from tfx_pipeline.config import ModelConfig
from tfx_pipeline.model.backbone import copy_backbone_weights, load_backbone
from tfx_pipeline.model.export import MODEL_VARIABLES
from tfx_pipeline.model.tasks import build_text_classifier


def load_teacher(saved_model_dir: str | Path, model: ModelConfig, num_classes: int,
                 vocabulary_size: int) -> keras.Model:
    """The exported classifier at `saved_model_dir` as a Keras model of `model`'s architecture."""
    from tfx_pipeline.evaluation.predict import load_saved_model

    backbone = load_backbone(model.backbone, vocabulary_size, model.sequence_length)
    teacher = build_text_classifier(backbone, num_classes, model.pooling, model.dropout)
    loaded = load_saved_model(Path(saved_model_dir))
    # Exports before MODEL_VARIABLES tracked the model itself: its weights are `variables`.
    saved = getattr(loaded, MODEL_VARIABLES, None) or loaded.variables
    if len(saved) != len(teacher.variables):
        raise ValueError(f"{saved_model_dir}: {len(saved)} variables, but model.* builds {len(teacher.variables)}")
    for variable, value in zip(teacher.variables, saved):
        name = value.name.removesuffix(":0")
        # Dropout's random-number state is numbered by creation order in the process: shape only.
        same_name = name == variable.path or "seed_generator" in name
        if not same_name or tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"{saved_model_dir}: variable {name} {tuple(value.shape)} does not match "
                             f"{variable.path} {tuple(variable.shape)} of the configured model")
        variable.assign(value.numpy())
    return teacher


def backbone_of(model: keras.Model) -> keras_hub.models.BertBackbone:
    return next(layer for layer in model.layers if isinstance(layer, keras_hub.models.BertBackbone))


def student_architecture(teacher: keras.Model, num_layers: int) -> dict:
    """`model.backbone.architecture` of a student with `num_layers` of the teacher's shape."""
    config = backbone_of(teacher).get_config()
    return {"num_layers": num_layers, "num_heads": config["num_heads"], "hidden_dim": config["hidden_dim"],
            "intermediate_dim": config["intermediate_dim"], "dropout": config.get("dropout", 0.1)}


def initialise_from_teacher(student: keras.Model, teacher: keras.Model, layers: Sequence[int]) -> None:
    """Student layer i takes teacher layer `layers[i]`; everything else (embeddings,
    pooler, head) the teacher's layer of the same name. Position embeddings are cut
    to the student's length."""
    student_backbone = backbone_of(student)
    copy_backbone_weights(backbone_of(teacher), student_backbone, layers)
    for layer in student.layers:
        if layer.weights and layer is not student_backbone:
            layer.set_weights(teacher.get_layer(layer.name).get_weights())


def agreement(first: np.ndarray, second: np.ndarray) -> float:
    """Share of rows whose top class is the same in both probability matrices."""
    return float((first.argmax(axis=1) == second.argmax(axis=1)).mean()) if len(first) else 0.0
