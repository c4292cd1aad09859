"""The Transform component's output: the preprocessor plus the class names.

Everything the Trainer needs to turn raw strings into what the model sees,
and the model's outputs back into label names.
"""

from __future__ import annotations

from typing import Sequence

from tfx_pipeline import storage
from tfx_pipeline.model.preprocessing import TextPreprocessor

CLASS_NAMES_FILE = "class_names.txt"


def save_transform_graph(directory: str, preprocessor: TextPreprocessor, class_names: Sequence[str]) -> None:
    """Writes the artifact at `directory`, a local path or a URI."""
    with storage.local_output(directory) as local:
        preprocessor.save(local)
        (local / CLASS_NAMES_FILE).write_text("\n".join(class_names) + "\n")


def load_transform_graph(directory: str) -> tuple[TextPreprocessor, list[str]]:
    """Reads the artifact from a local path or a URI (Beam workers read it from the bucket)."""
    with storage.local_copy(directory) as local:
        return TextPreprocessor.load(local), (local / CLASS_NAMES_FILE).read_text().splitlines()
