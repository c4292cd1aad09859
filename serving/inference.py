"""What Predict, Classify, Regress and MultiInference mean for one servable.

These functions hold TF Serving's request semantics (signature checks,
tf.Example inputs, result shapes and error messages) and know nothing about
transports, model versions or batching: they run signatures through the
``Runner`` they are given, which is the servable itself during warm-up and
the batching layer while serving.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import classification_pb2, inference_pb2, input_pb2, regression_pb2

from serving import errors
from serving.servable import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    REGRESS_METHOD,
    Servable,
    Signature,
)

Runner = Callable[[Servable, Signature, dict[str, np.ndarray]], dict[str, np.ndarray]]

CLASSIFY_CLASSES = "classes"
CLASSIFY_SCORES = "scores"
REGRESS_OUTPUTS = "outputs"


def signature_key(name: str) -> str:
    """The signature a request means: ``serving_default`` when it names none."""
    return name or DEFAULT_SIGNATURE


def predict(
    servable: Servable,
    run: Runner,
    signature_name: str,
    inputs: dict[str, np.ndarray],
    output_filter: Sequence[str] = (),
) -> tuple[Signature, dict[str, np.ndarray]]:
    """Runs a Predict call; returns the signature used and the selected outputs."""
    signature = servable.signature(signature_key(signature_name))
    signature.validate_inputs(inputs)
    wanted = list(output_filter)
    seen: set[str] = set()
    for alias in wanted:
        if alias not in signature.outputs:
            raise errors.invalid_argument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                f"{{{','.join(sorted(signature.outputs))}}}."
            )
        if alias in seen:
            raise errors.invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    outputs = run(servable, signature, inputs)
    if wanted:
        outputs = {alias: outputs[alias] for alias in wanted}
    return signature, outputs


def serialized_examples(request_input: input_pb2.Input) -> np.ndarray:
    """Serialized tf.Examples of an ``Input``, context merged into each example."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString() for e in request_input.example_list.examples]
    elif kind == "example_list_with_context":
        with_context = request_input.example_list_with_context
        examples = []
        for example in with_context.examples:
            merged = example_pb2.Example()
            merged.CopyFrom(with_context.context)
            # Map merge replaces same-named features: the example's own win.
            merged.MergeFrom(example)
            examples.append(merged.SerializeToString())
    else:
        raise errors.invalid_argument("Input is empty.")
    if not examples:
        raise errors.invalid_argument("Input is empty.")
    array = np.empty(len(examples), dtype=object)
    array[:] = examples
    return array


def _single_string_input(signature: Signature) -> str:
    if len(signature.inputs) != 1:
        raise errors.invalid_argument(
            f"Expected one input Tensor in signature '{signature.key}', found {len(signature.inputs)}."
        )
    (name, spec), = signature.inputs.items()
    if spec.dtype != types_pb2.DT_STRING:
        raise errors.invalid_argument(
            f"Input tensor '{name}' of signature '{signature.key}' must be a string tensor of serialized tf.Examples."
        )
    return name


def _batch_mismatch(name: str, array: np.ndarray, batch: int) -> errors.ServingError:
    return errors.invalid_argument(
        f"Expected output tensor '{name}' to have batch size {batch} but got shape {list(array.shape)}"
    )


def classify(
    servable: Servable, run: Runner, signature_name: str, request_input: input_pb2.Input
) -> tuple[Signature, classification_pb2.ClassificationResult]:
    """Runs a Classify call against a ``tensorflow/serving/classify`` signature."""
    signature = servable.signature(signature_key(signature_name))
    return signature, _classify_with(servable, run, signature, serialized_examples(request_input))


