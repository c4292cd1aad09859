"""The Prometheus scrape configuration and alert rules.

Structure is checked here; with `promtool` on the PATH (Debian package
`prometheus`) the rules are also checked and unit-tested by Prometheus
itself (infra/prometheus/alerts_test.yml)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from serving.metrics import ServerMetrics
from tests.infra.manifests import INFRA, REPO

ALERTS = INFRA / "prometheus" / "alerts.yml"
ALERTS_TEST = INFRA / "prometheus" / "alerts_test.yml"
SCRAPE_CONFIG = INFRA / "prometheus" / "prometheus.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")

# Metrics the rules use that this repository does not export: the official
# TF Serving image's, and the sentiment monitor's delivery failures.
EXTERNAL_METRICS = {":tensorflow:serving:request_count", ":tensorflow:serving:request_latency_bucket",
                    "sentiment_monitor_delivery_failures_total", "up"}
_METRIC = re.compile(r"(:?[a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]")


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_every_rule_is_a_complete_alert():
    names = set()
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["alert"] and rule["expr"].strip()
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        names.add(rule["alert"])
    assert {"ServingErrorRateHigh", "ServingLatencyHigh", "SentimentMonitorDeliveryFailing"} <= names


def test_rules_use_the_metric_names_our_server_exports():
    """A renamed metric in serving/metrics.py must not silently disable an alert."""
    metrics = ServerMetrics()
    metrics.observe_request(model="intent", version="1", signature="serving_default", api="predict",
                            code="OK", seconds=0.01)
    metrics.model_load_failures.labels(model="intent", version="2").inc()
    exported = {sample.name for family in text_string_to_metric_families(metrics.exposition().decode())
                for sample in family.samples}
    used = {name for rule in rules() for name in _METRIC.findall(rule["expr"])}
    used -= {"rate", "increase", "sum", "histogram_quantile", "by"}
    unknown = used - exported - EXTERNAL_METRICS
    assert not unknown, f"{ALERTS} uses metrics nothing exports: {sorted(unknown)}"
    assert {"serving_requests_total", "serving_request_latency_seconds_bucket"} <= used


def test_scrape_config_reads_the_rules_and_keeps_annotated_pods():
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    assert [SCRAPE_CONFIG.parent / f for f in config["rule_files"]] == [ALERTS]
    (job,) = config["scrape_configs"]
    keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert keep and keep[0]["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
    # The rules select jobs by the pods' app name.
    assert any(r.get("target_label") == "job" for r in job["relabel_configs"])


def test_scraped_pods_name_their_metrics_endpoint():
    for path in (INFRA / "serving" / "deployment.yaml", INFRA / "apps" / "sentiment-monitor.yaml"):
        deployment = next(d for d in yaml.safe_load_all(path.read_text()) if d["kind"] == "Deployment")
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        ports = {str(p["containerPort"]) for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert annotations["prometheus.io/port"] in ports, path


@needs_promtool
def test_promtool_accepts_the_rules():
    result = subprocess.run([PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alerts_fire_as_the_rule_unit_tests_expect():
    result = subprocess.run([PROMTOOL, "test", "rules", str(ALERTS_TEST)], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
