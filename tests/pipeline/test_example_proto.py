"""The TensorFlow-free Example messages give TensorFlow's bytes, both ways."""

import subprocess
import sys

from tensorflow.core.example import example_pb2

from tfx_pipeline.beam import example_proto
from tfx_pipeline.beam.examples import decode_row, encode_int_lists, encode_row


def test_examples_serialize_to_tensorflow_bytes_and_back():
    def fill(example):
        features = example.features.feature
        features["text"].bytes_list.value.append("héllo, wörld".encode())
        features["label"].bytes_list.value.append(b"card_arrival")
        features["token_ids"].int64_list.value.extend([101, 7592, -1, 2**40, 102])
        features["weights"].float_list.value.extend([0.5, 1.25])
        features["empty"].bytes_list.SetInParent()
        return example

    ours, tensorflows = fill(example_proto.Example()), fill(example_pb2.Example())
    assert ours.SerializeToString(deterministic=True) == tensorflows.SerializeToString(deterministic=True)
    assert example_pb2.Example.FromString(ours.SerializeToString()) == tensorflows
    row = {"text": "a text", "label": "x", "text_pair": None}
    assert example_pb2.Example.FromString(encode_row(row)).features.feature["text"].bytes_list.value == [b"a text"]
    assert decode_row(tensorflows.SerializeToString(deterministic=True))["token_ids"] is None  # Not bytes.
    assert decode_row(encode_row(row)) == {"label": "x", "text": "a text"}
    ids = example_pb2.Example.FromString(encode_int_lists({"token_ids": [1, 2], "label_id": 3}))
    assert list(ids.features.feature["token_ids"].int64_list.value) == [1, 2]


def test_reading_and_writing_examples_imports_no_tensorflow():
    code = ("import sys; import tfx_pipeline.beam.examples, tfx_pipeline.beam.validation, tfx_pipeline.beam.rows; "
            "print('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
