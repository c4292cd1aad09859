"""Per-entity sentiment over time, with alert markers: as data, as a PNG
(matplotlib) and as a self-contained HTML page (inline SVG drawn by a few
lines of JavaScript, no external scripts, so it works offline).

The plotted value is each sliding window's mean score (P(positive) -
P(negative), in [-1, 1]) at the window's end.

Example:

>>> from apps.sentiment_monitor.windows import Figures
>>> series = sentiment_series({"NOK": {0.0: Figures(2, 0, 1, 1, 0.8, 0.5)}}, size=1200, slide=600)
>>> [point["t"] for point in series["NOK"]], series["NOK"][0]
([600.0, 1200.0], {'t': 600.0, 'mean': 0.4, 'count': 2, 'negative_share': 0.0})
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from apps.sentiment_monitor.alerts import Alert
from apps.sentiment_monitor.windows import Figures


def sentiment_series(buckets: dict[str, dict[float, Figures]], *, size: float, slide: float) -> dict[str, list[dict]]:
    """``{entity: [{t, mean, count, negative_share}, ...]}``, one point per window end with items."""
    steps = int(round(size / slide))
    series = {}
    for entity, by_start in sorted(buckets.items()):
        if not by_start:
            continue
        first, last = min(by_start), max(by_start)
        points = []
        end = first + slide
        while end <= last + size + 1e-9:
            window = Figures.total(by_start.get(end - slide * (k + 1), Figures()) for k in range(steps))
            if window.count:
                points.append({"t": end, "mean": round(window.mean, 4), "count": window.count,
                               "negative_share": round(window.negative_share, 4)})
            end += slide
        series[entity] = points
    return series


def alert_markers(alerts: Sequence[Alert]) -> list[dict]:
    return [{"id": a.alert_id, "entity": a.entity, "rule": a.rule, "severity": a.severity, "t": a.trigger_time,
             "window_start": a.window_start, "window_end": a.window_end, "summary": a.summary(),
             "evidence": [e["text"] for e in a.evidence]} for a in alerts]


def write_png(path: Path, series: dict[str, list[dict]], alerts: Sequence[Alert]) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # No display on servers and in CI.
    from datetime import datetime, timezone

    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    def when(t: float) -> datetime:
        return datetime.fromtimestamp(t, timezone.utc)

    entities = list(series) or ["(no data)"]
    figure, axes = plt.subplots(len(entities), 1, figsize=(10, 1.8 * len(entities) + 1), sharex=True, squeeze=False)
    for ax, entity in zip(axes[:, 0], entities, strict=True):
        points = series.get(entity, [])
        ax.plot([when(p["t"]) for p in points], [p["mean"] for p in points], color="tab:blue", linewidth=1.2)
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel(entity, rotation=0, ha="right", va="center")
        for alert in (a for a in alerts if a.entity == entity):
            color = "red" if alert.severity == "critical" else "orange"
            ax.axvline(when(alert.trigger_time), color=color, linewidth=1, linestyle="--")
            ax.plot([when(alert.trigger_time)], [-1.0], marker="v", color=color)
    axes[-1, 0].xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
    figure.suptitle("Mean sentiment per window (P(pos) - P(neg)); dashed: alerts")
    figure.autofmt_xdate()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sentiment monitor</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
svg { border: 1px solid #ddd; background: #fff; }
.series { fill: none; stroke-width: 1.5; }
.alert-marker.critical { fill: #d62728; } .alert-marker.warning { fill: #ff7f0e; }
#alerts li { margin: 0.3em 0; } .critical { color: #b00; } .warning { color: #a60; }
</style></head>
<body>
<h1>Sentiment per company</h1>
<p id="status">loading…</p>
<svg id="chart" width="960" height="360" role="img" aria-label="sentiment per entity over time"></svg>
<h2>Recent alerts</h2>
<ul id="alerts"></ul>
<h2>Undelivered alerts (dead-letter queue)</h2>
<ul id="alert-dead-letters"></ul>
<script>
const LIVE = __LIVE__;
const EMBEDDED = __DATA__;
const COLORS = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
const NS = "http://www.w3.org/2000/svg";
function el(name, attrs, parent) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  parent.appendChild(node);
  return node;
}
function draw(data) {
  const svg = document.getElementById("chart");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = 960, H = 360, L = 50, R = 120, T = 10, B = 30;
  const entities = Object.keys(data.series);
  const times = entities.flatMap(e => data.series[e].map(p => p.t)).concat(data.alerts.map(a => a.t));
  const t0 = Math.min(...times), t1 = Math.max(...times, t0 + 1);
  const x = t => L + (W - L - R) * (t - t0) / (t1 - t0);
  const y = v => T + (H - T - B) * (1 - (v + 1) / 2);
  el("line", {x1: L, x2: W - R, y1: y(0), y2: y(0), stroke: "#aaa"}, svg);
  for (const v of [-1, 0, 1]) el("text", {x: 5, y: y(v) + 4, "font-size": 11}, svg).textContent = v;
  entities.forEach((entity, i) => {
    const color = COLORS[i % COLORS.length];
    const points = data.series[entity].map(p => `${x(p.t).toFixed(1)},${y(p.mean).toFixed(1)}`).join(" ");
    el("polyline", {class: "series", "data-entity": entity, points: points, stroke: color}, svg);
    el("text", {x: W - R + 8, y: T + 14 * (i + 1), fill: color, "font-size": 12}, svg).textContent = entity;
  });
  for (const a of data.alerts) {
    const m = el("circle", {class: "alert-marker " + a.severity, cx: x(a.t), cy: y(-1) - 4, r: 5,
                            "data-alert": a.id}, svg);
    el("title", {}, m).textContent = a.summary;
  }
  const list = document.getElementById("alerts");
  list.replaceChildren(...data.alerts.map(a => {
    const li = document.createElement("li");
    li.className = a.severity;
    li.dataset.alert = a.id;
    li.textContent = a.summary + (a.evidence.length ? " — " + a.evidence[0] : "");
    return li;
  }));
  const health = data.health || {dead_letters: {}, deliveries: {}, alert_dead_letters: []};
  const deadLines = Object.values(health.dead_letters).reduce((n, c) => n + c, 0);
  document.getElementById("alert-dead-letters").replaceChildren(...health.alert_dead_letters.map(d => {
    const li = document.createElement("li");
    li.className = d.severity;
    li.dataset.alert = d.alert_id;
    li.textContent = `${d.entity} ${d.rule} → ${d.sink}: ${d.attempts} attempts, ${d.last_error}`;
    return li;
  }));
  document.getElementById("status").textContent =
    `${entities.length} entities, ${data.alerts.length} alerts, ${deadLines} dead letters, ` +
    `${health.deliveries.dead_lettered || 0} undelivered alerts` +
    (LIVE ? ", updated " + new Date().toISOString() : "");
}
async function refresh() {
  try {
    const response = await fetch("/api/data");
    draw(await response.json());
  } catch (error) {
    document.getElementById("status").textContent = "cannot load data: " + error;
  }
}
if (LIVE) { refresh(); setInterval(refresh, __REFRESH_MS__); } else { draw(EMBEDDED); }
</script>
</body></html>
"""


def html_page(data: dict | None = None, *, live: bool = False, refresh_seconds: float = 5.0) -> str:
    """The chart page: ``live`` fetches ``/api/data`` periodically, otherwise ``data`` is embedded."""
    embedded = json.dumps(data or {"series": {}, "alerts": []}).replace("</", "<\\/")
    return (PAGE.replace("__LIVE__", "true" if live else "false").replace("__DATA__", embedded)
            .replace("__REFRESH_MS__", str(int(refresh_seconds * 1000))))
