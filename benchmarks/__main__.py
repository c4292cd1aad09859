"""``python -m benchmarks <name> [options]``: runs one benchmark (see :mod:`benchmarks`).

Imports the chosen benchmark only, so that ``--help`` loads no TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> what it measures; each is the module benchmarks.<name>, with a main(argv).
BENCHMARKS = {
    "serving": "the model server over gRPC, batching off and on, against the SavedModel in-process",
    "rest_front": "the REST predict path on uvicorn against the old http.server fronts",
    "customer_service": "HTTP -> app -> gRPC -> model against the server alone; accuracy and coverage",
    "ranker": "a ranking request by stage; the re-rank stage against the server alone",
    "sentiment_monitor": "items/s end to end, alert latency, and the model server's own rate",
    "pipeline": "Beam preprocessing, training speed, memory, full training, compression (`pipeline all`)",
    "compression_peers": "the fp32 encoder against ONNX Runtime fp32 and int8 on one thread (reference only)",
}


def _parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<18} {what}" for name, what in BENCHMARKS.items())
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Benchmarks that print numbers, each against a baseline measured in the same run.",
        epilog=f"benchmarks:\n{listing}\n\n`python -m benchmarks <name> --help` gives one's options.")
    parser.add_argument("name", choices=list(BENCHMARKS), metavar="name", help="the benchmark to run (below)")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own options")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):  # --help, or nothing: the list
        _parser().parse_args(argv)
        return 2
    name = argv[0].replace("-", "_")
    if name not in BENCHMARKS:
        _parser().parse_args(argv)  # exits with the choices
    module = importlib.import_module(f"benchmarks.{name}")
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
