"""ONNX Runtime peers of an exported classifier's encoder: a reference figure, not a servable.

On the same token ids (the SavedModel's own ``tokenize`` signature on the texts), on one thread
each (intra-op 1, inter-op 1), the backends taking turns for ``--rounds`` and each keeping its
best round (interference only slows a run down):

- ``tf``: the exported fp32 SavedModel's encoder, ``serving_default`` frozen and cut at
  ``tokenize``'s outputs (its inputs) and at the input of its final softmax (the logits);
- ``ort fp32``: that graph converted by tf2onnx, run by ONNX Runtime;
- ``ort int8``: the same ONNX model after ONNX Runtime's dynamic quantization: int8 weights with a
  scale per output channel, as Keras' int8 kernels have (per tensor, agreement with ``tf`` fell from
  0.89 to 0.73 on a MiniLM-sized model), activations quantized per call.

It prints examples/s at each batch size with the ratio to ``tf`` measured in the same run, and how
often each peer's argmax agrees with ``tf`` on all the texts. Single-text classifiers only.
Needs the ``peers`` extra (``pip install -c constraints.txt -e '.[peers]'``). Example::

    python -m benchmarks compression_peers --model_path work/models/intent/1 --seconds 3
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from benchmarks.command import parse_args, write_report
from benchmarks.serving import DEFAULT_DATA, read_texts

PEERS = ("onnx", "onnxruntime", "tf2onnx")
BACKENDS = ("tf", "ort fp32", "ort int8")


def spaced(texts: Sequence[str], limit: int) -> list[str]:
    """`limit` texts evenly spaced over `texts` (a file sorted by label gives every label its share).

    >>> spaced(list("abcdefgh"), 3)
    ['a', 'c', 'e']
    """
    return list(texts[::max(len(texts) // limit, 1)][:limit])


def tf_encoder(model_dir: Path):
    """(`tokenize`, `serving_default`, the encoder, `tokenize`'s output names): the encoder is
    `serving_default` frozen and pruned to a function of those outputs (in that order) to the logits."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from tfx_pipeline.evaluation.predict import load_saved_model

    def source(tensor):  # Past the Identity ops a signature wraps its outputs in.
        while tensor.op.type == "Identity":
            tensor = tensor.op.inputs[0]
        return tensor

    loaded = load_saved_model(model_dir)
    tokenize, serving = loaded.signatures["tokenize"], loaded.signatures["serving_default"]
    # Frozen, both are inlined the same way: the tokenizer's ops keep their names in either graph.
    frozen_tokenize = convert_variables_to_constants_v2(tokenize)
    frozen = convert_variables_to_constants_v2(serving)
    # A frozen function's outputs: its signature's, flattened (in the order of their sorted names).
    names = sorted(tokenize.structured_outputs)
    feeds = [source(tensor).name for tensor in frozen_tokenize.outputs]
    softmax = source(frozen.outputs[sorted(serving.structured_outputs).index("probabilities")])
    if softmax.op.type != "Softmax":
        raise ValueError(f"{model_dir}: probabilities come from {softmax.op.type}, not a Softmax over logits")
    graph_def = frozen.graph.as_graph_def()
    imported = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    encoder = imported.prune([imported.graph.get_tensor_by_name(name) for name in feeds],
                             imported.graph.get_tensor_by_name(softmax.op.inputs[0].name))
    return tokenize, serving, encoder, names


def to_onnx(encoder, directory: Path) -> tuple[Path, Path]:
    """The encoder as ONNX fp32 and dynamically quantized int8 files."""
    import tf2onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32, int8 = directory / "encoder_fp32.onnx", directory / "encoder_int8.onnx"
    tf2onnx.convert.from_graph_def(encoder.graph.as_graph_def(), input_names=[t.name for t in encoder.inputs],
                                   output_names=[t.name for t in encoder.outputs], output_path=str(fp32))
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    return fp32, int8


def ort_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(model_dir: Path, texts: Sequence[str], batch_sizes: Sequence[int] = (1, 32), seconds: float = 3.0,
        rounds: int = 2, work_dir: Path | None = None) -> dict[str, Any]:
    """The report (see the module): call in a process whose TensorFlow thread pools are not yet set."""
    import numpy as np
    import onnxruntime
    import tensorflow as tf

    import tfx_pipeline  # noqa: F401  The suite's TensorFlow settings (oneDNN), as the speed gate runs.
    from tfx_pipeline.compression.speed import time_calls

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tokenize, serving, encoder, names = tf_encoder(model_dir)
    work_dir = work_dir or Path(tempfile.mkdtemp(prefix="peers-"))
    files = dict(zip(BACKENDS[1:], to_onnx(encoder, work_dir)))
    sessions = {name: ort_session(path) for name, path in files.items()}

    def ort_call(session) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
        inputs = [i.name for i in session.get_inputs()]  # In the order tf2onnx was given them: `names`.
        return lambda batch: session.run(None, {i: batch[name] for i, name in zip(inputs, names)})[0]

    calls: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {
        "tf": lambda batch: encoder(*(tf.constant(batch[name]) for name in names)).numpy(),
        **{name: ort_call(session) for name, session in sessions.items()}}

    def batches(size: int) -> list[dict[str, np.ndarray]]:  # Consecutive texts, cycling, as in the speed gate.
        rows = [[texts[i % len(texts)] for i in range(start, start + size)]
                for start in range(0, max(len(texts), size), size)]
        return [{k: v.numpy() for k, v in tokenize(text=tf.constant(row)).items()} for row in rows]

    by_size = {size: batches(size) for size in batch_sizes}
    # Quality on every text once: each backend's logits against tf's.
    whole = batches(len(texts))
    logits = {name: call(whole[0]) for name, call in calls.items()}
    served = serving(text=tf.constant(list(texts)))["probabilities"].numpy()
    cut_error = float(np.abs(tf.nn.softmax(logits["tf"]).numpy() - served).max())
    if cut_error > 1e-4:
        raise RuntimeError(f"the encoder cut from {model_dir} does not reproduce serving_default ({cut_error:.2e})")
    rates: dict[str, dict[str, float]] = {name: {} for name in calls}
    for _ in range(max(rounds, 1)):
        for size, sized in by_size.items():
            for name, call in calls.items():
                rate, _latencies = time_calls(call, sized, size, seconds)
                rates[name][str(size)] = round(max(rate, rates[name].get(str(size), 0.0)), 2)
    top = logits["tf"].argmax(axis=1)
    return {
        "model_path": str(model_dir), "texts": len(texts), "batch_sizes": list(batch_sizes),
        "seconds": seconds, "rounds": rounds, "threads": {"intra_op": 1, "inter_op": 1},
        "versions": {"tensorflow": tf.__version__, "onnxruntime": onnxruntime.__version__},
        "encoder_vs_serving_max_abs_diff": cut_error,
        "examples_per_second": rates,
        "vs_tf": {name: {size: round(rate / rates["tf"][size], 3) for size, rate in rates[name].items()}
                  for name in BACKENDS[1:]},
        "agreement_with_tf": {name: round(float((logits[name].argmax(axis=1) == top).mean()), 4)
                              for name in BACKENDS[1:]},
        "max_abs_logit_diff": {name: float(np.abs(logits[name] - logits["tf"]).max()) for name in BACKENDS[1:]},
        "onnx_files": {name: str(path) for name, path in files.items()},
        "size_mib": {name: round(path.stat().st_size / 2**20, 2) for name, path in files.items()},
    }


def print_report(report: dict, out: TextIO = sys.stdout) -> None:
    sizes = [str(size) for size in report["batch_sizes"]]
    print(f"ONNX Runtime peers of {report['model_path']} (reference only, not served): {report['texts']} texts, "
          f"one thread each (intra-op 1, inter-op 1), best of {report['rounds']} rounds of {report['seconds']} s",
          file=out)
    print(f"{'backend':<10}" + "".join(f"{'b' + s + ' ex/s':>12}{'x tf':>7}" for s in sizes)
          + f"{'agree':>8}{'max |d logit|':>15}{'MiB':>8}", file=out)
    for name, rates in report["examples_per_second"].items():
        ratios = report["vs_tf"].get(name, {s: 1.0 for s in sizes})
        quality = (f"{report['agreement_with_tf'][name]:>8.4f}{report['max_abs_logit_diff'][name]:>15.2e}"
                   f"{report['size_mib'][name]:>8.2f}" if name != "tf" else f"{'-':>8}{'-':>15}{'-':>8}")
        print(f"{name:<10}" + "".join(f"{rates[s]:>12.1f}{ratios[s]:>7.2f}" for s in sizes) + quality, file=out)
    print(f"tf encoder vs serving_default probabilities: max |diff| "
          f"{report['encoder_vs_serving_max_abs_diff']:.2e}", file=out)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks compression_peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_path", type=Path, required=True, help="an exported single-text classifier")
    parser.add_argument("--texts", type=Path, default=DEFAULT_DATA,
                        help="CSV with a `text` column, e.g. the task's validation rows (default: Banking77's)")
    parser.add_argument("--limit", type=int, default=256, help="texts used, evenly spaced over the file")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per backend, batch size and round")
    parser.add_argument("--rounds", type=int, default=2, help="timing rounds, the backends taking turns")
    parser.add_argument("--work_dir", type=Path, help="where the ONNX files go (default: a new temporary one)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("-v", "--verbose", action="store_true", help="TensorFlow's own log lines")
    args = parse_args(parser, argv)
    missing = [name for name in PEERS if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(f"compression_peers needs the `peers` extra ({', '.join(PEERS)}; missing: "
                         f"{', '.join(missing)}): pip install -c constraints.txt -e '.[peers]'")
    report = run(args.model_path, spaced(read_texts(args.texts), args.limit), args.batch_sizes, args.seconds,
                 args.rounds, args.work_dir)
    return write_report(report, args.json, print_report, out)


if __name__ == "__main__":
    sys.exit(main())
