"""ExampleGen, StatisticsGen, SchemaGen and ExampleValidator on small files, through real Beam pipelines."""

import json
import logging

import pytest

from tfx_pipeline.beam.examples import read_split_records, read_split_rows
from tfx_pipeline.beam.quarantine import read_quarantine
from tfx_pipeline.components import ExampleGen, ExampleValidator, SchemaGen, StatisticsGen
from tfx_pipeline.config import ConfigError, DataConfig, ModelConfig, SplitConfig, ValidationConfig
from tfx_pipeline.dsl import ExecutionContext, Pipeline, PipelineError
from tfx_pipeline.runner import LocalDagRunner

MULTI_PROCESS = ("--runner=FnApiRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing")


def write_csv(path, lines: list[bytes]):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def data_pipeline(tmp_path, data: DataConfig, validation: ValidationConfig | None = None,
                  beam_args=("--runner=FnApiRunner",)):
    validation = validation or ValidationConfig()
    split = SplitConfig(train=50, eval=50)
    example_gen = ExampleGen(data, split)
    statistics_gen = StatisticsGen(example_gen.outputs["examples"], ModelConfig(), ["text", "label"],
                                   ["train", "eval"])
    schema_gen = SchemaGen(statistics_gen.outputs["statistics"], data, validation, tmp_path / "state/schema.json")
    validator = ExampleValidator(example_gen.outputs["examples"], statistics_gen.outputs["statistics"],
                                 schema_gen.outputs["schema"], validation, ["train", "eval"],
                                 tmp_path / "state/statistics.json")
    return Pipeline("data", tmp_path / "root", [example_gen, statistics_gen, schema_gen, validator], beam_args)


def artifacts(record, component_id):
    return next(c for c in record["components"] if c["id"] == component_id)["artifacts"]


def test_bad_rows_are_quarantined_with_reasons_and_nothing_good_is_lost(tmp_path):
    good = [f"message number {i} about my card,card_arrival".encode() for i in range(20)]
    good += [f"what rate for currency {i},exchange_rate".encode() for i in range(20)]
    path = write_csv(tmp_path / "in.csv", [b"text,category", *good,
                                          b"broken \xff bytes,card_arrival",
                                          b"one,too,many",
                                          b"pizza please,pizza_order",
                                          b"   ,card_arrival",
                                          b",exchange_rate"])
    data = DataConfig(path=str(path), text_column="text", label_column="category",
                      labels=("card_arrival", "exchange_rate"))
    record = LocalDagRunner().run(data_pipeline(tmp_path, data, ValidationConfig(max_bad_row_fraction=0.2)))

    examples = artifacts(record, "ExampleGen")["examples"]
    assert examples["properties"]["rows_read"] == 45
    assert examples["properties"]["quarantined"] == {"undecodable_bytes": 1, "malformed_row": 1}
    anomalies = artifacts(record, "ExampleValidator")["anomalies"]["properties"]
    assert anomalies["bad_rows"] == {"undecodable_bytes": 1, "malformed_row": 1, "unknown_label": 1,
                                     "empty_text": 2}
    quarantined = list(read_quarantine(examples["uri"] + "/quarantine"))
    quarantined += list(read_quarantine(artifacts(record, "ExampleValidator")["anomalies"]["uri"] + "/quarantine"))
    by_reason = {q["reason"]: q for q in quarantined}
    assert by_reason["undecodable_bytes"]["source"] == f"{path}:42"
    assert "not UTF-8 at byte 7" in by_reason["undecodable_bytes"]["message"]
    assert by_reason["malformed_row"]["message"] == "expected 2 fields, found 3"
    assert "'pizza_order' is not one of the schema's 2 labels" in by_reason["unknown_label"]["message"]

    valid_uri = artifacts(record, "ExampleValidator")["examples"]["uri"]
    valid = read_split_rows(valid_uri, "train") + read_split_rows(valid_uri, "eval")
    assert sorted(r["text"] for r in valid) == sorted(line.decode().rsplit(",", 1)[0] for line in good)


