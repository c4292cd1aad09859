"""Sentiment monitor: a risk desk's watch on financial news.

Reads headlines and posts (a growing JSON-lines file, a directory of them,
standard input or HTTP POST), scores each with the ``sentiment`` model on a
TF Serving compatible server over gRPC, aggregates sentiment per company on
sliding event-time windows and raises alerts when negative news surges.
State (items, read positions, window aggregates, alerts, delivery status)
lives in SQLite or PostgreSQL, so a crash and restart loses nothing and
sends no alert twice.

Modules, one job each:

- ``config``: typed configuration (one dataclass per concern), from YAML.
- ``items``: the item record and the parsing of one input line.
- ``ingest``: sources (followed file, directory, stdin, HTTP POST) and the dead-letter file.
- ``entities``: cashtags, explicit tickers and watchlist names -> tickers.
- ``scoring``: micro-batches to the model server (one Predict per batch).
- ``windows``: event-time bucket and sliding-window arithmetic.
- ``rules``: the alert rules, as pure functions over window figures.
- ``store``: the database (SQLite / PostgreSQL).
- ``monitor``: the processing loop tying the above together.
- ``sinks`` and ``delivery``: where alerts go, with retries and back-off.
- ``charts`` and ``dashboard``: the PNG / HTML charts and the live page.
- ``demo_stream``, ``backtest``, ``cli``: the commands (its benchmark: ``python -m benchmarks sentiment_monitor``).

Run ``python -m apps.sentiment_monitor --help``.
"""
