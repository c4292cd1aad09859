"""serving.model_client, the apps' model client, against the real server: rows split into calls
and joined in order, one error hierarchy for what went wrong, and output checks."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from conftest import free_port

from serving.client import RetryPolicy
from serving.model_client import (
    ModelCallError,
    ModelClient,
    ModelError,
    ModelNotServed,
    ModelTimeout,
    ModelUnavailable,
)

OUTPUTS = ("probabilities", "all_class_names")
TEXTS = ["I lost my card", "exchange rate", "where is my money", "card arrival", "top up failed"]


def test_rows_go_in_calls_of_at_most_max_rows_and_come_back_in_order(target):
    with ModelClient(target.grpc_address, deadline_seconds=30) as one, \
            ModelClient(target.grpc_address, deadline_seconds=30, max_rows_per_call=2, parallel_calls=2) as split:
        whole = one.predict(target.text_model, TEXTS, OUTPUTS)
        parts = split.predict(target.text_model, TEXTS, OUTPUTS)
        assert (one.calls, split.calls) == (1, 3)  # 5 rows: 2 + 2 + 1
    assert whole.outputs["probabilities"].shape[0] == len(TEXTS) and whole.version >= 1
    np.testing.assert_allclose(parts.outputs["probabilities"], whole.outputs["probabilities"], rtol=1e-6)
    assert parts.to_python()["all_class_names"] == whole.to_python()["all_class_names"]


def test_an_output_the_signature_lacks_is_a_model_error_naming_it(target):
    # The server refuses the output filter (as TF Serving does); the client's own check is for servers that don't.
    with ModelClient(target.grpc_address, deadline_seconds=30) as models:
        with pytest.raises(ModelError, match="no_such_output") as info:
            models.predict(target.text_model, TEXTS[:1], ("probabilities", "no_such_output"))
    assert info.value.model == target.text_model and info.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_an_unserved_model_and_a_refused_request_are_told_apart(target):
    with ModelClient(target.grpc_address, deadline_seconds=30) as models:
        with pytest.raises(ModelNotServed, match="serves no version of it") as info:
            models.predict("no_such_model", TEXTS[:1], OUTPUTS)
        assert info.value.code == grpc.StatusCode.NOT_FOUND
        with pytest.raises(ModelError, match="refused the request: INVALID_ARGUMENT"):
            models.predict(target.text_model, {"no_such_input": TEXTS[:1]}, OUTPUTS)


def test_no_answer_is_model_unavailable_and_a_spent_deadline_model_timeout(target):
    address = f"127.0.0.1:{free_port()}"
    fast = RetryPolicy(max_attempts=2, initial_backoff_seconds=0.01, max_backoff_seconds=0.02)
    with ModelClient(address, deadline_seconds=2, retry=fast) as models:
        with pytest.raises(ModelUnavailable, match=f"model server {address} .* did not answer") as info:
            models.predict(target.text_model, TEXTS[:1], OUTPUTS)
    assert info.value.address == address and not isinstance(info.value, ModelTimeout)
    with ModelClient(target.grpc_address, deadline_seconds=30) as models:
        with pytest.raises(ModelTimeout) as timeout:
            models.predict(target.text_model, TEXTS * 20, OUTPUTS, timeout=1e-4)  # 100 rows: within max_batch_size
    assert timeout.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and isinstance(timeout.value, ModelUnavailable)


def test_inputs_must_be_aligned_non_empty_columns(target):
    with ModelClient(target.grpc_address) as models:
        with pytest.raises(ValueError, match="non-empty columns of one length"):
            models.predict(target.text_model, [], OUTPUTS)
        with pytest.raises(ValueError, match=r"lengths \[2, 1\]"):
            models.predict(target.text_model, {"query": ["a", "b"], "item_text": ["c"]}, OUTPUTS)
        assert issubclass(ModelUnavailable, ModelCallError) and issubclass(ModelNotServed, ModelCallError)