def test_too_many_bad_rows_stop_the_run_with_the_reasons(tmp_path):
    lines = [b"text,category"] + [f"text {i},a".encode() for i in range(5)] + [b"x,zzz"] * 5 + [b"y,b"] * 3
    data = DataConfig(path=str(write_csv(tmp_path / "in.csv", lines)), text_column="text", label_column="category",
                      labels=("a", "b"))
    with pytest.raises(PipelineError, match=r"38.5% of 13 rows are bad.*unknown_label \(5\).*quarantined rows are in"):
        LocalDagRunner().run(data_pipeline(tmp_path, data, ValidationConfig(max_bad_row_fraction=0.1)))


def test_missing_column_names_file_and_columns(tmp_path):
    path = write_csv(tmp_path / "in.csv", [b"sentence,category", b"hello,a"])
    data = DataConfig(path=str(path), text_column="text", label_column="category")
    with pytest.raises(ConfigError, match=r"in.csv: column 'text' \(data.text_column\) is not in the header; "
                                          r"columns are: sentence, category"):
        LocalDagRunner().run(data_pipeline(tmp_path, data))


def test_no_matching_files(tmp_path):
    data = DataConfig(path=str(tmp_path / "nothing-*.csv"), text_column="t", label_column="l")
    with pytest.raises(ConfigError, match="data.path: no file matches"):
        LocalDagRunner().run(data_pipeline(tmp_path, data))


def test_jsonl_with_glob_inferred_schema_statistics_and_skew(tmp_path):
    rows = [{"headline": f"profit up {i} percent", "sentiment": "positive", "agreement": "all"} for i in range(30)]
    rows += [{"headline": f"loss widened to {i} million", "sentiment": "negative"} for i in range(10)]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:20]) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in rows[20:]) + "\n{\"headline\": 5}\n[1]\n")
    data = DataConfig(path=str(tmp_path / "*.jsonl"), text_column="headline", label_column="sentiment")
    record = LocalDagRunner().run(data_pipeline(tmp_path, data, ValidationConfig(max_bad_row_fraction=0.1)))
    assert artifacts(record, "ExampleGen")["examples"]["properties"]["quarantined"] == {
        "wrong_type": 1, "malformed_row": 1}
    schema = json.loads((tmp_path / "state/schema.json").read_text())
    assert schema["labels"] == ["negative", "positive"]  # Inferred from the training split.
    statistics = json.loads(open(artifacts(record, "StatisticsGen")["statistics"]["uri"] + "/statistics.json").read())
    total = statistics["train"]["num_examples"] + statistics["eval"]["num_examples"]
    assert total == 40
    assert statistics["train"]["text_tokens"]["min"] >= 4  # "profit up 0 percent" is 4 word pieces.
    assert sum(statistics["train"]["labels"].values()) == statistics["train"]["num_examples"]
    assert record["components"][3]["artifacts"]["anomalies"]["properties"]["anomalies"] == [
        "1 row(s) quarantined: malformed_row", "1 row(s) quarantined: wrong_type"]

    # Next run: the same texts, now mostly negative, is flagged as label skew against the previous run.
    flipped = [{**r, "sentiment": "negative"} for r in rows[:25]] + rows[25:]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in flipped[:20]) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in flipped[20:]) + "\n")
    record = LocalDagRunner().run(data_pipeline(tmp_path, data))
    anomalies = artifacts(record, "ExampleValidator")["anomalies"]["properties"]["anomalies"]
    assert any(a.startswith("label distribution skew") for a in anomalies), anomalies


def test_example_gen_gives_byte_identical_examples_on_two_worker_processes(tmp_path):
    lines = [b"text,category"] + [f"row {i} text,{'ab'[i % 2]}".encode() for i in range(300)]
    data = DataConfig(path=str(write_csv(tmp_path / "in.csv", lines)), text_column="text", label_column="category")
    outputs = {}
    for name, beam_args in (("one", ("--runner=FnApiRunner",)), ("two", MULTI_PROCESS)):
        component = ExampleGen(data, SplitConfig(train=70, eval=30))
        out = tmp_path / name / "examples"
        ctx = ExecutionContext({}, {"examples": out}, tmp_path / name, beam_args, "test", logging.getLogger("t"))
        properties = component.execute(ctx)["examples"]
        outputs[name] = {split: sorted(read_split_records(out, split)) for split in ("train", "eval")}
        assert properties["rows_read"] == 300
        assert properties["split_counts"] == {s: len(rows) for s, rows in outputs[name].items()}
    assert outputs["one"] == outputs["two"]
