"""`python -m benchmarks compression_peers`, scaled down: a tiny BERT classifier, a fraction of a second a timing.

The real run (MiniLM on Banking77) prints figures for reference; this keeps the command working."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, TINY_BERT

TEXTS = ["My card hasn't arrived yet", "what is the exchange rate for euros?", "I want to close my account " * 8,
         "how do I change my pin", "top up failed", "Why was I charged twice for one transfer?"]


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("tf2onnx") is None,
                    reason="the `peers` extra (onnxruntime, tf2onnx) is not installed")
def test_ort_fp32_gives_the_savedmodel_logits_and_the_report_has_the_ratios(tmp_path):
    from tfx_pipeline.config import BackboneConfig
    from tfx_pipeline.model.backbone import load_backbone
    from tfx_pipeline.model.export import export_text_classifier
    from tfx_pipeline.model.preprocessing import TextPreprocessor
    from tfx_pipeline.model.tasks import build_text_classifier

    preprocessor = TextPreprocessor.from_preset("all-minilm-l6-v2", sequence_length=32)
    model = build_text_classifier(load_backbone(BackboneConfig(architecture=TINY_BERT),
                                                preprocessor.vocabulary_size, 32), num_classes=3)
    export_text_classifier(model, preprocessor, ["a", "b", "c"], tmp_path / "model")
    (tmp_path / "texts.csv").write_text("text,label\n" + "".join(f'"{text}",a\n' for text in TEXTS))

    # A process of its own: the benchmark sets TensorFlow's thread pools, which must be set before TensorFlow runs.
    done = subprocess.run([sys.executable, "-m", "benchmarks", "compression_peers", "--model_path",
                           str(tmp_path / "model"), "--texts", str(tmp_path / "texts.csv"), "--batch_sizes", "1", "4",
                           "--seconds", "0.2", "--rounds", "1", "--work_dir", str(tmp_path), "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["texts"] == len(TEXTS)
    assert report["agreement_with_tf"]["ort fp32"] == 1.0
    assert report["max_abs_logit_diff"]["ort fp32"] <= 1e-4
    assert 0.0 <= report["agreement_with_tf"]["ort int8"] <= 1.0
    assert report["encoder_vs_serving_max_abs_diff"] <= 1e-4
    for backend in ("ort fp32", "ort int8"):
        rates = report["examples_per_second"][backend]
        assert set(report["vs_tf"][backend]) == {"1", "4"}
        for size, ratio in report["vs_tf"][backend].items():
            assert ratio == pytest.approx(rates[size] / report["examples_per_second"]["tf"][size], rel=0.01)


def test_without_the_extra_it_names_the_extra_to_install(monkeypatch, tmp_path):
    from benchmarks import compression_peers

    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else found(name, *a))
    with pytest.raises(SystemExit, match=r"`peers` extra \(.*missing: [^)]*tf2onnx\).*\.\[peers\]"):
        compression_peers.main(["--model_path", str(tmp_path)])
