"""The one-screen summary of a pipeline run record that `suite-pipeline run` and
`suite-pipeline schedule run-until` print (both CLIs import it from here, neither
from the other)."""

from __future__ import annotations


def format_run(record: dict) -> str:
    lines = [f"run {record['run_id']} of pipeline {record['pipeline']}: {record['status']}"]
    for c in record["components"]:
        took = "cached" if c["cached"] else f"{c['duration_s']:.1f}s"
        lines.append(f"  {c['id']:<17} {took:>8}")
        quarantined = c["artifacts"].get("examples", {}).get("properties", {}).get("quarantined")
        if quarantined:
            lines.append(f"  {'':<17} quarantined {quarantined}")
    for c in record["components"]:
        anomalies = c["artifacts"].get("anomalies", {}).get("properties", {}).get("anomalies")
        for anomaly in anomalies or []:
            lines.append(f"  anomaly: {anomaly}")
    if record.get("metrics"):
        lines.append("  metrics: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                               for k, v in record["metrics"].items()))
    if "blessed" in record:
        lines.append(f"  {'blessed' if record['blessed'] else 'NOT blessed'}: {record.get('blessing_reason')}")
    if record.get("pushed_version"):
        lines.append(f"  serving version {record['pushed_version']}: {record['pushed_path']}")
    for name, variant in (record.get("variants") or {}).items():
        metrics = variant.get("metrics") or {}
        pushed = (f"version {variant['pushed_version']} of {variant.get('model_name')}" if variant.get("pushed_version")
                  else "not pushed")
        facts = (f"accuracy {metrics['accuracy']:.4f} (teacher {metrics['teacher_accuracy']:.4f}), speed-up "
                 f"{metrics['speedup_batch_1']:.2f}x / {metrics['speedup_served_batch']:.2f}x, cost per 1M "
                 f"{metrics['cost_per_million']:.4f} (teacher {metrics['teacher_cost_per_million']:.4f}); "
                 if metrics.get("cost_per_million") is not None else "")
        lines.append(f"  variant {name}: {pushed}: {facts}{variant.get('reason')}")
    from tfx_pipeline import storage  # Apache Beam's filesystems; not loaded for `--help`.

    lines.append(f"  record: {storage.join(record['pipeline_root'], 'runs', record['run_id'] + '.json')}")
    return "\n".join(lines)
