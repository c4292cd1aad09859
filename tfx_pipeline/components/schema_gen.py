"""SchemaGen: the contract every later run's data is validated against.

The label vocabulary comes from configuration when it lists labels; otherwise
it is inferred from the first run's training split and stored under the
pipeline root (`state/schema.json`), where it stays for later runs. Edit or
delete that file to change the contract.
"""

from __future__ import annotations

import hashlib
import json

from tfx_pipeline import storage
from tfx_pipeline.config import ConfigError, DataConfig, ValidationConfig
from tfx_pipeline.dsl import Channel, Component, ExecutionContext

SCHEMA_FILE = "schema.json"


class SchemaGen(Component):
    OUTPUTS = {"schema": "Schema"}

    def __init__(self, statistics: Channel, data: DataConfig, validation: ValidationConfig, stored_schema: str):
        super().__init__({"statistics": statistics})
        self.data, self.validation, self.stored_schema = data, validation, str(stored_schema)

    def fingerprint_data(self):
        return [self.configured_labels(), self.validation.max_text_chars, bool(self.data.text_pair_column)]

    def external_fingerprint(self):
        if self.configured_labels() or not storage.exists(self.stored_schema):
            return None  # Configured labels win; the stored schema is not read.
        return storage.read_text(self.stored_schema)

    def output_fingerprint(self, key, uri, execution_fingerprint):
        # The same schema re-derived must not invalidate everything downstream.
        return hashlib.sha256(storage.read_bytes(storage.join(uri, SCHEMA_FILE))).hexdigest()[:16]

    def configured_labels(self) -> list[str]:
        if self.data.labels and self.data.labels_file:
            raise ConfigError("data: set labels or labels_file, not both")
        if self.data.labels_file:
            try:
                labels = json.loads(storage.read_text(self.data.labels_file))
            except (OSError, json.JSONDecodeError) as error:
                raise ConfigError(f"data.labels_file: cannot read a JSON list from "
                                  f"{self.data.labels_file}: {error}") from None
            if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
                raise ConfigError(f"data.labels_file: {self.data.labels_file} must hold a JSON list of strings")
            return labels
        return list(self.data.labels)

    def execute(self, ctx: ExecutionContext):
        labels = self.configured_labels()
        if labels:
            origin = "configuration"
        elif storage.exists(self.stored_schema):
            labels, origin = storage.read_json(self.stored_schema)["labels"], f"stored schema {self.stored_schema}"
        else:
            statistics = storage.read_json(storage.join(ctx.inputs["statistics"].uri, "statistics.json"))
            labels, origin = sorted(statistics["train"]["labels"]), "inferred from the training split"
        if len(labels) < 2:
            raise ConfigError(f"schema: a classifier needs at least 2 labels, found {labels} ({origin})")
        schema = {
            "labels": labels,
            "max_text_chars": self.validation.max_text_chars,
            "text_pair": bool(self.data.text_pair_column),
        }
        storage.write_json(storage.join(ctx.output_dirs["schema"], SCHEMA_FILE), schema)
        if not storage.exists(self.stored_schema):
            storage.write_json(self.stored_schema, schema)
        ctx.log.info("schema: %d labels (%s)", len(labels), origin)
        return {"schema": {"num_labels": len(labels), "labels_from": origin}}