def _classify_with(
    servable: Servable, run: Runner, signature: Signature, examples: np.ndarray
) -> classification_pb2.ClassificationResult:
    if signature.method_name != CLASSIFY_METHOD:
        raise errors.invalid_argument(
            f"Expected classification signature method_name to be {CLASSIFY_METHOD}. Was: {signature.method_name}"
        )
    input_name = _single_string_input(signature)
    has_classes = CLASSIFY_CLASSES in signature.outputs
    has_scores = CLASSIFY_SCORES in signature.outputs
    if not (has_classes or has_scores):
        raise errors.invalid_argument(
            f'Expected classification signature outputs to contain at least one of "{CLASSIFY_CLASSES}" or '
            f'"{CLASSIFY_SCORES}".'
        )
    outputs = run(servable, signature, {input_name: examples})
    batch = len(examples)
    classes = outputs.get(CLASSIFY_CLASSES) if has_classes else None
    scores = outputs.get(CLASSIFY_SCORES) if has_scores else None
    for name, array in ((CLASSIFY_CLASSES, classes), (CLASSIFY_SCORES, scores)):
        if array is None:
            continue
        if array.ndim != 2 or array.shape[0] != batch:
            raise errors.invalid_argument(
                f"Expected Tensor shape: [batch_size num_classes] for '{name}' but got {list(array.shape)}"
            )
    if classes is not None and scores is not None and classes.shape != scores.shape:
        raise errors.invalid_argument(
            f"Tensors class and score should match in shape: {list(classes.shape)} vs {list(scores.shape)}"
        )
    if scores is not None and scores.dtype != np.float32:
        raise errors.invalid_argument(f"Expected scores Tensor of DT_FLOAT. Got {scores.dtype}")
    first = classes if classes is not None else scores
    assert first is not None  # One of the two is in the signature (checked above).
    num_classes = first.shape[1]
    result = classification_pb2.ClassificationResult()
    for row in range(batch):
        classifications = result.classifications.add()
        for col in range(num_classes):
            entry = classifications.classes.add()
            if classes is not None:
                label = classes[row, col]
                entry.label = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
            if scores is not None:
                entry.score = float(scores[row, col])
    return result


def regress(
    servable: Servable, run: Runner, signature_name: str, request_input: input_pb2.Input
) -> tuple[Signature, regression_pb2.RegressionResult]:
    """Runs a Regress call against a ``tensorflow/serving/regress`` signature."""
    signature = servable.signature(signature_key(signature_name))
    return signature, _regress_with(servable, run, signature, serialized_examples(request_input))


def _regress_with(
    servable: Servable, run: Runner, signature: Signature, examples: np.ndarray
) -> regression_pb2.RegressionResult:
    if signature.method_name != REGRESS_METHOD:
        raise errors.invalid_argument(
            f"Expected regression signature method_name to be {REGRESS_METHOD}. Was: {signature.method_name}"
        )
    input_name = _single_string_input(signature)
    if REGRESS_OUTPUTS not in signature.outputs:
        raise errors.invalid_argument(f'No regression output "{REGRESS_OUTPUTS}" in signature \'{signature.key}\'.')
    values = run(servable, signature, {input_name: examples})[REGRESS_OUTPUTS]
    batch = len(examples)
    if values.dtype != np.float32:
        raise errors.invalid_argument(f"Expected output Tensor of DT_FLOAT. Got {values.dtype}")
    if values.shape not in ((batch,), (batch, 1)):
        raise errors.invalid_argument(
            f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {list(values.shape)}"
        )
    result = regression_pb2.RegressionResult()
    for value in values.reshape(-1):
        result.regressions.add(value=float(value))
    return result


def multi_inference(
    servable: Servable,
    run: Runner,
    tasks: Sequence[inference_pb2.InferenceTask],
    request_input: input_pb2.Input,
) -> list[tuple[Signature, classification_pb2.ClassificationResult | regression_pb2.RegressionResult]]:
    """Runs several classify/regress signatures over the same examples."""
    signatures: list[Signature] = []
    seen: set[str] = set()
    input_names: set[str] = set()
    for task in tasks:
        if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
            raise errors.invalid_argument(f"Unsupported signature method_name: {task.method_name}")
        key = signature_key(task.model_spec.signature_name)
        if key in seen:
            raise errors.invalid_argument(f"Duplicate evaluation of signature: {key}")
        seen.add(key)
        signature = servable.signature(key)
        if signature.method_name != task.method_name:
            raise errors.invalid_argument(
                f"Signature '{key}' has method_name {signature.method_name}, task asks for {task.method_name}"
            )
        input_names.add(_single_string_input(signature))
        signatures.append(signature)
    if len(input_names) > 1:
        raise errors.invalid_argument("Input tensor must be the same for all Signatures.")
    examples = serialized_examples(request_input)
    results = []
    for signature in signatures:
        if signature.method_name == CLASSIFY_METHOD:
            results.append((signature, _classify_with(servable, run, signature, examples)))
        else:
            results.append((signature, _regress_with(servable, run, signature, examples)))
    return results


def validate_multi_inference_tasks(tasks: Sequence[inference_pb2.InferenceTask]) -> None:
    """Request-level checks TF Serving makes before touching a model."""
    if not tasks:
        raise errors.invalid_argument("MultiInferenceRequest must have at least one task")
    first = tasks[0].model_spec
    for task in tasks[1:]:
        spec = task.model_spec
        if spec.name != first.name:
            raise errors.invalid_argument("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        if spec.WhichOneof("version_choice") != first.WhichOneof("version_choice") or (
            spec.version.value != first.version.value or spec.version_label != first.version_label
        ):
            raise errors.invalid_argument(
                "ModelSpec version and version_label must be the same for all tasks in a MultiInferenceRequest."
            )

