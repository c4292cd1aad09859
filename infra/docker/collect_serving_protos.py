"""Copies the generated protobuf modules of the TF Serving gRPC API out of an
installed ``tensorflow`` + ``tensorflow-serving-api``, for images without TensorFlow.

The apps' client (``serving/client.py``, ``serving/tensors.py``) needs only
generated ``*_pb2`` / ``*_pb2_grpc`` modules, but ``import tensorflow.core...``
runs ``tensorflow/__init__.py`` (all of TensorFlow) and the
tensorflow-serving-api wheel depends on tensorflow.  This script follows the
import statements of the API modules (read with :mod:`ast`, never executed:
executing one would load TensorFlow) to their transitive closure and copies it
into ``OUTPUT`` under the same package paths
(``tensorflow/core/framework/tensor_pb2.py``, ``tensorflow_serving/apis/...``)
with ``__init__.py`` files that import nothing.  With ``OUTPUT``'s contents in
site-packages, ``import tensorflow.core.framework.tensor_pb2`` loads one
generated module and no TensorFlow.

A module of the closure that is not generated code, or an import that neither
the closure, ``protobuf``, ``grpcio`` nor the standard library provides, is an
error: the copy would not import in the slim image.  ``--check`` then imports
every copied module from ``OUTPUT`` in a fresh interpreter (protobuf refuses a
file whose descriptor dependencies are not loaded) and fails if anything under
``tensorflow`` was loaded from elsewhere.

Usage (in a Docker builder stage, after ``pip install --no-deps tensorflow tensorflow-serving-api``)::

    python collect_serving_protos.py --output /protos --check

Standard library only, so it runs in any interpreter that can see the two wheels.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# What the apps' client imports (serving/client.py, serving/tensors.py) plus the rest of the
# public TF Serving API, so a client can call any of its RPCs; the closure adds their imports.
API_MODULES = (
    "tensorflow.core.example.example_pb2",
    "tensorflow.core.example.feature_pb2",
    "tensorflow.core.framework.tensor_pb2",
    "tensorflow.core.framework.tensor_shape_pb2",
    "tensorflow.core.framework.types_pb2",
    "tensorflow_serving.apis.classification_pb2",
    "tensorflow_serving.apis.get_model_metadata_pb2",
    "tensorflow_serving.apis.get_model_status_pb2",
    "tensorflow_serving.apis.inference_pb2",
    "tensorflow_serving.apis.input_pb2",
    "tensorflow_serving.apis.model_pb2",
    "tensorflow_serving.apis.model_management_pb2",
    "tensorflow_serving.apis.model_service_pb2",
    "tensorflow_serving.apis.model_service_pb2_grpc",
    "tensorflow_serving.apis.predict_pb2",
    "tensorflow_serving.apis.prediction_service_pb2",
    "tensorflow_serving.apis.prediction_service_pb2_grpc",
    "tensorflow_serving.apis.regression_pb2",
)

# Imports the slim image satisfies with packages of its own (protobuf, grpcio), not by copying.
PROVIDED_PREFIXES = ("google.protobuf", "grpc")
GENERATED_SUFFIXES = ("_pb2", "_pb2_grpc")
INIT_TEXT = '"""Generated protobuf modules only (infra/docker/collect_serving_protos.py); not TensorFlow."""\n'


class CollectError(RuntimeError):
    """The closure cannot be copied into an image without TensorFlow."""


def is_provided(module: str) -> bool:
    """True for modules the slim environment brings itself: protobuf, grpc, the standard library."""
    top = module.split(".")[0]
    return top in sys.stdlib_module_names or any(
        module == prefix or module.startswith(prefix + ".") for prefix in PROVIDED_PREFIXES)


@dataclass
class ModuleFinder:
    """Finds a module's source file under the given roots without importing it (or its packages)."""

    roots: Sequence[Path]

    def find(self, module: str) -> Path | None:
        """The module's ``.py`` file, a package's ``__init__.py``, or a namespace package's directory."""
        relative = Path(*module.split("."))
        for root in self.roots:
            for candidate in (root / relative.with_suffix(".py"), root / relative / "__init__.py"):
                if candidate.is_file():
                    return candidate
        return next((root / relative for root in self.roots if (root / relative).is_dir()), None)

    def root_of(self, path: Path) -> Path:
        return next(root for root in self.roots if path.is_relative_to(root))


