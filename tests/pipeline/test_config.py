import pytest

from tfx_pipeline.config import ConfigError, PipelineConfig, parse_override

MINIMAL = {"name": "intent", "data": {"path": "x.csv", "text_column": "text", "label_column": "category"}}


def test_defaults_and_types():
    config = PipelineConfig.from_dict(MINIMAL)
    assert config.training.epochs == 3
    assert config.model.backbone.preset == "all-minilm-l6-v2"
    assert str(config.root) == "work/pipelines/intent"


@pytest.mark.parametrize("data, message", [
    ({**MINIMAL, "trainng": {}}, "unknown key trainng"),
    ({**MINIMAL, "training": {"epochs": "three"}}, "training.epochs: expected int, got 'three'"),
    ({**MINIMAL, "training": {"epochs": True}}, "training.epochs: expected int"),
    ({**MINIMAL, "model": {"task": "regression"}}, "model.task: 'regression' is not one of"),
    ({**MINIMAL, "data": {"path": "x", "format": "beir"}}, "data.format beir needs model.task"),
    ({"name": "x"}, "missing required key data"),
    ({**MINIMAL, "data": {"path": "x", "text_column": "t"}}, "missing required key data.label_column"),
])
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("'", "'")):
        PipelineConfig.from_dict(data, source="my.yaml")


def test_file_overrides_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text("name: n\ndata: {path: '${DATA_DIR:-/default}/x.csv', text_column: t, label_column: l}\n"
                    "pipeline_root: '${ROOT}/${name}'\n")
    monkeypatch.setenv("ROOT", "/tmp/roots")
    # YAML 1.1 reads `1e-4` (no dot) as a string; a float field still takes it.
    config = PipelineConfig.from_file(path, dict(map(parse_override, ["training.epochs=7",
                                                                      "training.learning_rate=1e-4"])))
    assert config.data.path == "/default/x.csv"
    assert str(config.root) == "/tmp/roots/n"
    assert config.training.epochs == 7
    assert config.training.learning_rate == 1e-4
    monkeypatch.delenv("ROOT")
    with pytest.raises(ConfigError, match="environment variable ROOT is not set"):
        PipelineConfig.from_file(path)


def test_missing_file_and_bad_override(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        PipelineConfig.from_file(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("training.epochs")
