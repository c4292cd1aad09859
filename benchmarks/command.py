"""What the apps' benchmarks' ``main`` functions share: parsing with TensorFlow's log level set first,
and the report printed as text or as one JSON object."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from suite_core.tf_logging import quiet_tensorflow


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``argv`` (default: the command line) parsed, TensorFlow's C++ logging quiet unless ``--verbose``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_tensorflow(argv)
    return parser.parse_args(argv)


def write_report(report: dict, as_json: bool, print_report: Callable[[dict, TextIO], None],
                 out: TextIO | None) -> int:
    """The report to ``out`` (stdout by default): one JSON object, or ``print_report``'s text; exit code 0."""
    out = out or sys.stdout
    if as_json:
        print(json.dumps(report), file=out)
    else:
        print_report(report, out)
    return 0
