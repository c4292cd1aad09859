"""``python -m apps.ranker``: ingest, remove, query, serve, evaluate.

Examples::

    python -m apps.ranker ingest catalog.jsonl --full          # the whole catalog: absent items are removed
    python -m apps.ranker ingest new_items.jsonl               # upsert
    python -m apps.ranker remove tent-budget blender-quiet
    python -m apps.ranker query "a light tent" --filter '{"in_stock": true, "price": {"max": 300}}' -k 5
    python -m apps.ranker query --recent tent-lightweight --exclude sleeping-bag-compact
    python -m apps.ranker serve --port 8090
    python -m apps.ranker --index work/ranker/scifact --embedder scifact_embedder --reranker scifact_reranker \\
        evaluate /work/shared/data/scifact --split train --holdout 0.2 --limit 100

Exit codes: 0 done, 1 invalid input, 2 bad usage or configuration,
3 the model server is unreachable or failed, 4 the index is empty.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from apps.ranker.config import DEFAULT_CONFIG_PATH, REPO, AppConfig, ConfigError, load_config, with_overrides
from apps.ranker.errors import EmptyIndex, IngestError, InvalidRequest, ModelError, ModelUnavailable, RankerError
from suite_core.beir import BeirFormatError
from suite_core.tf_logging import quiet_tensorflow

if TYPE_CHECKING:  # The ranker loads the gRPC client and TensorFlow's protos: imported by the commands.
    from apps.ranker.ranker import Ranker

EXIT_OK, EXIT_INVALID_INPUT, EXIT_USAGE, EXIT_MODEL, EXIT_EMPTY_INDEX = 0, 1, 2, 3, 4


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m apps.ranker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="YAML config (default: packaged)")
    parser.add_argument("--server", help="model server host:port, overriding the config")
    parser.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow's C++ log lines")
    parser.add_argument("--index", help="index directory, overriding the config")
    parser.add_argument("--embedder", help="embedder model name, overriding the config")
    parser.add_argument("--reranker", help="re-ranker model name, overriding the config")
    parser.add_argument("--degraded-mode", action="store_true", default=None,
                        help="answer from BM25 alone (flagged degraded) while the model server is down")
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="add or update items from a JSON-lines catalog")
    ingest.add_argument("catalog", type=Path, help="JSON lines: id (or _id), title, text, metadata")
    ingest.add_argument("--full", action="store_true", help="the file is the whole catalog: remove absent items")

    remove = commands.add_parser("remove", help="remove items by id")
    remove.add_argument("ids", nargs="*", help="item ids")
    remove.add_argument("--file", type=Path, help="one item id a line")

    query = commands.add_parser("query", help="rank the catalog for a user's context; prints the JSON response")
    query.add_argument("text", nargs="?", help="what the user is after")
    query.add_argument("--recent", nargs="*", default=[], help="ids of items the user recently engaged with")
    query.add_argument("--candidates", nargs="*", help="rank only these item ids")
    query.add_argument("--exclude", nargs="*", default=[], help="item ids already seen")
    query.add_argument("--filter", dest="filters", type=json.loads, default={},
                       help='metadata filters as JSON, e.g. \'{"category": "kitchen", "price": {"max": 100}}\'')
    query.add_argument("-k", type=int, help="how many items (default from config)")
    query.add_argument("--no-rerank", action="store_true", help="stage 1 only")

    serve = commands.add_parser("serve", help="the HTTP JSON endpoint (POST /v1/rank, GET /healthz)")
    serve.add_argument("--host", help="bind address (default from config)")
    serve.add_argument("--port", type=int, help="port (default from config; 0 picks a free one)")

    evaluate = commands.add_parser("evaluate", help="nDCG@10, Recall@100, MRR@10 on a BEIR dataset, four systems")
    evaluate.add_argument("data", type=Path, help="BEIR directory (corpus.jsonl, queries, qrels)")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--queries", type=Path, help="file of query ids to use, one a line")
    evaluate.add_argument("--holdout", type=float, help="use the hash-based holdout fraction of the queries")
    evaluate.add_argument("--limit", type=int, help="at most this many queries (first by id)")
    evaluate.add_argument("--rerank-depth", type=int, nargs="+",
                          help="N re-ranked per query (default from config); several: one system per depth")
    evaluate.add_argument("--output", type=Path, help="JSON report (default: <index>/../evaluation-<split>.json)")
    return parser


def _config(args: argparse.Namespace) -> AppConfig:
    index = args.index
    if index is None and args.command == "evaluate":  # keep an evaluation's corpus out of the app's index
        index = str(REPO / "work" / "ranker" / "eval" / args.data.resolve().name)
    return with_overrides(load_config(args.config), address=args.server, index_path=index,
                          embedder_model=args.embedder, reranker_model=args.reranker,
                          degraded_mode=args.degraded_mode)


def _print(value: object, out: TextIO) -> None:
    print(json.dumps(value, ensure_ascii=False), file=out)


def _query(ranker: Ranker, args: argparse.Namespace, out: TextIO) -> int:
    from apps.ranker.ranker import RankRequest

    if not isinstance(args.filters, dict):
        raise InvalidRequest("--filter must be a JSON object", problem="invalid_filter")
    request = RankRequest(text=args.text, recent=tuple(args.recent),
                          candidates=None if args.candidates is None else tuple(args.candidates),
                          filters=args.filters, exclude=tuple(args.exclude), k=args.k, rerank=not args.no_rerank)
    _print(ranker.rank(request).to_dict(), out)
    return EXIT_OK


def _serve(ranker: Ranker, args: argparse.Namespace) -> int:
    import dataclasses

    from apps.ranker.web import RankHttpServer

    http = ranker.config.http
    http = dataclasses.replace(http, host=args.host or http.host, port=http.port if args.port is None else args.port)
    server = RankHttpServer(ranker, http)
    if len(ranker.index) == 0:
        print(f"warning: the index at {ranker.directory} is empty; requests get 409 until a catalog is ingested",
              file=sys.stderr)
    print(f"serving POST {server.url}/v1/rank (model server {ranker.config.server.address}, "
          f"{len(ranker.index)} items)", flush=True)
    server.serve_until_interrupted()
    return EXIT_OK


def _evaluate(ranker: Ranker, args: argparse.Namespace, out: TextIO) -> int:
    from apps.ranker.evaluation import evaluate, format_table

    depths = args.rerank_depth
    report = evaluate(ranker, args.data, args.split, rerank_depth=depths[0] if depths and len(depths) == 1 else depths,
                      query_ids_file=args.queries, holdout=args.holdout, limit=args.limit)
    output = args.output or ranker.directory.parent / f"evaluation-{ranker.directory.name}-{args.split}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1))
    print(format_table(report), file=out)
    print(f"wrote {output}", file=sys.stderr)
    return EXIT_OK


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_tensorflow(argv)
    args = _parser().parse_args(argv)
    from apps.ranker.ranker import Ranker

    try:
        config = _config(args)
        with Ranker.from_config(config) as ranker:
            if args.command == "ingest":
                _print(ranker.ingest(args.catalog, full=args.full).to_dict(), out)
            elif args.command == "remove":
                ids = list(args.ids) + (args.file.read_text().split() if args.file else [])
                if not ids:
                    raise InvalidRequest("give item ids or --file", problem="usage")
                removed, unknown = ranker.remove(ids)
                _print({"removed": removed, "unknown": unknown, "items": len(ranker.index)}, out)
                return EXIT_INVALID_INPUT if unknown else EXIT_OK
            elif args.command == "query":
                return _query(ranker, args, out)
            elif args.command == "serve":
                return _serve(ranker, args)
            else:
                return _evaluate(ranker, args, out)
        return EXIT_OK
    except EmptyIndex as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_EMPTY_INDEX
    except (InvalidRequest, IngestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.problem == "usage" else EXIT_INVALID_INPUT
    except (ModelUnavailable, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MODEL
    except (ConfigError, RankerError, BeirFormatError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
