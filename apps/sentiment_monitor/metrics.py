"""Prometheus metrics of alert delivery and of the dead letters, read from the store at scrape time.

The database already holds each delivery's attempts and status, and survives
restarts; counting from it means the exported counters never reset or disagree
with what was stored (`infra/prometheus/alerts.yml` alerts on them).

Example::

    registry = delivery_metrics_registry(lambda: store)
    prometheus_client.generate_latest(registry)   # text exposition
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from apps.sentiment_monitor.store import DEAD_LETTERED, DELIVERED, Store


class DeliveryCollector(Collector):
    def __init__(self, read: Callable[[Callable[[Store], list[dict]]], list[dict]]) -> None:
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        deliveries = self._read(lambda store: store.deliveries())
        failures: collections.Counter[str] = collections.Counter()
        by_status: collections.Counter[tuple[str, str]] = collections.Counter()
        for delivery in deliveries:
            # Every attempt but a successful last one failed.
            failures[delivery["sink"]] += delivery["attempts"] - (1 if delivery["status"] == DELIVERED else 0)
            by_status[(delivery["sink"], delivery["status"])] += 1
        failed = CounterMetricFamily("sentiment_monitor_delivery_failures",
                                     "Failed alert delivery attempts, by sink.", labels=["sink"])
        for sink, count in sorted(failures.items()):
            failed.add_metric([sink], count)
        yield failed
        current = GaugeMetricFamily("sentiment_monitor_deliveries",
                                    "Alert deliveries by sink and status (delivered, retrying, dead_lettered).",
                                    labels=["sink", "status"])
        for (sink, status), count in sorted(by_status.items()):
            current.add_metric([sink, status], count)
        yield current
        queue = GaugeMetricFamily("sentiment_monitor_alert_dead_letters",
                                  "Alert deliveries past their retry budget (the alert dead-letter queue), by sink; "
                                  "still retried, `replay` sends them now.", labels=["sink"])
        for sink in sorted({d["sink"] for d in deliveries}):
            queue.add_metric([sink], by_status[(sink, DEAD_LETTERED)])
        yield queue
        health = self._read(lambda store: [store.item_counts(), store.dead_letter_counts()])
        items = GaugeMetricFamily("sentiment_monitor_items", "Stored items by status (pending, counted, late, dead).",
                                  labels=["status"])
        for status, count in sorted(health[0].items()):
            items.add_metric([status], count)
        yield items
        dead = CounterMetricFamily("sentiment_monitor_dead_letters",
                                   "Lines and items dead-lettered, by the stage that refused them.", labels=["stage"])
        for stage, count in sorted(health[1].items()):
            dead.add_metric([stage], count)
        yield dead


def delivery_metrics_registry(read: Callable[[Callable[[Store], list[dict]]], list[dict]]) -> CollectorRegistry:
    """A registry of its own (no global state): `read(fn)` runs `fn` on the store."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DeliveryCollector(read))
    return registry
