"""The Transform component's output: the preprocessor plus the class names.

Everything the Trainer needs to turn raw strings into what the model sees,
and the model's outputs back into label names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tfx_pipeline.model.preprocessing import TextPreprocessor

CLASS_NAMES_FILE = "class_names.txt"


def save_transform_graph(directory: Path, preprocessor: TextPreprocessor, class_names: Sequence[str]) -> None:
    preprocessor.save(directory)
    (Path(directory) / CLASS_NAMES_FILE).write_text("\n".join(class_names) + "\n")


def load_transform_graph(directory: Path | str) -> tuple[TextPreprocessor, list[str]]:
    directory = Path(directory)
    return TextPreprocessor.load(directory), (directory / CLASS_NAMES_FILE).read_text().splitlines()
