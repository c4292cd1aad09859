"""`python -m benchmarks serving` and `rest_front` end to end, scaled down: tiny model, a few seconds per phase.

The real run (MiniLM, minutes) is documented in the README; this keeps the command working.
"""

from __future__ import annotations

import csv
import math

from benchmarks.serving import BenchmarkConfig, print_report, run


def test_benchmark_runs_paired_rounds_and_judges_the_targets(exports, tmp_path, capsys):
    data = tmp_path / "texts.csv"
    with open(data, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(40):
            writer.writerow([f"where is my card number {i}? " + "it has not arrived " * (i % 5), "card_arrival"])
    config = BenchmarkConfig(
        model_path=exports.intent_v1, data=data, clients=4, duration_seconds=1.5, warmup_seconds=0.5,
        soak_seconds=6, in_process_batch_sizes=(1, 4), in_process_seconds=0.5, rounds=2,
    )

    report = run(config)
    print_report(report)

    assert set(report["in_process_examples_per_s"]) == {"1", "4", "4 grouped"}
    assert len(report["rounds"]) == 2
    for round_ in report["rounds"]:
        assert round_["in_process_per_s"] > 0 and round_["saturated_per_s"] > 0 and round_["half_rate_per_s"] > 0
        assert math.isclose(round_["throughput_ratio"], round_["saturated_per_s"] / round_["in_process_per_s"],
                            rel_tol=0.01)
    for phase in report["phases"]:
        assert phase["requests"] > 0 and phase["errors"] == 0, phase
    assert report["memory"]["rss_start_mb"] > 0
    typical_half_rate = report["phases"][3]
    assert typical_half_rate["name"] == "batching on: half saturation rate"
    unbatched_saturated = report["phases"][1]["throughput_rps"]
    assert math.isclose(report["half_rate_vs_unbatched_saturation"],
                        typical_half_rate["throughput_rps"] / unbatched_saturated, rel_tol=0.02)
    assert set(report["targets"]) == {"saturation_vs_in_process", "half_rate_p99_vs_single_p50", "memory_flat"}
    assert "round 2:" in capsys.readouterr().out


def test_rest_benchmark_compares_the_http_fronts_side_by_side(exports, tmp_path, capsys):
    """`python -m benchmarks rest_front`, scaled down: the three fronts answer every request, the report
    judges uvicorn against both old ones."""
    from benchmarks.rest_front import FRONTS, RestBenchmarkConfig, print_report
    from benchmarks.rest_front import run as run_rest

    data = tmp_path / "texts.csv"
    data.write_text("text,label\n" + "".join(f"where is my card {i},card_arrival\n" for i in range(20)))
    report = run_rest(RestBenchmarkConfig(model_path=exports.intent_v1, data=data, clients=2, seconds=1.0,
                                          warmup_seconds=0.3, rounds=1))
    print_report(report)
    (round_,) = report["rounds"]
    for name in FRONTS:
        assert round_[name]["requests"] > 0 and round_[name]["errors"] == 0, round_[name]
    assert set(report["targets"]) == {"uvicorn_vs_stdlib", "uvicorn_vs_stdlib_nodelay"}
    assert "uvicorn_vs_stdlib:" in capsys.readouterr().out