def imported_modules(source: str) -> set[str]:
    """Every absolute module an ``import`` or ``from ... import`` names, as candidates.

    ``from a.b import c`` yields both ``a.b`` and ``a.b.c``: ``c`` may be a module or a name in ``a.b``;
    the caller keeps whichever exists as a file.
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*"}
    return found


@dataclass
class ProtoClosure:
    """The generated modules ``roots`` need, transitively, as ``{module name: source file}``."""

    finder: ModuleFinder
    modules: dict[str, Path] = field(default_factory=dict)

    def collect(self, roots: Iterable[str]) -> dict[str, Path]:
        pending = list(roots)
        while pending:
            module = pending.pop()
            if module in self.modules or is_provided(module):
                continue
            path = self.finder.find(module)
            if path is None:
                raise CollectError(f"{module}: not found under {', '.join(map(str, self.finder.roots))}")
            if path.is_dir() or path.name == "__init__.py":
                continue  # A package named by `from pkg import mod`: the copy writes its own __init__.
            if not module.endswith(GENERATED_SUFFIXES):
                raise CollectError(f"{module} ({path}) is not a generated protobuf module: it would need TensorFlow")
            self.modules[module] = path
            pending.extend(self._dependencies(module, path))
        return dict(sorted(self.modules.items()))

    def _dependencies(self, module: str, path: Path) -> list[str]:
        needed = []
        for candidate in sorted(imported_modules(path.read_text(encoding="utf-8"))):
            if is_provided(candidate):
                continue
            if self.finder.find(candidate) is not None:
                needed.append(candidate)
            elif self.finder.find(candidate.rpartition(".")[0]) is None:
                raise CollectError(f"{module} imports {candidate}: neither copied nor provided by protobuf/grpc")
        return needed


def copy_closure(modules: dict[str, Path], finder: ModuleFinder, output: Path) -> list[Path]:
    """Copies each module to ``output`` under its package path; writes the packages' ``__init__.py``."""
    written = []
    for source in modules.values():
        target = output / source.relative_to(finder.root_of(source))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        written.append(target)
        package = target.parent
        while package != output:
            init = package / "__init__.py"
            if not init.exists():
                init.write_text(INIT_TEXT, encoding="utf-8")
            package = package.parent
    return written


# Runs in a fresh interpreter with only OUTPUT ahead of the standard paths.
CHECK_SCRIPT = """
import importlib, pathlib, sys
output = pathlib.Path(sys.argv[1]).resolve()
sys.path.insert(0, str(output))
for name in sys.argv[2:]:
    importlib.import_module(name)
tops = {name.split(".")[0] for name in sys.argv[2:]}
strays = sorted(name for name, mod in sys.modules.items() if name.split(".")[0] in tops
                and not pathlib.Path(getattr(mod, "__file__", None) or "/").resolve().is_relative_to(output))
if strays:
    sys.exit("loaded from outside the copy: " + ", ".join(strays))
"""


def check_copy(output: Path, modules: Iterable[str], python: str = sys.executable) -> None:
    """Imports every copied module from ``output`` alone; raises :class:`CollectError` if one fails."""
    result = subprocess.run([python, "-I", "-c", CHECK_SCRIPT, str(output), *modules],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise CollectError(f"the copy in {output} does not import on its own:\n{result.stderr.strip()}")


def default_roots() -> list[Path]:
    """The interpreter's site-packages (where ``pip install`` put the two wheels)."""
    paths = sysconfig.get_paths()
    return list(dict.fromkeys(Path(paths[key]) for key in ("purelib", "platlib")))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True,
                        help="directory to copy into (its contents go into the image's site-packages)")
    parser.add_argument("--source", type=Path, action="append",
                        help="where tensorflow and tensorflow_serving are installed (default: this interpreter's "
                             "site-packages); repeatable")
    parser.add_argument("--module", action="append", default=[],
                        help="a further generated module to include, e.g. tensorflow.core.protobuf.config_pb2")
    parser.add_argument("--check", action="store_true",
                        help="then import every copied module from OUTPUT alone, in a fresh interpreter")
    args = parser.parse_args(argv)
    finder = ModuleFinder([path.resolve() for path in (args.source or default_roots())])
    try:
        modules = ProtoClosure(finder).collect([*API_MODULES, *args.module])
        output = args.output.resolve()
        copy_closure(modules, finder, output)
        if args.check:
            check_copy(output, modules)
    except CollectError as exc:
        print(f"collect_serving_protos: {exc}", file=sys.stderr)
        return 1
    print(f"copied {len(modules)} generated modules into {output}")
    for module in modules:
        print(f"  {module}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
