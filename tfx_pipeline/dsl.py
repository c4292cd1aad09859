"""The pipeline's vocabulary, after TFX: artifacts, channels and components.

A component declares its outputs; wiring another component's input to
`component.outputs["examples"]` is what makes the pipeline graph. Components
never see each other, only artifacts in storage (a local directory or a
bucket, see `storage.py`), so any step can be re-run, cached or inspected on
its own.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from typing import Any, ClassVar, Mapping, Sequence


class PipelineError(RuntimeError):
    """A component refused its input; the message says what and where."""


@dataclasses.dataclass(frozen=True)
class Artifact:
    """A directory written by one component execution; `uri` is a local path or a URI.

    `fingerprint` identifies the content: downstream executions are cached on
    it. `properties` are small JSON facts about the content (row counts,
    metrics, the blessing decision) that downstream components may read.
    """

    type_name: str
    uri: str
    fingerprint: str
    properties: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type_name, "uri": self.uri, "fingerprint": self.fingerprint,
                "properties": dict(self.properties)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Artifact":
        return cls(data["type"], data["uri"], data["fingerprint"], data.get("properties", {}))


@dataclasses.dataclass(frozen=True)
class Channel:
    """A named output of a component, to be wired into another's input."""

    producer: str
    key: str
    type_name: str


@dataclasses.dataclass
class ExecutionContext:
    """What a component execution gets: its inputs and where to write (URIs).

    A component with `LOCAL_FILES` gets local paths throughout: the runner
    brings its inputs to this machine and publishes its outputs afterwards.
    """

    inputs: Mapping[str, Artifact]
    output_dirs: Mapping[str, str]
    execution_dir: str
    beam_args: Sequence[str]
    run_id: str
    log: logging.Logger


class Component(abc.ABC):
    """One pipeline step. Subclasses declare OUTPUTS and implement `execute`.

    `execute` returns the properties of each output artifact. It must be
    idempotent: a killed execution is started again in the same directory.
    """

    OUTPUTS: ClassVar[Mapping[str, str]] = {}
    # True for steps whose libraries read and write only local files (TensorFlow
    # training, evaluation, export). Beam steps keep False: their workers use the URIs.
    LOCAL_FILES: ClassVar[bool] = False

    def __init__(self, inputs: Mapping[str, Channel] | None = None, component_id: str | None = None):
        self.id = component_id or type(self).__name__
        self.inputs: dict[str, Channel] = dict(inputs or {})
        self.outputs = {key: Channel(self.id, key, type_name) for key, type_name in self.OUTPUTS.items()}

    def fingerprint_data(self) -> Any:
        """The configuration that determines this component's outputs."""
        return None

    def external_fingerprint(self) -> Any:
        """State outside the pipeline that the outputs depend on (input files,
        the model currently pushed). None when there is none."""
        return None

    def output_fingerprint(self, key: str, uri: str, execution_fingerprint: str) -> str:
        """By default an output is identified by the execution that made it.
        Components whose outputs are small and often identical across
        executions override this with a content hash, so that downstream
        steps stay cached."""
        return f"{execution_fingerprint}/{key}"

    @abc.abstractmethod
    def execute(self, ctx: ExecutionContext) -> Mapping[str, Mapping[str, Any]]:
        ...


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """A plain, ordered list of components wired by their artifacts."""

    name: str
    root: str
    components: Sequence[Component]
    beam_args: Sequence[str] = ("--runner=FnApiRunner",)

    def __post_init__(self) -> None:
        produced: set[tuple[str, str]] = set()
        for component in self.components:
            for key, channel in component.inputs.items():
                if (channel.producer, channel.key) not in produced:
                    raise PipelineError(
                        f"{component.id}.{key} reads {channel.producer}.{channel.key}, "
                        "which no earlier component produces")
            produced.update((component.id, key) for key in component.outputs)
