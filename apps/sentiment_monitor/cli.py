"""Command line: ``python -m apps.sentiment_monitor COMMAND``.

Commands:

- ``run``: the live monitor (sources, scoring, rules, sinks, optional dashboard).
- ``backtest FILE``: replay a history, print the alerts, write PNG and HTML charts.
- ``demo-stream FILE``: write the demo stream (optionally paced, to follow live).
- ``dashboard``: serve the dashboard over an existing database.
- ``replay``: send the alerts of the alert dead-letter queue now (all, one sink's, or one alert).

Example::

    python -m apps.sentiment_monitor demo-stream news.jsonl --items 2000
    python -m apps.sentiment_monitor run --config monitor.yaml --set scoring.address=127.0.0.1:8500
    python -m apps.sentiment_monitor backtest news.jsonl --out backtest/
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from apps.sentiment_monitor.config import ConfigError, MonitorConfig, load_config
from apps.sentiment_monitor.store import StoreError
from suite_core.tf_logging import quiet_tensorflow


def _overrides(pairs: Sequence[str]) -> dict[str, str]:
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key.path=value, got {pair!r}")
        result[key] = value
    return result


def _config(args: argparse.Namespace) -> MonitorConfig:
    return load_config(args.config, _overrides(args.set))


def cmd_run(args: argparse.Namespace) -> int:
    from apps.sentiment_monitor.app import MonitorApp
    from apps.sentiment_monitor.scoring import ScoringError

    app = MonitorApp(_config(args))
    # SIGTERM (e.g. from a process manager) stops cleanly, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: app.stop())
    try:
        progress = app.run(until_idle=args.until_idle)
    except KeyboardInterrupt:
        app.stop()
        return 130
    except ScoringError as exc:  # Not a transient outage: a wrong model or signature.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger(__name__).info("stopped: %d items ingested, %d processed, %d rejected", progress.ingested,
                                     progress.processed, progress.rejected)
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from apps.sentiment_monitor.backtest import backtest
    from apps.sentiment_monitor.scoring import ScoringError

    try:
        result = backtest(_config(args), Path(args.file), Path(args.out))
    except ScoringError as exc:  # Unavailable included: a backtest has no reason to wait.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for alert in result.alerts:
        print(alert.summary())
    print(f"{len(result.alerts)} alerts; items {result.items}; {result.rejected} lines rejected")
    print(f"charts: {result.png} {result.html}")
    return 0


def cmd_demo_stream(args: argparse.Namespace) -> int:
    from apps.sentiment_monitor.demo_stream import demo_items, write_stream
    from apps.sentiment_monitor.items import item_to_record

    start = args.start if args.start is not None else time.time() - args.span_hours * 3600
    items = demo_items(args.items, start=start, span_seconds=args.span_hours * 3600, seed=args.seed)
    path = Path(args.file)
    if args.pace <= 0:
        print(f"{write_stream(path, items, malformed=args.malformed, seed=args.seed)} lines written to {path}")
        return 0
    with path.open("a", encoding="utf-8") as handle:  # Paced: append as a live feed would.
        for item in items:
            handle.write(json.dumps(item_to_record(item)) + "\n")
            handle.flush()
            time.sleep(args.pace)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    import dataclasses

    from apps.sentiment_monitor.dashboard import Dashboard
    from apps.sentiment_monitor.store import Store

    config = _config(args)
    config = dataclasses.replace(config, dashboard=dataclasses.replace(config.dashboard, enabled=True))
    dashboard = Dashboard(config, lambda: Store.open(config.store.url)).start()
    print(f"dashboard on http://{dashboard.address}/ (Ctrl-C to stop)")
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        dashboard.stop()
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from apps.sentiment_monitor.store import Store

    store = Store.open(_config(args).store.url)
    try:
        queued = [d for d in store.alert_dead_letters()
                  if args.sink in (None, d["sink"]) and args.alert in (None, d["alert_id"])]
        for d in queued:
            print(f"{d['alert_id']} {d['entity']} {d['rule']} -> {d['sink']}: {d['attempts']} attempts, "
                  f"last error: {d['last_error']}")
        with store.transaction():
            replayed = store.replay(sink=args.sink, alert_id=args.alert)
    finally:
        store.close()
    # The running monitor's delivery workers pick them up at their next poll; a stopped one when it starts.
    print(f"{replayed} deliveries due now")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m apps.sentiment_monitor",
                                     description="Financial news sentiment monitor with alerts.")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow's C++ log lines")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--config", help="YAML file (defaults: apps/sentiment_monitor/default.yaml)")
        sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override one value, e.g. scoring.address=127.0.0.1:8500 (repeatable)")
        return sub

    run = with_config(commands.add_parser("run", help="run the monitor"))
    run.add_argument("--until-idle", action="store_true", help="stop when every source is read and scored")
    run.set_defaults(handler=cmd_run)

    backtest = with_config(commands.add_parser("backtest", help="replay a history file"))
    backtest.add_argument("file")
    backtest.add_argument("--out", default="backtest", help="directory for the database and charts")
    backtest.set_defaults(handler=cmd_backtest)

    demo = commands.add_parser("demo-stream", help="write the demo stream")
    demo.add_argument("file")
    demo.add_argument("--items", type=int, default=2000)
    demo.add_argument("--span-hours", type=float, default=6.0)
    demo.add_argument("--start", type=float, help="event time of the first item (epoch seconds; default: "
                                                  "span-hours ago)")
    demo.add_argument("--seed", type=int, default=11)
    demo.add_argument("--malformed", action="store_true", help="mix in malformed lines")
    demo.add_argument("--pace", type=float, default=0.0, help="seconds between appended lines (0: write at once)")
    demo.set_defaults(handler=cmd_demo_stream)

    dashboard = with_config(commands.add_parser("dashboard", help="serve the dashboard"))
    dashboard.set_defaults(handler=cmd_dashboard)

    replay = with_config(commands.add_parser("replay", help="send the alerts of the alert dead-letter queue now"))
    replay.add_argument("--sink", help="only this sink's deliveries (its name)")
    replay.add_argument("--alert", help="only this alert id")
    replay.set_defaults(handler=cmd_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_tensorflow(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except (ConfigError, StoreError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
