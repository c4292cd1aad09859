"""`suite-pipeline doctor`: the strategy and precision suggested per device kind, and a timed step here."""

import pytest

from tests.conftest import TINY_BERT
from tfx_pipeline.cli import main
from tfx_pipeline.config import BackboneConfig, DistributionConfig
from tfx_pipeline.model.doctor import DeviceReport, diagnose, format_report, recommend


@pytest.mark.parametrize("devices, strategy, precision", [
    (DeviceReport(gpus=0, tpus=8, cpu_bfloat16=False, workers=1), "tpu", "mixed_bfloat16"),
    (DeviceReport(gpus=1, tpus=0, cpu_bfloat16=True, workers=1), "default", "mixed_float16"),
    (DeviceReport(gpus=4, tpus=0, cpu_bfloat16=False, workers=1), "mirrored", "mixed_float16"),
    (DeviceReport(gpus=1, tpus=0, cpu_bfloat16=False, workers=2), "multi_worker_mirrored", "mixed_float16"),
    (DeviceReport(gpus=0, tpus=0, cpu_bfloat16=False, workers=2), "multi_worker_mirrored", "float32"),
    (DeviceReport(gpus=0, tpus=0, cpu_bfloat16=True, workers=1), "default", "float32"),
    (DeviceReport(gpus=0, tpus=0, cpu_bfloat16=False, workers=1), "default", "float32"),
])
def test_suggested_strategy_and_precision_follow_the_devices(devices, strategy, precision):
    advice = recommend(devices)
    assert (advice.strategy, advice.precision) == (strategy, precision)
    if devices.cpu_bfloat16 and not devices.gpus:
        assert "cpu_tuning: auto" in advice.why  # What it would do with bfloat16 on this CPU.


def test_doctor_reports_this_machine_and_times_training_steps():
    report = diagnose(DistributionConfig(), BackboneConfig(architecture=TINY_BERT), steps=2)
    assert any(device.startswith("CPU:") for device in report["devices"])
    assert report["configured"] == {"strategy": "default", "precision": "auto"}
    steps = report["training_steps"]
    assert (steps["replicas"], steps["precision"], steps["steps"]) == (1, "float32", 2)
    assert steps["examples_per_second"] > 0
    assert "training steps:" in format_report(report)


def test_doctor_command_without_a_training_step(capsys):
    assert main(["doctor", "--steps", "0"]) == 0
    out = capsys.readouterr().out
    assert "suggested:  strategy" in out and "training steps" not in out
