"""Benchmark of a full ranking request, by stage, and of the re-rank stage against the server alone.

In one run, on loopback only:

1. starts ``python -m serving`` with the embedder and re-ranker found under
   ``--model-base-path`` (``<base>/<model>/<version>/``, batching on), or uses a
   running server (``--server``);
2. ingests the first ``--items`` documents of a BEIR corpus (default: SciFact's
   5,183, so 5,000) into ``--index`` (kept between runs: only changed items are
   re-embedded);
3. one client, one request at a time, each a dataset query re-ranking the
   fused top ``--rerank-depth``: p50/p99 of the whole request and of each stage
   (BM25, query embedding, vector search, fusion, re-rank), from the library
   (``Ranker.rank``) so that HTTP is not in the numbers;
4. the same re-rank batch (query + the same ``--rerank-depth`` item texts) as
   one Predict call straight to the server: the re-rank stage's cost against
   the server's own latency for that batch;
5. ``--clients`` concurrent clients for ``--seconds``: requests per second
   through the ranker, and the direct re-rank Predict's batches per second.

Not a test: it prints numbers.  Example::

    python -m benchmarks ranker --embedder scifact_embedder --reranker scifact_reranker --index work/ranker/bench \\
        --model-base-path work/models --items 5000 --clients 4 --seconds 20
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from apps.ranker.config import DEFAULT_CONFIG_PATH, REPO, AppConfig, load_config, with_overrides
from benchmarks.command import parse_args, write_report
from benchmarks.loadgen import Latencies, closed_loop, load_line
from serving.launcher import ModelServerProcess, batching_flags
from suite_core.beir import BeirDataset

if TYPE_CHECKING:  # The ranker loads the gRPC client and TensorFlow's protos: not for the CLI's `--help`.
    from apps.ranker.ranker import Ranker

DEFAULT_DATA = Path(os.environ.get("SUITE_SHARED_DATA", REPO.parent / "shared" / "data")) / "scifact"
STAGES = ("bm25", "embed", "vector", "fusion", "rerank", "total")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks ranker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH,
                        help="the ranker's YAML config (default: packaged)")
    parser.add_argument("--server", help="model server host:port, overriding the config")
    parser.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow's C++ log lines")
    parser.add_argument("--index", help="index directory, overriding the config")
    parser.add_argument("--embedder", help="embedder model name, overriding the config")
    parser.add_argument("--reranker", help="re-ranker model name, overriding the config")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR directory (default: SciFact)")
    parser.add_argument("--split", default="train", help="whose queries are sent")
    parser.add_argument("--items", type=int, default=5000, help="catalog size: the corpus's first N documents")
    parser.add_argument("--rerank-depth", type=int, help="N re-ranked (default: the config's retrieval.rerank_depth)")
    parser.add_argument("--budget-ms", type=float,
                        help="per-request time budget (default: the config's retrieval.request_budget_ms; 0: none)")
    parser.add_argument("--requests", type=int, default=100, help="sequential requests")
    parser.add_argument("--warmup-requests", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0, help="of concurrent load, per target")
    parser.add_argument("--model-base-path", type=Path,
                        help="start a model server on <path>/<embedder>/ and <path>/<reranker>/")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return parser


def start_model_server(base: Path, models: tuple[str, ...], workdir: Path) -> ModelServerProcess:
    """``python -m serving`` on ``<base>/<model>/`` for each of ``models``, batching on as deployed."""
    from serving.config import write_model_server_config

    config = write_model_server_config(workdir / "models.config", {name: base / name for name in models})
    return ModelServerProcess([f"--model_config_file={config}", *batching_flags()], workdir / "model_server.log",
                              models=models).start()


def _measure(ranker: Ranker, args: argparse.Namespace, queries: list[str], log: TextIO) -> dict:
    from apps.ranker.ranker import RankRequest

    def request(text: str) -> RankRequest:
        return RankRequest(text=text, k=10)

    warmup = [ranker.rank(request(queries[i % len(queries)])).rerank["status"] for i in range(args.warmup_requests)]
    # No re-ranker served (none blessed): the requests are answered in hybrid order; nothing to compare with.
    served = "no_reranker" not in warmup
    # The re-rank batch each sequential request sends: its fused top N, in fused order.
    items = ranker.index.items
    position = ranker.index.position
    batches = [(text, [items[position[item.id]].full_text for item in ranker.rank(
        RankRequest(text=text, k=args.rerank_depth, rerank=False)).items]) for text in queries[:args.requests]]
    print(f"{args.requests} sequential requests ...", file=log, flush=True)
    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    started = time.perf_counter()
    for i in range(args.requests):
        response = ranker.rank(request(queries[i % len(queries)]))
        for stage in STAGES:
            samples[stage].append(response.timings_ms.get(stage, 0.0))
    elapsed = time.perf_counter() - started
    by_stage = {stage: Latencies(stage, elapsed, values).summary() for stage, values in samples.items()}

    # The same re-rank batches, as one Predict call each, straight to the server.
    models = ranker.models
    print(f"the same {args.rerank_depth}-pair re-rank batches straight to the server ...", file=log, flush=True)
    direct = []
    begin = time.perf_counter()
    for i in range(args.requests if served else 0):
        query, texts = batches[i % len(batches)]
        clock = time.perf_counter()
        models.rerank(query, texts)
        direct.append((time.perf_counter() - clock) * 1000)
    direct_summary = Latencies("rerank_predict_direct", time.perf_counter() - begin, direct).summary() if served \
        else None

    print(f"{args.clients} concurrent clients for {args.seconds:.0f}s each ...", file=log, flush=True)

    def ranker_caller() -> Callable[[str], None]:
        def call(text: str) -> None:
            ranker.rank(request(text))
        return call

    def predict_caller() -> Callable[[str], None]:
        index = iter(range(10**9))

        def call(_: str) -> None:
            models.rerank(*batches[next(index) % len(batches)])
        return call

    load_app = closed_loop("ranker", ranker_caller, queries, args.clients, args.seconds).summary()
    if not served:
        return {"reranker_served": False, "sequential": {"stages_ms": by_stage, "rerank_predict_direct": None},
                "concurrent": {"clients": args.clients, "ranker": load_app, "rerank_predict_direct": None}}
    load_direct = closed_loop("rerank_predict_direct", predict_caller, queries, args.clients, args.seconds).summary()
    assert direct_summary is not None
    rerank_p50, direct_p50 = by_stage["rerank"]["p50_ms"], direct_summary["p50_ms"]
    return {
        "reranker_served": True,
        "sequential": {"stages_ms": by_stage, "rerank_predict_direct": direct_summary,
                       "rerank_stage_over_direct_p50": round(rerank_p50 / direct_p50, 2) if direct_p50 else None},
        "concurrent": {"clients": args.clients, "ranker": load_app, "rerank_predict_direct": load_direct,
                       "rerank_pairs_per_second_direct": round(load_direct["throughput_rps"] * args.rerank_depth, 1),
                       "rerank_pairs_per_second_in_ranker": round(load_app["throughput_rps"] * args.rerank_depth, 1)},
    }


def run(config: AppConfig, args: argparse.Namespace, log: TextIO) -> dict:
    dataset = BeirDataset.load(args.data, args.split)
    documents = list(dataset.corpus.values())[:args.items]
    queries = list(dataset.queries.values())
    if args.rerank_depth is None:
        args.rerank_depth = config.retrieval.rerank_depth
    budget = config.retrieval.request_budget_ms if args.budget_ms is None else args.budget_ms
    config = dataclasses.replace(config, retrieval=dataclasses.replace(
        config.retrieval, rerank_depth=args.rerank_depth, max_k=max(config.retrieval.max_k, args.rerank_depth),
        request_budget_ms=budget))
    report: dict = {"data": str(args.data), "items": len(documents), "rerank_depth": args.rerank_depth,
                    "request_budget_ms": budget,
                    "models": {"embedder": config.server.embedder_model, "reranker": config.server.reranker_model}}
    started: list[ModelServerProcess] = []
    with tempfile.TemporaryDirectory(prefix="ranker-bench-") as tmp:
        try:
            if args.model_base_path is not None:
                print(f"starting the model server on {args.model_base_path} ...", file=log, flush=True)
                server = start_model_server(
                    args.model_base_path, (config.server.embedder_model, config.server.reranker_model), Path(tmp))
                started.append(server)
                config = dataclasses.replace(config, server=dataclasses.replace(config.server,
                                                                                address=server.grpc_address))
            from apps.ranker.ranker import Ranker

            with Ranker(config) as ranker:
                print(f"ingesting {len(documents)} items into {ranker.directory} ...", file=log, flush=True)
                clock = time.perf_counter()
                ingest = ranker.ingest(documents, full=True)
                report["ingest"] = {"seconds": round(time.perf_counter() - clock, 2), "embedded": ingest.embedded,
                                    "items": ingest.items}
                report.update(_measure(ranker, args, queries, log))
                report["rerank_outcomes"] = ranker.rerank_outcomes()  # how many requests fell back, and why
        finally:
            for process in started:
                process.stop()
    return report


def print_report(report: dict, out: TextIO) -> None:
    print(f"\n{report['items']} items ({report['data']}), re-rank depth {report['rerank_depth']}, budget "
          f"{report['request_budget_ms']} ms, re-rank outcomes {report['rerank_outcomes']}, models "
          f"{report['models']}; ingest {report['ingest']['seconds']}s ({report['ingest']['embedded']} embedded)",
          file=out)
    print("\nOne request at a time (ms):", file=out)
    for stage, s in report["sequential"]["stages_ms"].items():
        print(f"  {stage:<24} p50 {s['p50_ms']:8.2f}  p99 {s['p99_ms']:8.2f}", file=out)
    d = report["sequential"]["rerank_predict_direct"]
    if d is None:
        print("  no re-ranker served: requests answered in hybrid order (rerank.status no_reranker)", file=out)
    else:
        print(f"  {'re-rank Predict, direct':<24} p50 {d['p50_ms']:8.2f}  p99 {d['p99_ms']:8.2f}", file=out)
        print(f"  re-rank stage / direct Predict (p50): x{report['sequential']['rerank_stage_over_direct_p50']}",
              file=out)
    c = report["concurrent"]
    print(f"\n{c['clients']} concurrent clients:", file=out)
    for key in ("ranker", "rerank_predict_direct"):
        if c[key] is not None:
            print(load_line(c[key], width=24), file=out)
    if d is not None:
        print(f"  re-ranked pairs/s: {c['rerank_pairs_per_second_in_ranker']} in the ranker, "
              f"{c['rerank_pairs_per_second_direct']} straight to the server", file=out)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = parse_args(build_parser(), argv)
    config = with_overrides(load_config(args.config), address=args.server, index_path=args.index,
                            embedder_model=args.embedder, reranker_model=args.reranker)
    return write_report(run(config, args, sys.stderr), args.json, print_report, out)


if __name__ == "__main__":
    sys.exit(main())
